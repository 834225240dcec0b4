import { type Context, Hono, type MiddlewareHandler } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import { bodyLimit } from "hono/body-limit";
import type { InflightCounter } from "../lifecycle/inflight.ts";
import type { Lifecycle } from "../lifecycle/state.ts";
import type { Dispatcher } from "../rpc/dispatch.ts";
import type { Member } from "../membership/types.ts";
import { type ClusterKey, httpTokens } from "../rpc/auth.ts";
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
  /** Samples for `/metrics`, gathered when asked; undefined: no /metrics here (EBB_METRICS_ADDR serves it). */
  metrics: (() => Sample[]) | undefined;
  /** The member list for `/cluster`. */
  members(): Member[];
  /** Largest gateway body accepted (`EBB_MAX_MESSAGE_BYTES`); larger ones get 413. */
  maxBodyBytes: number;
  /** EBB_MAX_DEPTH: gateway bodies and answers keep the wire's nesting limit. */
  maxDepth?: number;
  /** EBB_CLUSTER_KEY and EBB_CLUSTER_ID: the gateway and /cluster then need `Authorization: Bearer <token>` (`httpToken`); probes and /metrics stay open. */
  clusterKey?: ClusterKey;
}

/**
 * The node's HTTP surface (hono). Every request is counted in flight, like RPC
 * calls, so shutdown waits for it; while draining, responses carry
 * `Connection: close` so keep-alive clients reconnect elsewhere.
 */
export function createHttpApp(options: HttpAppOptions): Hono {
  const { lifecycle, inflight, nodeId, dispatcher } = options;
  const app = new Hono();

  app.use(countedInFlight(inflight, lifecycle));

  if (options.clusterKey !== undefined) {
    const refuse = (message: string) => (c: Context) => replyError(c, new RpcError(message, "UNAUTHENTICATED"), requestedFormat(c), 401);
    // Tokens derived from the keys (one per ring key), never the keys: a token on the wire does not give the key away.
    const guard = bearerAuth({
      token: httpTokens(options.clusterKey),
      noAuthenticationHeader: { message: refuse('This node requires a cluster token: send Authorization: Bearer <token> (print it with "ebb token")') },
      invalidAuthenticationHeader: { message: refuse('The Authorization header must be: Bearer <token> (print it with "ebb token")') },
      invalidToken: { message: refuse('Wrong cluster token: it must be derived from one of the cluster keys and the cluster id ("ebb token")') },
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

  if (options.metrics) metricsRoute(app, options.metrics);

  /** The cluster as this node sees it. */
  app.get("/cluster", (c) => c.json({ node: nodeId, members: options.members() }));

  /** The JSON gateway into the same dispatch as TCP calls. */
  app.post("/rpc/:method", (c) => gateway(c, dispatcher, options.maxDepth));

  probeRoutes(app, nodeId, lifecycle);
  app.notFound(noRoute);
  return app;
}

/** What the metrics listener (EBB_METRICS_ADDR) reads from the node. */
export interface MetricsAppOptions {
  nodeId: string;
  lifecycle: Lifecycle;
  inflight: InflightCounter;
  metrics(): Sample[];
}

/** The app of the separate metrics listener (EBB_METRICS_ADDR): /metrics and the probes, nothing that calls or lists the cluster. */
export function createMetricsApp(options: MetricsAppOptions): Hono {
  const app = new Hono();
  app.use(countedInFlight(options.inflight, options.lifecycle));
  metricsRoute(app, options.metrics);
  probeRoutes(app, options.nodeId, options.lifecycle);
  app.notFound(noRoute);
  return app;
}

/** Every request is counted in flight, so shutdown waits for it; while draining, answers carry `Connection: close`. */
function countedInFlight(inflight: InflightCounter, lifecycle: Lifecycle): MiddlewareHandler {
  return async (c, next) => {
    // Gateway calls are counted by dispatch itself (and baffled there); the rest here.
    const counted = !c.req.path.startsWith("/rpc/");
    if (counted) inflight.enter();
    try {
      await next();
    } finally {
      if (counted) inflight.leave();
      if (lifecycle.state === "draining" || lifecycle.state === "stopped") c.header("Connection", "close");
    }
  };
}

/** Prometheus text: calls and errors by method and code, in-flight, baffled, retries, members, lag. */
function metricsRoute(app: Hono, metrics: () => Sample[]): void {
  app.get("/metrics", (c) => c.body(renderPrometheus(METRIC_FAMILIES, metrics()), 200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" }));
}

function probeRoutes(app: Hono, nodeId: string, lifecycle: Lifecycle): void {
  /** Liveness: 200 for as long as the process serves HTTP. */
  app.get("/healthz", (c) => c.json({ status: "ok", node: nodeId, state: lifecycle.state }));

  /** Readiness: 200 only while ready; 503 while starting or draining. */
  app.get("/readyz", (c) => {
    const ready = lifecycle.state === "ready";
    return c.json({ ready, node: nodeId, state: lifecycle.state }, ready ? 200 : 503);
  });
}

function noRoute(c: Context): Response {
  return c.json({ error: { code: "METHOD_NOT_FOUND", message: `No route for ${c.req.method} ${c.req.path}` } }, 404);
}
