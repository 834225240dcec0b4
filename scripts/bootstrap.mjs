#!/usr/bin/env node
// Installs what package.json pins when node_modules lacks any of it, so that
// `npm start` and `npm test` work on a fresh clone with only Node and npm.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const wanted = { ...pkg.dependencies, ...pkg.devDependencies };

function installedVersion(name) {
  try {
    return JSON.parse(readFileSync(join(root, "node_modules", name, "package.json"), "utf8")).version;
  } catch {
    return undefined;
  }
}

const missing = Object.entries(wanted).filter(([name, version]) => installedVersion(name) !== version);
const binaries = ["bun", "deno", "tsc"].filter((bin) => !existsSync(join(root, "node_modules", ".bin", bin)));

if (missing.length > 0 || binaries.length > 0) {
  const what = [...missing.map(([name, version]) => `${name}@${version}`), ...binaries.map((b) => `bin/${b}`)];
  console.error(`ebb: installing ${what.join(", ")}`);
  // `npm install`, not `npm ci`: ci insists on every optional platform package of
  // deno being resolvable, and some (e.g. @deno/darwin-arm64@2.9.6) are not on the
  // registry. install follows package-lock.json all the same.
  const result = spawnSync("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error"], { cwd: root, stdio: "inherit" });
  if (result.status !== 0) {
    console.error(`ebb: npm install failed with exit code ${result.status}`);
    process.exit(result.status ?? 1);
  }
  for (const bin of ["bun", "deno"]) {
    const probe = spawnSync(join(root, "node_modules", ".bin", bin), ["--version"], { encoding: "utf8" });
    if (probe.status !== 0) {
      console.error(`ebb: ${bin} did not install a working binary (${probe.error?.message ?? probe.stderr})`);
      process.exit(1);
    }
  }
}
