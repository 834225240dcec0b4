/// <reference types="bun-types" />
import type { OutputStream, Runtime, SignalName } from "../../runtime/types.ts";
import { writeSync } from "node:fs";
import { serve } from "./http.ts";
import { connect, listen } from "./tcp.ts";

/** The Bun runtime: Bun.listen / Bun.connect and the process object. */
export function createBunRuntime(): Runtime {
  return {
    name: "bun",
    version: Bun.version,
    listen,
    connect,
    serve,
    onSignal(signal: SignalName, handler: () => void) {
      process.on(signal, handler);
      return () => void process.off(signal, handler);
    },
    exit(code: number): never {
      process.exit(code);
    },
    env() {
      return { ...Bun.env } as Record<string, string>;
    },
    args() {
      return Bun.argv.slice(2);
    },
    isTerminal(stream: OutputStream) {
      return process[stream].isTTY === true;
    },
    write(stream: OutputStream, text: string) {
      // fs.writeSync on the stream's descriptor: complete and in order with console output.
      writeSync(stream === "stdout" ? 1 : 2, text);
    },
  };
}
