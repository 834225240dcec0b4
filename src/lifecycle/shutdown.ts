import { errorText } from "../error-text.ts";
import type { Logger } from "../log.ts";
import { RpcError } from "../rpc/errors.ts";
import { type Clock, sleep, within } from "../runtime/clock.ts";
import type { InflightCounter } from "./inflight.ts";
import type { Lifecycle } from "./state.ts";

/** After the drain, how long connections get to close their side before they are closed for them. */
export const CONNECTION_LINGER_MS = 500;

/** At the very end of the stop sequence, how long HTTP responses still being written get before exit. */
export const HTTP_STOP_GRACE_MS = 500;

/** What a drain did, logged in one line at the end and returned by `shutdown()`. */
export interface ShutdownSummary {
  /** What started the drain: a signal name, "shutdown()", "startup failed". */
  reason: string;
  /** From the start of draining until every connection was closed. */
  drainMs: number;
  /** Requests in flight at the start of draining or admitted during the drain delay, that completed. */
  completed: number;
  /** Requests answered SHUTTING_DOWN by the baffle without running a handler. */
  baffled: number;
  /** Requests still running at the shutdown timeout: aborted, their callers answered CANCELLED. */
  cancelled: number;
  /** True when the shutdown timeout passed with work still in flight. */
  timedOut: boolean;
  /** Handler entries over the node's whole life. */
  handled: number;
  /** The process's exit code: 0 drained cleanly, 1 the drain timed out and work was cancelled, or the code the stop was given (3 after a failed start). */
  exitCode: number;
}

/** The RPC listener and its connections, as the stop sequence drives them. */
export interface StoppableServer {
  /** Sends `$goaway` on every open connection. */
  broadcastGoaway(goaway: { node: string; reason: string }): void;
  /** Stops accepting connections; open ones stay open. */
  stopAccepting(): Promise<void>;
  /** Half-closes every connection once its answers are written. */
  endAll(): void;
  /** Resolves once every connection is closed. */
  whenAllClosed(): Promise<void>;
  /** Closes whatever is still open. */
  closeAll(): void;
}

/** The parts a drain acts on, in the order of DESIGN §4 "Stop". */
export interface StopParts {
  lifecycle: Pick<Lifecycle, "advance" | "closeBaffle" | "baffledCount">;
  inflight: Pick<InflightCounter, "count" | "entered" | "idle">;
  /** The RPC server; undefined when the node never listened, and the sequence then only marks it stopped. */
  server(): StoppableServer | undefined;
  /** Aborts every handler still running; their callers are answered with `error`. */
  abortAll(error: RpcError): void;
  /** Announces `left` and lets it spread; resolves once the membership stopped. */
  leave(): Promise<void>;
  /** Stops the HTTP listener, letting responses in flight finish. */
  stopHttp?(): Promise<void>;
  /** Closes the node's own cluster clients. */
  closeClients(): void;
}

/** Timings of the stop sequence. */
export interface StopOptions {
  nodeId: string;
  /** EBB_DRAIN_DELAY_MS: serve normally this long after `$goaway` before the baffle closes. */
  drainDelayMs: number;
  /** EBB_SHUTDOWN_TIMEOUT_MS: how long in-flight work gets before it is cancelled. */
  shutdownTimeoutMs: number;
  lingerMs?: number;
  httpGraceMs?: number;
  clock: Clock;
  log: Logger;
}

/**
 * The node's stop sequence (DESIGN §4): draining and `$goaway`, the baffle after
 * the drain delay, stop accepting, wait for the in-flight counter up to the
 * shutdown timeout (then cancel), leave the membership, end and close the
 * connections, stop HTTP last. Run once; `startedAt` tells a scrape how long it
 * has been draining.
 */
export class StopSequence {
  /** When draining began, on the sequence's clock; undefined before. */
  startedAt: number | undefined;

  constructor(private readonly parts: StopParts, private readonly options: StopOptions) {}

  /** Seconds spent draining so far: 0 before the drain. */
  drainSeconds(): number {
    return this.startedAt === undefined ? 0 : (this.options.clock.now() - this.startedAt) / 1000;
  }

  /** Awaits one step; a step that fails is logged, and the sequence goes on (a node must always reach stopped). */
  private async step(name: string, done: Promise<void>): Promise<void> {
    try {
      await done;
    } catch (error) {
      this.options.log.error(`stop sequence: ${name} failed`, { error: errorText(error) });
    }
  }

  /** Runs the sequence once; `exitCode`, when given, is the code the process exits with whatever the drain did. */
  async run(reason: string, exitCode?: number): Promise<ShutdownSummary> {
    const { parts, options } = this;
    const { lifecycle, inflight } = parts;
    const rpc = parts.server();
    const { clock, log, nodeId } = options;
    const started = (this.startedAt = clock.now());
    const summary: ShutdownSummary = { reason, drainMs: 0, completed: 0, baffled: 0, cancelled: 0, timedOut: false, handled: 0, exitCode: 0 };
    if (!rpc) {
      lifecycle.advance("stopped");
      return summary;
    }
    const baffledBefore = lifecycle.baffledCount;
    const inflightAtStart = inflight.count;
    const enteredAtStart = inflight.entered;

    // 1-2. Draining: readiness fails now, and every client hears $goaway at once.
    lifecycle.advance("draining");
    rpc.broadcastGoaway({ node: nodeId, reason: "draining" });
    log.info("draining", { reason, inflight: inflightAtStart, drainDelayMs: options.drainDelayMs });

    // 3. The baffle, after the optional delay for routers that learn late.
    if (options.drainDelayMs > 0) await sleep(clock, options.drainDelayMs);
    lifecycle.closeBaffle();

    // 4. Stop accepting RPC connections. HTTP keeps answering (probes, scrapes, the
    //    baffled gateway, with Connection: close) until the very end, below.
    await this.step("stop accepting", rpc.stopAccepting());

    // 5. Wait for the in-flight counter, up to the shutdown timeout; then cancel what is left.
    const admitted = inflightAtStart + (inflight.entered - enteredAtStart);
    summary.timedOut = !(await within(clock, inflight.idle(), options.shutdownTimeoutMs));
    if (summary.timedOut) {
      summary.cancelled = inflight.count;
      parts.abortAll(new RpcError(`Node ${nodeId} stopped before the call finished (shutdown timeout ${options.shutdownTimeoutMs} ms)`, "CANCELLED"));
      log.warn("shutdown timeout: cancelling what is still in flight", { cancelled: summary.cancelled });
    }
    summary.completed = admitted - summary.cancelled;

    // 6. Leave the membership (announce left, let it spread), then half-close every
    //    connection once its answers are written (a final $goaway first),
    //    give peers a moment to close their side, then close what is left.
    await this.step("leave the membership", parts.leave());
    rpc.endAll();
    await within(clock, rpc.whenAllClosed(), options.lingerMs ?? CONNECTION_LINGER_MS);
    rpc.closeAll();
    // Last, HTTP stops: its responses in flight get a short grace, then the process may exit.
    if (parts.stopHttp) await within(clock, parts.stopHttp(), options.httpGraceMs ?? HTTP_STOP_GRACE_MS);

    parts.closeClients();
    lifecycle.advance("stopped");
    summary.baffled = lifecycle.baffledCount - baffledBefore;
    summary.handled = inflight.entered;
    summary.drainMs = clock.now() - started;
    summary.exitCode = exitCode ?? (summary.timedOut ? 1 : 0);
    log.info(
      `stopped: drained in ${summary.drainMs} ms, ${summary.completed} completed, ${summary.baffled} baffled, ${summary.cancelled} cancelled`,
      { ...summary },
    );
    return summary;
  }
}
