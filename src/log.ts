import { sourceHost } from "./runtime/address.ts";

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

/**
 * A warning that a peer can make happen again and again (refused connections,
 * failed accepts): the first is logged at once, later ones as one line with a
 * count per window, so an attacker cannot flood the log.
 */
export class WarningWindow {
  private suppressed = 0;
  private windowEnds = 0;
  private logged = 0;

  constructor(
    private readonly log: Logger,
    private readonly windowMs = 10_000,
    private readonly now: () => number = Date.now,
    /** Lines logged one by one in a window before the rest are held back and counted. */
    private readonly burst = 1,
  ) {}

  /** Logs `message` unless the window's burst is spent; says how many were held back when it logs again. */
  warn(message: string, fields?: LogFields): void {
    const now = this.now();
    if (now >= this.windowEnds) {
      this.windowEnds = now + this.windowMs;
      this.logged = 0;
    } else if (this.logged >= this.burst) {
      this.suppressed++;
      return;
    }
    this.logged++;
    const held = this.suppressed;
    this.suppressed = 0;
    this.log.warn(held > 0 ? `${message} (and ${held} more like it in the last ${Math.round(this.windowMs / 1000)} s)` : message, fields);
  }
}

/** A `WarningWindow` per peer host for the first `maxHosts` hosts seen, and one shared by all the others. */
export class PeerWarnings {
  private readonly windows = new Map<string, WarningWindow>();
  private readonly others: WarningWindow;

  constructor(
    private readonly log: Logger,
    private readonly burst: number,
    private readonly windowMs = 10_000,
    /** Hosts with a window of their own; so at most (maxHosts + 1) x burst lines per window. */
    private readonly maxHosts = 64,
  ) {
    this.others = new WarningWindow(log, windowMs, Date.now, burst);
  }

  /** Warns about `peer` (`host:port`); its host shares one window with its other connections. */
  warn(peer: string, message: string, fields?: LogFields): void {
    const host = sourceHost(peer);
    let window = this.windows.get(host);
    if (!window) {
      // Past maxHosts, every other host shares one window: many source addresses buy no more lines.
      if (this.windows.size >= this.maxHosts) window = this.others;
      else this.windows.set(host, (window = new WarningWindow(this.log, this.windowMs, Date.now, this.burst)));
    }
    window.warn(message, fields);
  }
}
