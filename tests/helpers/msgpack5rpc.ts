import { createRequire } from "node:module";
import type { Duplex } from "node:stream";

/** A msgpack5rpc session (the package ships no types): one end of a msgpack-rpc conversation. */
export interface Session {
  attach(writer: Duplex, reader: Duplex): void;
  request(method: string, args: unknown[], callback: (error: unknown, result: unknown) => void): void;
  on(event: "request", listener: (method: string, args: unknown[], response: { send(value: unknown, isError?: boolean): void }) => void): this;
}

const require = createRequire(import.meta.url);

/** msgpack5rpc's Session class: an independent msgpack-rpc implementation, used to prove interop. */
export const Session = require("msgpack5rpc") as new () => Session;

/** A promise-returning request over a msgpack5rpc session. */
export function request(session: Session, method: string, args: unknown[]): Promise<unknown> {
  return new Promise((resolve, reject) => session.request(method, args, (error, result) => (error ? reject(error) : resolve(result))));
}
