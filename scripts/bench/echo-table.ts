/**
 * Regenerates the README's bench:echo tables from scripts/bench/results/echo-bun.json and
 * echo-deno.json (the last step of `npm run bench:echo`): everything between the markers
 * `<!-- bench:echo -->` and `<!-- /bench:echo -->` is replaced. Runs on Bun or Deno.
 */
import { readFileSync, writeFileSync } from "node:fs";

const here = decodeURIComponent(new URL(".", import.meta.url).pathname);
const readme = `${here}../../README.md`;
const START = "<!-- bench:echo -->";
const END = "<!-- /bench:echo -->";

interface Row {
  callsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  rounds: number;
  noisy: number;
}
interface Result {
  runtime: string;
  runtimeVersion: string;
  date: string;
  pinned: boolean;
  seconds: number;
  idleConnections: number;
  shapes: { name: string; title: string }[];
  summary: Record<string, Record<string, Row>>;
  memoryBytesPerConnection: Record<string, number>;
  ratios: { ebbOverBare: Record<string, number>; ebbOverMoleculer: number; ebbOverPeer: number; tlsOverEbb: number };
}

const results: Result[] = ["bun", "deno"].map((name) => JSON.parse(readFileSync(`${here}results/echo-${name}.json`, "utf8")));
const runtimeName = (r: Result) => `${r.runtime === "bun" ? "Bun" : "Deno"} ${r.runtimeVersion}`;
const calls = (n: number | undefined) => (n === undefined ? "-" : Math.round(n).toLocaleString("en-US"));
const percent = (n: number | undefined) => (n === undefined ? "-" : `${(n * 100).toFixed(1)}%`);
const times = (n: number | undefined) => (n === undefined ? "-" : `${n.toFixed(2)}×`);
const ms = (n: number | undefined) => (n === undefined ? "-" : `${n.toFixed(3)} ms`);
const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
const head = (cells: string[]) => [line(cells), line(cells.map(() => "---"))];

const pipelined = [
  ...head(["runtime", "bare echo", "ebb", "ebb / bare", "ebb over TLS", "TLS / ebb", "msgpack5rpc", "Moleculer 0.15", "ebb / Moleculer", "ebb p50", "ebb p99"]),
  ...results.map((r) => {
    const s = r.summary.pipelined!;
    return line([
      runtimeName(r),
      calls(s.bare?.callsPerSecond),
      calls(s.ebb?.callsPerSecond),
      percent(r.ratios.ebbOverBare.pipelined),
      calls(s.tls?.callsPerSecond),
      percent(r.ratios.tlsOverEbb),
      calls(s.peer?.callsPerSecond),
      calls(s.moleculer?.callsPerSecond),
      times(r.ratios.ebbOverMoleculer),
      ms(s.ebb?.p50Ms),
      ms(s.ebb?.p99Ms),
    ]);
  }),
];

const shapes = [
  ...head(["runtime", "shape", "bare echo calls/s", "ebb calls/s", "ebb / bare", "bare p50 / p99", "ebb p50 / p99", "Moleculer calls/s, p50 / p99"]),
  ...results.flatMap((r) =>
    r.shapes
      .filter((shape) => shape.name !== "pipelined")
      .map((shape) => {
        const s = r.summary[shape.name]!;
        const pair = (row: Row | undefined) => (row ? `${row.p50Ms.toFixed(3)} / ${row.p99Ms.toFixed(3)} ms` : "-");
        return line([
          runtimeName(r),
          shape.title,
          calls(s.bare?.callsPerSecond),
          calls(s.ebb?.callsPerSecond),
          percent(r.ratios.ebbOverBare[shape.name]),
          pair(s.bare),
          pair(s.ebb),
          s.moleculer ? `${calls(s.moleculer.callsPerSecond)}, ${pair(s.moleculer)}` : "-",
        ]);
      }),
  ),
];

const memory = [
  ...head(["runtime", `bare echo, per connection (${results[0]!.idleConnections.toLocaleString("en-US")} open)`, "ebb, per connection"]),
  ...results.map((r) => {
    const kib = (bytes: number | undefined) => (bytes === undefined ? "-" : `${(bytes / 1024).toFixed(1)} KiB`);
    return line([runtimeName(r), kib(r.memoryBytesPerConnection.bare), kib(r.memoryBytesPerConnection.ebb)]);
  }),
];

const noisy = results.flatMap((r) => Object.values(r.summary).flatMap((row) => Object.values(row))).reduce((sum, row) => sum + row.noisy, 0);
const when = results.map((r) => `${runtimeName(r)} ${r.date.slice(0, 10)}`).join(", ");
const block = [
  START,
  `1 connection, 64 calls in flight, \`{a: 1, b: "hello"}\`, calls/s (median of the rounds; ${when}${results.every((r) => r.pinned) ? "; client and server pinned to a core each" : ""}${noisy ? `; ${noisy} noisy round${noisy === 1 ? "" : "s"} left out` : ""}):`,
  "",
  ...pipelined,
  "",
  "The other shapes, bare echo against ebb:",
  "",
  ...shapes,
  "",
  "Server memory per idle connection:",
  "",
  ...memory,
  END,
].join("\n");

const text = readFileSync(readme, "utf8");
const start = text.indexOf(START);
const end = text.indexOf(END);
if (start < 0 || end < start) throw new Error(`README.md has no ${START} ... ${END} block`);
writeFileSync(readme, text.slice(0, start) + block + text.slice(end + END.length));
console.log(`README.md: bench:echo tables regenerated from ${results.map((r) => `echo-${r.runtime}.json`).join(" and ")}`);
