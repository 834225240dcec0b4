import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { ROOT } from "../../helpers/process.ts";
import { METRIC_FAMILIES } from "../../../src/http/metric-families.ts";
import { renderPrometheus } from "../../../src/http/metrics.ts";

test("Prometheus text: HELP and TYPE per family, labels escaped, histogram series under their family, unknown samples left out", () => {
  const text = renderPrometheus(
    { hits_total: { help: "Hits.", type: "counter" }, took_seconds: { help: "Took.", type: "histogram" } },
    [
      ["hits_total", { path: 'a"b\\c\nd' }, 3],
      ["took_seconds_bucket", { le: "0.1" }, 1],
      ["took_seconds_bucket", { le: "+Inf" }, 2],
      ["took_seconds_sum", {}, 0.25],
      ["took_seconds_count", {}, 2],
      ["stray_total", {}, 9],
      ["hits_total", {}, Number.NaN],
    ],
  );
  assert.equal(
    text,
    [
      "# HELP hits_total Hits.",
      "# TYPE hits_total counter",
      'hits_total{path="a\\"b\\\\c\\nd"} 3',
      "hits_total 0",
      "# HELP took_seconds Took.",
      "# TYPE took_seconds histogram",
      'took_seconds_bucket{le="0.1"} 1',
      'took_seconds_bucket{le="+Inf"} 2',
      "took_seconds_sum 0.25",
      "took_seconds_count 2",
      "",
    ].join("\n"),
  );
});

test("the README's metrics table documents every metric a node exports", () => {
  const readme = readFileSync(`${ROOT}README.md`, "utf8");
  assert.deepEqual(Object.keys(METRIC_FAMILIES).filter((name) => !readme.includes(`\`${name}`)), []);
});
