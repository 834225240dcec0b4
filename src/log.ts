/** Log levels, least to most severe. */
export const LogLevels = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LogLevels)[number];

/** Structured fields of a log line. */
export type LogFields = Record<string, unknown>;

/** A structured logger: one line per event. */
export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

/** Options of `createLogger`. */
export interface LoggerOptions {
  node: string;
  level?: LogLevel;
  /** `json`: one JSON object a line; `pretty`: readable text. */
  format?: "json" | "pretty";
  /** Where lines go; defaults to standard output. */
  write?: (line: string) => void;
}

/** Creates a logger that writes one line per event. */
export function createLogger(options: LoggerOptions): Logger {
  const threshold = LogLevels.indexOf(options.level ?? "info");
  const format = options.format ?? "json";
  const write = options.write ?? ((line: string) => console.log(line));
  const emit = (level: LogLevel) => (message: string, fields?: LogFields) => {
    if (LogLevels.indexOf(level) < threshold) return;
    if (format === "json") {
      write(JSON.stringify({ time: new Date().toISOString(), level, node: options.node, msg: message, ...fields }, jsonSafe));
    } else {
      const extra = fields ? Object.entries(fields).map(([k, v]) => ` ${k}=${typeof v === "string" ? v : JSON.stringify(v, jsonSafe)}`).join("") : "";
      write(`${new Date().toISOString()} ${level.toUpperCase().padEnd(5)} ${options.node} ${message}${extra}`);
    }
  };
  return { debug: emit("debug"), info: emit("info"), warn: emit("warn"), error: emit("error") };
}

function jsonSafe(_key: string, value: unknown): unknown {
  if (value instanceof Error) return { name: value.name, message: value.message, stack: value.stack };
  if (typeof value === "bigint") return value.toString();
  return value;
}

/** A logger that drops everything, for libraries used without one. */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
