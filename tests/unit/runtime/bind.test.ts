import { test } from "node:test";
import assert from "node:assert/strict";
import { bound, listenFailure } from "../../../src/runtime/bind.ts";

/** An error as the runtimes throw them: a message and, mostly, a Node error code. */
const failure = (message: string, code?: string) => Object.assign(new Error(message), code ? { code } : {});

test("a listener that cannot open is explained the same on Bun and Deno, blaming the port or the host", () => {
  // Bun's TCP and HTTP listeners, then Deno's, for a taken port.
  for (const error of [failure("Failed to listen at 127.0.0.1", "EADDRINUSE"), failure("Failed to start server. Is port 7400 in use?", "EADDRINUSE"), failure("Address already in use (os error 98)", "EADDRINUSE")]) {
    assert.deepEqual(listenFailure(error, "127.0.0.1", 7400), { blame: "port", reason: "address already in use: another process listens on port 7400" });
  }
  assert.equal(listenFailure(failure("Permission denied (os error 13)", "EACCES"), "127.0.0.1", 80).blame, "port");
  assert.deepEqual(listenFailure(failure("Cannot assign requested address (os error 99)", "EADDRNOTAVAIL"), "192.0.2.1", 7400), {
    blame: "host",
    reason: '"192.0.2.1" is not an address of this machine (Cannot assign requested address (os error 99))',
  });
  // A name that does not resolve: Bun gives no code, Deno a lookup message, Bun's HTTP server EADDRINUSE for port 0.
  for (const error of [failure("Failed to listen at nope.invalid"), failure("failed to lookup address information: Name or service not known"), failure("Failed to start server. Is port 0 in use?", "EADDRINUSE")]) {
    assert.deepEqual(listenFailure(error, "nope.invalid", 0), { blame: "host", reason: '"nope.invalid" does not resolve to an address of this machine' });
  }
  assert.equal(listenFailure(failure("something else"), "127.0.0.1", 7400).blame, "both");
  // Any other error is the runtime's own words, not put down to the name: out of descriptors on a named host.
  assert.deepEqual(listenFailure(failure("Too many open files (os error 24)", "EMFILE"), "localhost", 7400), { blame: "both", reason: "Too many open files (os error 24)" });
});

test("bound names the listener, the address and the variable to change", async () => {
  const taken = () => Promise.reject(failure("Address already in use (os error 98)", "EADDRINUSE"));
  await assert.rejects(bound("HTTP", "127.0.0.1", 7401, taken), { message: "Cannot listen for HTTP on 127.0.0.1:7401 (EBB_HTTP_PORT): address already in use: another process listens on port 7401" });
  const foreign = () => Promise.reject(failure("Cannot assign requested address (os error 99)", "EADDRNOTAVAIL"));
  await assert.rejects(bound("RPC", "192.0.2.1", 7400, foreign), /^Error: Cannot listen for RPC on 192\.0\.2\.1:7400 \(EBB_HOST\): /);
  await assert.rejects(bound("metrics", "192.0.2.1", 9400, foreign), /\(EBB_METRICS_ADDR\)/);
  await assert.rejects(bound("RPC", "127.0.0.1", 7400, () => Promise.reject(failure("odd"))), { message: "Cannot listen for RPC on 127.0.0.1:7400 (EBB_HOST, EBB_RPC_PORT): odd" });
  assert.equal(await bound("RPC", "127.0.0.1", 7400, () => Promise.resolve(42)), 42);
});
