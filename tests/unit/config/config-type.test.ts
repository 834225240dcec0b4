import { test } from "node:test";
import assert from "node:assert/strict";
import { type Config, configWith } from "../../../src/config/load.ts";
import type { SwimConfig } from "../../../src/membership/types.ts";
import type { ConnectionLimits } from "../../../src/rpc/server.ts";
import type { TlsSettings } from "../../../src/security/tls.ts";

/** True when A and B are the same type, readonly and optional modifiers included. */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;

/** The shape the rest of the code reads, as it was written by hand before the table: the derived type must stay exactly this. */
interface ConfigShape {
  nodeId: string;
  host: string;
  rpcPort: number;
  httpPort: number | null;
  httpIdleTimeoutMs: number;
  maxMessageBytes: number;
  shutdownTimeoutMs: number;
  drainDelayMs: number;
  startupTimeoutMs: number;
  warmupMs: number;
  maxInflight: number;
  adaptiveConcurrency: boolean;
  limits: ConnectionLimits;
  logLevel: "debug" | "info" | "warn" | "error";
  logFormat: "json" | "pretty" | "auto";
  warnings: string[];
  seeds: string[];
  clusterKey: readonly string[] | undefined;
  clusterId: string;
  insecure: boolean;
  metricsAddr: string | undefined;
  advertise: string | undefined;
  keepaliveMs: number;
  tls: TlsSettings | undefined;
  swim: Pick<SwimConfig, "probeIntervalMs" | "probeTimeoutMs" | "indirectChecks" | "gossipIntervalMs" | "gossipNodes" | "suspicionMult" | "pushPullIntervalMs" | "maxMembers">;
}

type Flat<T> = { [K in keyof T]: T[K] };

test("the Config type derived from the table is the shape the node reads, field for field", () => {
  const same: Equal<Flat<Config>, ConfigShape> = true;
  const sameLimits: Equal<Config["limits"], ConnectionLimits> = true;
  // @ts-expect-error a misspelt field is a type error, not undefined at run time
  const misspelt = configWith().maxInflights;
  assert.equal(same && sameLimits, true);
  assert.equal(misspelt, undefined);
});
