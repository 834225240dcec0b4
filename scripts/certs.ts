/**
 * Certificates for a test cluster, made with `openssl`: a CA and one certificate per node name,
 * each valid for DNS:localhost and IP:127.0.0.1 (serverAuth and clientAuth, so nodes can also
 * present it as a client certificate).
 *
 *   bun scripts/certs.ts <dir> [name...]        (names default to "node")
 *   deno run --allow-run --allow-write --allow-read scripts/certs.ts <dir> [name...]
 *
 * writes <dir>/ca.pem, <dir>/ca.key, and <dir>/<name>.pem with <dir>/<name>.key for each name.
 * Then: EBB_TLS_CERT=<dir>/<name>.pem EBB_TLS_KEY=<dir>/<name>.key EBB_TLS_CA=<dir>/ca.pem.
 * For tests only: the CA key is left beside its certificate.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** What `makeCertificates` wrote: file paths. */
export interface CertificateFiles {
  ca: string;
  caKey: string;
  /** Per node name: its certificate and key. */
  nodes: Record<string, { cert: string; key: string }>;
}

/** Days the test certificates are valid. */
const VALID_DAYS = "825";

function openssl(args: string[]): void {
  try {
    execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === "ENOENT") throw new Error('scripts/certs needs "openssl" on the PATH (apt-get install openssl), and it was not found');
    const stderr = String((error as { stderr?: unknown }).stderr ?? "").trim();
    throw new Error(`openssl ${args[0]} failed: ${stderr || String(error)}`);
  }
}

/** Makes a CA in `dir` and a certificate signed by it for each of `names`. */
export function makeCertificates(dir: string, names: readonly string[] = ["node"]): CertificateFiles {
  mkdirSync(dir, { recursive: true });
  const ca = join(dir, "ca.pem");
  const caKey = join(dir, "ca.key");
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl(["req", "-x509", ...ec, "-keyout", caKey, "-out", ca, "-days", VALID_DAYS, "-subj", "/CN=ebb test CA",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
  const nodes: CertificateFiles["nodes"] = {};
  for (const name of names) {
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) throw new Error(`Certificate name "${name}" must be 1-64 letters, digits or _ . -`);
    const cert = join(dir, `${name}.pem`);
    const key = join(dir, `${name}.key`);
    const csr = join(dir, `${name}.csr`);
    const ext = join(dir, `${name}.ext`);
    writeFileSync(ext, [
      "basicConstraints=critical,CA:FALSE",
      "keyUsage=critical,digitalSignature,keyAgreement",
      "extendedKeyUsage=serverAuth,clientAuth",
      "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ].join("\n"));
    openssl(["req", "-new", ...ec, "-keyout", key, "-out", csr, "-subj", `/CN=${name}`]);
    openssl(["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", caKey, "-set_serial", `0x${crypto.randomUUID().replaceAll("-", "")}`,
      "-days", VALID_DAYS, "-extfile", ext, "-out", cert]);
    rmSync(csr);
    rmSync(ext);
    nodes[name] = { cert, key };
  }
  return { ca, caKey, nodes };
}

if ((import.meta as { main?: boolean }).main) {
  const [dir, ...names] = process.argv.slice(2);
  if (!dir) {
    process.stderr.write("Usage: scripts/certs.ts <dir> [name...]\n");
    process.exit(2);
  }
  const files = makeCertificates(dir, names.length > 0 ? names : ["node"]);
  process.stdout.write(`CA ${files.ca}\n${Object.entries(files.nodes).map(([name, f]) => `${name} ${f.cert} ${f.key}`).join("\n")}\n`);
}
