/**
 * The baseline of `npm run bench:startup`: the runtime's own HTTP server through
 * ebb's runtime seam, answering 200 to everything, with nothing else loaded.
 * It prints the same JSON "listening" line as a node, and exits on SIGTERM.
 */
import { detectRuntime } from "../../src/runtime/detect.ts";

const runtime = await detectRuntime();
const server = await runtime.serve({ host: "127.0.0.1", port: 0, fetch: () => new Response("ok"), idleTimeoutMs: 10_000, acceptRetryMs: 1_000 });
console.log(JSON.stringify({ msg: "listening", http: `${server.host}:${server.port}` }));
runtime.onSignal("SIGTERM", () => runtime.exit(0));
