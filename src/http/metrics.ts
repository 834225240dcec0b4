/** One Prometheus sample: name, labels, value. */
export type Sample<Name extends string = string> = [name: Name, labels: Record<string, string>, value: number];

/** Metric families: help text and type, by name. */
export type Families = Record<string, { help: string; type: "counter" | "gauge" | "histogram" }>;

/** The series a histogram family is written as. */
const HISTOGRAM_SUFFIXES = ["_bucket", "_sum", "_count"];

function escape(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** Renders samples in the Prometheus text exposition format (version 0.0.4). */
export function renderPrometheus(families: Families, samples: Sample[]): string {
  const lines: string[] = [];
  for (const [name, family] of Object.entries(families)) {
    lines.push(`# HELP ${name} ${family.help}`, `# TYPE ${name} ${family.type}`);
    const names = family.type === "histogram" ? HISTOGRAM_SUFFIXES.map((suffix) => name + suffix) : [name];
    for (const [sampleName, labels, value] of samples) {
      if (!names.includes(sampleName)) continue;
      const labelText = Object.entries(labels)
        .map(([k, v]) => `${k}="${escape(v)}"`)
        .join(",");
      lines.push(`${sampleName}${labelText ? `{${labelText}}` : ""} ${Number.isFinite(value) ? value : 0}`);
    }
  }
  return lines.join("\n") + "\n";
}
