import { test } from "node:test";
import assert from "node:assert/strict";
import { NONCE_BYTES, newNonce, proof, proofMatches, readNonce } from "../../../src/rpc/auth.ts";

test("cluster key proofs are bound to the key, the role and both nonces, and compared exactly", () => {
  const client = newNonce();
  const server = newNonce();
  assert.equal(client.byteLength, NONCE_BYTES);
  assert.notDeepEqual(client, server, "nonces are random");
  const mine = proof("k".repeat(16), "client", client, server);
  assert.equal(mine.byteLength, 32, "HMAC-SHA256");
  assert.ok(proofMatches(proof("k".repeat(16), "client", client, server), mine));
  assert.ok(!proofMatches(proof("K".repeat(16), "client", client, server), mine), "another key");
  assert.ok(!proofMatches(proof("k".repeat(16), "server", client, server), mine), "the other role");
  assert.ok(!proofMatches(proof("k".repeat(16), "client", server, client), mine), "nonces swapped");
  assert.ok(!proofMatches(proof("k".repeat(16), "client", client, newNonce()), mine), "another server nonce");
  assert.ok(!proofMatches(mine, mine.subarray(0, 31)), "a prefix");
  assert.ok(!proofMatches(mine, "not bytes"));
  assert.ok(!proofMatches(mine, undefined));
  assert.equal(readNonce(new Uint8Array(15)), undefined);
  assert.equal(readNonce("x".repeat(16)), undefined);
  assert.equal(readNonce(client), client);
});
