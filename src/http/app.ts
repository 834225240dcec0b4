import { type Context, Hono } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import { bodyLimit } from "hono/body-limit";
import type { InflightCounter } from "../lifecycle/inflight.ts";
import type { Lifecycle } from "../lifecycle/state.ts";
import type { Dispatcher } from "../rpc/dispatch.ts";
import type { Member } from "../membership/types.ts";
import { RpcError } from "../rpc/errors.ts";
import { gateway, replyError, requestedFormat } from "./gateway.ts";
import { renderPrometheus, type Sample } from "./metrics.ts";
import { METRIC_FAMILIES } from "./metric-families.ts";

/** What the HTTP app reads from the node. */
export interface HttpAppOptions {
  nodeId: string;
  lifecycle: Lifecycle;
  inflight: InflightCounter;
  dispatcher: Dispatcher;
  /** Samples for `/metrics`, gathered when asked. */
  metrics(): Sample[];
  /** The member list for `/cluster`. */
  members(): Member[];
  /** Largest gateway body accepted (`EBB_MAX_MESSAGE_BYTES`); larger ones get 413. */
  maxBodyBytes: number;
  /** EBB_MAX_DEPTH: gateway bodies and answers keep the wire's nesting limit. */
  maxDepth?: number;
  /** EBB_CLUSTER_KEY: the gateway and /cluster then need `Authorization: Bearer <key>`; probes and /metrics stay open. */
  clusterKey?: string;
}

/**
 * The node's HTTP surface (hono). Every request is counted in flight, like RPC
 * calls, so shutdown waits for it; while draining, responses carry
 * `Connection: close` so keep-alive clients reconnect elsewhere.
 */
export function createHttpApp(options: HttpAppOptions): Hono {
  const { lifecycle, inflight, nodeId, dispatcher } = options;
  const app = new Hono();

  app.use(async (c, next) => {
    // Gateway calls are counted by dispatch itself (and baffled there); the rest here.
    const counted = !c.req.path.startsWith("/rpc/");
    if (counted) inflight.enter();
    try {
      await next();
    } finally {
      if (counted) inflight.leave();
      if (lifecycle.state === "draining" || lifecycle.state === "stopped") c.header("Connection", "close");
    }
  });

  if (options.clusterKey !== undefined) {
    const refuse = (message: string) => (c: Context) => replyError(c, new RpcError(message, "UNAUTHENTICATED"), requestedFormat(c), 401);
    const guard = bearerAuth({
      token: options.clusterKey,
      noAuthenticationHeader: { message: refuse("This node requires the cluster key: send Authorization: Bearer <EBB_CLUSTER_KEY>") },
      invalidAuthenticationHeader: { message: refuse("The Authorization header must be: Bearer <EBB_CLUSTER_KEY>") },
      invalidToken: { message: refuse("Wrong cluster key") },
    });
    app.use("/rpc/*", guard);
    app.use("/cluster", guard);
  }

  /** A gateway body above the wire's message limit is refused before it is read in full. */
  const maxSize = options.maxBodyBytes;
  app.use(
    "/rpc/*",
    bodyLimit({
      maxSize,
      onError: (c) => replyError(c, new RpcError(`Body larger than the limit of ${maxSize} bytes`, "INVALID_REQUEST"), requestedFormat(c), 413),
    }),
  );

  /** Prometheus text: calls and errors by method and code, in-flight, baffled, retries, members, lag. */
  app.get("/metrics", (c) => c.body(renderPrometheus(METRIC_FAMILIES, options.metrics()), 200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" }));

  /** The cluster as this node sees it. */
  app.get("/cluster", (c) => c.json({ node: nodeId, members: options.members() }));

  /** The JSON gateway into the same dispatch as TCP calls. */
  app.post("/rpc/:method", (c) => gateway(c, dispatcher, options.maxDepth));

  /** Liveness: 200 for as long as the process serves HTTP. */
  app.get("/healthz", (c) => c.json({ status: "ok", node: nodeId, state: lifecycle.state }));

  /** Readiness: 200 only while ready; 503 while starting or draining. */
  app.get("/readyz", (c) => {
    const ready = lifecycle.state === "ready";
    return c.json({ ready, node: nodeId, state: lifecycle.state }, ready ? 200 : 503);
  });

  app.notFound((c) => c.json({ error: { code: "METHOD_NOT_FOUND", message: `No route for ${c.req.method} ${c.req.path}` } }, 404));
  return app;
}
