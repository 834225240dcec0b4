import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeCertificates } from "../../../scripts/certs.ts";
import { ConfigError, loadConfig } from "../../../src/config/load.ts";
import { clientTlsSettings, readPem } from "../../../src/security/tls.ts";

const dir = mkdtempSync(join(tmpdir(), "ebb-tls-unit-"));
const files = makeCertificates(dir, ["n1"]);
const n1 = files.nodes.n1!;
const text = (path: string) => readFileSync(path, "utf8");
process.on("exit", () => rmSync(dir, { recursive: true, force: true }));

/** The message of the ConfigError `read` throws. */
function configError(read: () => unknown): string {
  try {
    read();
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.message;
  }
  assert.fail("no ConfigError");
}

test("EBB_TLS_* take file paths or inline PEM, and make one TLS setting", () => {
  const byPath = loadConfig({ EBB_TLS_CERT: n1.cert, EBB_TLS_KEY: n1.key, EBB_TLS_CA: files.ca, EBB_TLS_SERVER_NAME: "localhost" }).tls;
  const inline = loadConfig({ EBB_TLS_CERT: text(n1.cert), EBB_TLS_KEY: text(n1.key), EBB_TLS_CA: text(files.ca) }).tls;
  assert.ok(byPath && inline);
  assert.equal(byPath.cert, inline.cert);
  assert.equal(byPath.key, inline.key);
  assert.match(byPath.ca, /^-----BEGIN CERTIFICATE-----/);
  assert.equal(byPath.serverName, "localhost");
  assert.equal(byPath.clientAuth, false);
  assert.equal(loadConfig({}).tls, undefined);
});

test("a missing file is named with its variable, and the key's value is never echoed", () => {
  const message = configError(() => loadConfig({ EBB_TLS_CERT: "/nonexistent/cert.pem", EBB_TLS_KEY: "/nonexistent/key.pem", EBB_TLS_CA: files.ca }));
  assert.match(message, /EBB_TLS_CERT="\/nonexistent\/cert.pem" names a file that cannot be read \(no such file\)/);
  assert.match(message, /EBB_TLS_KEY=\(20 characters, not shown\) names a file that cannot be read/);
});

test("a PEM that does not parse, or of the wrong kind, is refused at load time", () => {
  const broken = join(dir, "broken.pem");
  writeFileSync(broken, text(n1.cert).replace(/\n[A-Za-z0-9+/]{20}/, "\nAAAAAAAAAAAAAAAAAAAA"));
  assert.match(configError(() => loadConfig({ EBB_TLS_CA: broken })), /EBB_TLS_CA=".*broken.pem" certificate 1 in ".*broken.pem" does not parse/);
  assert.match(configError(() => loadConfig({ EBB_TLS_CA: n1.key })), /EBB_TLS_CA=".*n1.key" has no PEM certificate/);
  assert.match(configError(() => loadConfig({ EBB_TLS_KEY: n1.cert })), /EBB_TLS_KEY=\(\d+ characters, not shown\) has no PEM private key/);
  assert.throws(() => readPem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", "private key", text), /private key does not parse/);
});

test("a node needs certificate, key and CA together; server name and client auth need TLS on", () => {
  assert.match(configError(() => loadConfig({ EBB_TLS_CERT: n1.cert, EBB_TLS_KEY: n1.key })), /TLS needs EBB_TLS_CERT, EBB_TLS_KEY and EBB_TLS_CA together: EBB_TLS_CA is unset/);
  assert.match(configError(() => loadConfig({ EBB_TLS_CA: files.ca })), /EBB_TLS_CERT and EBB_TLS_KEY are unset/);
  assert.match(configError(() => loadConfig({ EBB_TLS_SERVER_NAME: "localhost" })), /EBB_TLS_SERVER_NAME is set but TLS is off/);
  assert.match(configError(() => loadConfig({ EBB_TLS_CLIENT_AUTH: "1" })), /EBB_TLS_CLIENT_AUTH is set but TLS is off/);
  assert.match(configError(() => loadConfig({ EBB_TLS_CLIENT_AUTH: "yes" })), /EBB_TLS_CLIENT_AUTH="yes" must be 0 or 1/);
});

test("a client speaks TLS once EBB_TLS_CA is set, with its certificate only when key and certificate are both given", () => {
  const ca = text(files.ca);
  const none = { tlsCert: undefined, tlsKey: undefined, tlsCa: undefined, tlsServerName: undefined, tlsClientAuth: false };
  assert.equal(clientTlsSettings(none), undefined);
  assert.deepEqual(clientTlsSettings({ ...none, tlsCa: ca }), { ca });
  assert.deepEqual(clientTlsSettings({ ...none, tlsCa: ca, tlsCert: "c", tlsKey: "k", tlsServerName: "localhost" }), { ca, serverName: "localhost", cert: "c", key: "k" });
  assert.throws(() => clientTlsSettings({ ...none, tlsCert: "c", tlsKey: "k" }), /set EBB_TLS_CA/);
  assert.throws(() => clientTlsSettings({ ...none, tlsCa: ca, tlsCert: "c" }), /go together/);
});
