#!/usr/bin/env node
// `npm test`: type-checks with tsc (Bun's types) and deno check, then runs the
// same test files under `bun test` and `deno test`, and prints one summary line.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bin = (name) => join(root, "node_modules", ".bin", name);
const args = process.argv.slice(2);
const checkOnly = args.includes("--check-only");
const only = args.filter((a) => !a.startsWith("--"));
const targets = only.length > 0 ? only : ["tests/"];

// A hung suite must not hang CI: each runner gets a bound (deno test has no per-test timeout).
const RUNNER_LIMIT_MS = Number(process.env.EBB_TEST_RUNNER_LIMIT_S ?? 900) * 1000;

/** Output of the buffered runs still going, for the progress line. */
const live = new Map();

/** Waits for runs that go side by side, printing every 30 s how many tests each has passed and failed so far. */
async function alongside(...runs) {
  const count = (output, pattern) => (output.match(pattern) ?? []).length;
  const ticker = setInterval(() => {
    const parts = [...live].map(([label, output]) => `${label}: ${count(output, /^\(pass\) | \.\.\. ok \(/gm)} passed, ${count(output, /^\(fail\) | \.\.\. FAILED \(/gm)} failed`);
    if (parts.length > 0) console.log(`.. ${parts.join("; ")}`);
  }, 30_000);
  try {
    return await Promise.all(runs);
  } finally {
    clearInterval(ticker);
  }
}

/**
 * Runs a command; its output goes through as it comes, or, when `buffered` (it runs beside
 * another), is printed whole once it ends, so two runs never interleave their lines.
 */
function run(label, command, commandArgs, buffered = false) {
  return new Promise((resolve) => {
    const header = `\n== ${label}: ${[command.replace(root + "/", ""), ...commandArgs].join(" ")}`;
    if (!buffered) console.log(header);
    const child = spawn(command, commandArgs, {
      cwd: root,
      env: { ...process.env, NO_COLOR: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    const tee = (stream, sink) =>
      stream.on("data", (chunk) => {
        output += chunk;
        if (buffered) live.set(label, output);
        else sink.write(chunk);
      });
    tee(child.stdout, process.stdout);
    tee(child.stderr, process.stderr);
    const limit = setTimeout(() => {
      console.log(`\n${label} ran past ${RUNNER_LIMIT_MS / 1000} s: killed`);
      child.kill("SIGKILL");
    }, RUNNER_LIMIT_MS);
    child.on("close", (code, signal) => {
      clearTimeout(limit);
      if (buffered) {
        live.delete(label);
        process.stdout.write(`${header}\n${output}`);
      }
      resolve({ code: code ?? (signal ? 128 : 1), output });
    });
  });
}

/** Lines of output a failure is repeated with, at most. */
const FAILURE_LINES = 40;

/** Bun prints a failed test's error above its "(fail) name" line: repeat it from the error's first line. */
function bunFailures(output) {
  const lines = output.split("\n");
  const out = [];
  let testStart = 0;
  lines.forEach((line, i) => {
    if (/^\((pass|skip|todo)\) |^\S+\.test\.ts:$/.test(line)) testStart = i + 1;
    if (!line.startsWith("(fail) ")) return;
    const body = lines.slice(testStart, i);
    const first = Math.max(0, body.findIndex((l) => /^(error|\w*Error)\b/.test(l)));
    out.push(`bun ${line}\n${body.slice(first, first + FAILURE_LINES).join("\n")}`);
    testStart = i + 1;
  });
  return out;
}

/** Deno prints every failure's error in its " ERRORS " section, before " FAILURES ". */
function denoFailures(output) {
  const section = /^ ERRORS $([\s\S]*?)^ FAILURES $/m.exec(output)?.[1];
  if (!section) return [];
  return section.trim().split(/\n(?=\S.* => \S+:\d+:\d+$)/m).map((failure) => `deno ${failure.split("\n").slice(0, FAILURE_LINES).join("\n")}`);
}

const results = [];
let failed = false;

// The two type checks and the build (the integration tests run the compiled binary) side by side:
// the build is the same command as `npm run build`, read from package.json so the two never differ.
const [, ...buildArgs] = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).scripts.build.split(" ");
const [tsc, denoCheck, build] = await Promise.all([
  run("types (tsc, Bun)", bin("tsc"), ["-p", "."], true),
  run("types (deno check)", bin("deno"), ["check", "src/", "tests/", "scripts/"], true),
  checkOnly ? { code: 0 } : run("build (npm run build)", bin("bun"), buildArgs, true),
]);
if (tsc.code !== 0 || denoCheck.code !== 0) {
  console.log("\ntype check failed");
  failed = true;
}
if (build.code !== 0) failed = true;

if (!checkOnly) {
  // Bun's and Deno's runs side by side (their tests mostly wait on sockets, processes and timers),
  // each printed whole when it ends; EBB_TEST_SERIAL=1 runs them one after the other, streaming.
  const serial = process.env.EBB_TEST_SERIAL === "1";
  const bunArgs = ["test", "--timeout", "60000", ...targets];
  const denoArgs = ["test", "--allow-all", ...targets];
  const [bun, deno] = serial
    ? [await run("bun test", bin("bun"), bunArgs), await run("deno test", bin("deno"), denoArgs)]
    : await alongside(run("bun test", bin("bun"), bunArgs, true), run("deno test", bin("deno"), denoArgs, true));
  const bunPass = Number(/^\s*(\d+) pass\s*$/m.exec(bun.output)?.[1] ?? 0);
  const bunFail = Number(/^\s*(\d+) fail\s*$/m.exec(bun.output)?.[1] ?? (bun.code === 0 ? 0 : 1));
  results.push(["bun", bunPass, bunFail, bun.code]);

  // Tests are flat test() calls (no describe), so Deno's top-level count is the test count.
  const m = /(\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed/.exec(deno.output);
  const denoPass = Number(m?.[1] ?? 0);
  const denoFail = Number(m?.[2] ?? (deno.code === 0 ? 0 : 1));
  results.push(["deno", denoPass, denoFail, deno.code]);

  // CI keeps only the tail of the output: repeat each failure, with its error, just above the summary.
  const reports = [...bunFailures(bun.output), ...denoFailures(deno.output)];
  if (reports.length > 0) console.log(`\n== failures\n${reports.join("\n\n")}`);

  console.log("");
  let passed = 0;
  let failures = 0;
  for (const [name, pass, fail, code] of results) {
    console.log(`${name}: ${pass} passed, ${fail} failed${code !== 0 && fail === 0 ? ` (exit code ${code})` : ""}`);
    passed += pass;
    failures += fail;
    if (code !== 0) failed = true;
  }
  if (failed && failures === 0) failures = 1;
  console.log(`\ntotal: ${passed} passed, ${failures} failed`);
}
process.exit(failed ? 1 : 0);
