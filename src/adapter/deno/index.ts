import type { OutputStream, Runtime, SignalName } from "../../runtime/types.ts";
import { serve } from "./http.ts";
import { connect, listen } from "./tcp.ts";

/** The Deno runtime: Deno.listen / Deno.connect and Deno's process functions. */
export function createDenoRuntime(): Runtime {
  return {
    name: "deno",
    version: Deno.version.deno,
    listen,
    connect,
    serve,
    onSignal(signal: SignalName, handler: () => void) {
      // Deno's addSignalListener does not keep the event loop alive; the listeners do.
      Deno.addSignalListener(signal, handler);
      return () => Deno.removeSignalListener(signal, handler);
    },
    exit(code: number): never {
      Deno.exit(code);
    },
    env() {
      return Deno.env.toObject();
    },
    args() {
      return [...Deno.args];
    },
    isTerminal(stream: OutputStream) {
      return Deno[stream].isTerminal();
    },
    write(stream: OutputStream, text: string) {
      const bytes = new TextEncoder().encode(text);
      for (let written = 0; written < bytes.byteLength; ) written += Deno[stream].writeSync(bytes.subarray(written));
    },
  };
}
