import type { Logger } from "../log.ts";
import { checkHeaders, type CallHeaders, type RequestMeta } from "../wire/messages.ts";
import { runInCall } from "./call-scope.ts";
import { type TraceContext, traceOf } from "./trace.ts";
import type { CallContext } from "./contract.ts";
import { type DeadlineHandle, deadlines } from "./deadlines.ts";
import { CallStats } from "./call-stats.ts";
import { RpcError } from "./errors.ts";
import type { Route, Router } from "./router.ts";

/** One call as any transport hands it to the dispatcher; it takes its one answer itself (`reply`). */
export interface IncomingCall {
  readonly method: string;
  /** msgpack-rpc params; the method's input is `params[0]`. */
  readonly params: unknown[];
  readonly meta: RequestMeta | undefined;
  readonly peer: string;
  /** A startup hook's warm-up call: not subject to admission (the node is still starting). */
  readonly warmup?: boolean;
  /** The caller's connection, for `$` methods that talk back on it (`$watch`); none over HTTP. */
  readonly connection?: CallerConnection;
  /**
   * `performance.now()` when the transport read the call: the calls of one read share it (on Deno
   * each reading of the clock is a call into the runtime). Dispatch reads the clock when absent.
   */
  readonly receivedAt?: number;
  /** Receives the single answer to the call, and the headers its handler set, if any. Called exactly once. */
  reply(error: RpcError | null, result?: unknown, headers?: CallHeaders): void;
}

/** What a `$` method may do with the caller's connection. */
export interface CallerConnection {
  /** Sends a notification to the caller. */
  notify(method: string, params: unknown[]): void;
  /** Bytes written to the caller and not yet taken by the network. */
  readonly bufferedBytes: number;
  /** Calls `listener` once, when the connection closes. */
  onClose(listener: () => void): void;
  /** Closes the connection. */
  close(): void;
}

const NO_HEADERS: CallHeaders = Object.freeze({});

/** Points where the lifecycle plugs into dispatch. */
export interface DispatchHooks {
  /** Asked before a handler is chosen; an error answers the call and no handler runs. */
  admit?(method: string): RpcError | undefined;
  /** A handler is about to run. */
  enter?(): void;
  /** A handler has settled (returned, thrown, or been abandoned after abort). */
  leave?(): void;
  /** A call whose handler ran was answered after `ms` (the adaptive concurrency limit's sample). */
  observe?(ms: number): void;
}

/** Built-in `$` methods: answered by ebb itself, never by a service. */
export type BuiltinMethod = (input: unknown, peer: string, connection: CallerConnection | undefined) => unknown | Promise<unknown>;

/** Options of a `Dispatcher`. */
export interface DispatcherOptions {
  router: Router;
  log: Logger;
  hooks?: DispatchHooks;
  builtins?: Record<string, BuiltinMethod>;
}

/**
 * A call that reached its handler and has not settled yet; the handler's `ctx`. Made for every call,
 * so it holds little: what the context offers is read from the incoming call when asked.
 */
export class ActiveCall implements CallContext {
  private traceContext: TraceContext | undefined = undefined;
  private answerHeaders: Record<string, string> | undefined = undefined;
  private controller: AbortController | undefined = undefined;
  private abortReason: RpcError | undefined = undefined;
  private timer: DeadlineHandle | undefined = undefined;
  private wallDeadline: number | undefined = undefined;
  /** False once the caller has its answer. */
  private unanswered = true;
  /** @internal In the dispatcher's set of running calls (its handler went async). */
  tracked = false;

  constructor(
    readonly method: string,
    private readonly call: IncomingCall,
    private readonly owner: Dispatcher,
    /** `performance.now()` when the call was received: its duration in the stats, and its deadline, run from here. */
    readonly started: number,
    /** `performance.now()` when its handler was about to run: the adaptive limit's latency sample runs from here. */
    readonly dispatched: number,
  ) {}

  get peer(): string {
    return this.call.peer;
  }

  get requestId(): string | undefined {
    return this.call.meta?.id;
  }

  get headers(): CallHeaders {
    return this.call.meta?.headers ?? NO_HEADERS;
  }

  /** Wall-clock time (`Date.now()`) past which the caller no longer waits: its deadline, counted from when the call was received. */
  get deadlineAt(): number | undefined {
    const deadline = this.call.meta?.deadline;
    if (deadline === undefined) return undefined;
    // Read once: the two clocks are read apart, and the figure must not move between readings.
    return (this.wallDeadline ??= Date.now() - (performance.now() - this.started) + deadline);
  }

  /**
   * Arms the deadline. Only calls whose handler went async need it: nothing can
   * interrupt a synchronous handler, so the common fast path skips the timer.
   */
  watchDeadline(): void {
    const deadline = this.call.meta?.deadline;
    if (deadline === undefined || this.answered) return;
    const left = deadline - (performance.now() - this.started);
    const expire = () => this.abort(new RpcError(`Deadline exceeded in ${this.method}`, "DEADLINE_EXCEEDED"));
    if (left <= 0) expire();
    else this.timer = deadlines.schedule(left, expire);
  }

  get trace(): TraceContext {
    const meta = this.call.meta;
    return (this.traceContext ??= traceOf(meta?.traceparent, meta?.tracestate));
  }

  setHeader(name: string, value: string): void {
    if (this.answered) throw new Error(`Cannot set answer header "${name}" of ${this.method}: the call was answered already`);
    const next = { ...this.answerHeaders, [name]: value };
    const problem = checkHeaders(next);
    if (problem) throw new RangeError(`Cannot set answer header of ${this.method}: ${problem}`);
    this.answerHeaders = next;
  }

  // The AbortController is made on first use: most handlers never look at it.
  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.abortReason) this.controller.abort(this.abortReason);
    }
    return this.controller.signal;
  }

  /** True once the caller has its answer. */
  get answered(): boolean {
    return !this.unanswered;
  }

  /** Answers the caller with `reason` now and tells the handler to stop. */
  abort(reason: RpcError): void {
    if (this.abortReason) return;
    this.abortReason = reason;
    this.answer(reason, undefined);
    this.controller?.abort(reason);
  }

  /** Sends the answer, once; a late result after abort is dropped. */
  answer(error: RpcError | null, result: unknown): void {
    if (!this.unanswered) return;
    this.unanswered = false;
    this.timer?.cancel();
    this.owner.answered(this, error);
    this.call.reply(error, result, this.answerHeaders);
  }

  /** The handler settled: answer if not answered yet, and leave. Runs once per call. */
  settle(error: RpcError | null, result: unknown): void {
    // Leaves exactly once, whatever happens on the way out.
    try {
      this.answer(error, result);
    } finally {
      this.owner.settled(this);
    }
  }
}

/**
 * Runs calls against a router: admission (the baffle), lookup, input
 * validation, deadline, the handler, output validation. Transport-agnostic:
 * the TCP server and the HTTP gateway both call it.
 */
export class Dispatcher {
  readonly router: Router;
  private readonly log: Logger;
  private readonly hooks: DispatchHooks;
  private readonly builtins: Record<string, BuiltinMethod>;
  private readonly active = new Set<ActiveCall>();
  /** Open `timeTogether` spans: while any is, answers are timed when the outermost ends. */
  private spans = 0;
  /** Answers waiting for the clock: stats label, code and start of each, side by side (kept, not reallocated). */
  private readonly untimedLabels: string[] = [];
  private readonly untimedCodes: string[] = [];
  private readonly untimedStarts: number[] = [];

  constructor(options: DispatcherOptions) {
    this.router = options.router;
    this.log = options.log;
    this.hooks = options.hooks ?? {};
    this.builtins = options.builtins ?? {};
  }

  /** Answers by method and code ("OK" for success) and their durations; unknown methods count as "unknown". */
  readonly stats = new CallStats();

  /** Calls whose handler is running. */
  get activeCount(): number {
    return this.active.size;
  }

  /** A startup hook's in-process call to this node's own services: admitted while the node is starting. */
  warmupCall(method: string, input?: unknown): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.dispatch({
        method,
        params: input === undefined ? [] : [input],
        meta: undefined,
        peer: "startup",
        warmup: true,
        reply: (error, result) => (error ? reject(error) : resolve(result)),
      });
    });
  }

  /**
   * Runs `fn`, timing the calls answered meanwhile together when it returns: one reading of the
   * clock for all (on Deno each is a call into the runtime). A transport wraps each read in it:
   * answers to the calls of one read are written together after it, so the time they took is the
   * same for all, and it is when the read is done. Spans may nest; the outermost times.
   */
  timeTogether<T>(fn: () => T): T {
    this.spans++;
    try {
      return fn();
    } finally {
      if (--this.spans === 0 && this.untimedLabels.length > 0) this.timeUntimed();
    }
  }

  private timeUntimed(): void {
    const now = performance.now();
    const { untimedLabels: labels, untimedCodes: codes, untimedStarts: starts } = this;
    // Calls of one read to one method with one outcome come in runs: each run is recorded at once.
    let run = 0;
    for (let i = 0; i < labels.length; i++) {
      run++;
      const next = i + 1;
      if (next < labels.length && labels[next] === labels[i] && codes[next] === codes[i] && starts[next] === starts[i]) continue;
      this.stats.record(labels[i]!, codes[i]!, (now - starts[i]!) / 1_000, run);
      run = 0;
    }
    labels.length = codes.length = starts.length = 0;
  }

  /** Counts an answer in the stats: now, or when the `timeTogether` span around it ends. */
  private count(label: string, code: string, started: number): void {
    if (this.spans > 0) {
      this.untimedLabels.push(label);
      this.untimedCodes.push(code);
      this.untimedStarts.push(started);
    } else {
      this.stats.record(label, code, (performance.now() - started) / 1_000);
    }
  }

  /** Runs `call`; `call.reply` is called exactly once. Returns the running call, or undefined if answered at once. */
  dispatch(call: IncomingCall): ActiveCall | undefined {
    const { method, params } = call;
    if (method.charCodeAt(0) === 36 /* $ */) {
      this.builtin(call);
      return undefined;
    }
    const started = call.receivedAt ?? performance.now();
    const refused = call.warmup ? undefined : this.hooks.admit?.(method);
    if (refused) return this.refuse(method, started, refused, call);
    const route = this.router.route(method);
    if (!route) return this.refuse(method, started, new RpcError(`Unknown method "${method}"`, "METHOD_NOT_FOUND"), call);
    if (params.length > 1) {
      return this.refuse(method, started, new RpcError(`Method "${method}" takes one parameter, got ${params.length}`, "INVALID_PARAMS"), call);
    }
    const deadline = call.meta?.deadline;
    if (deadline !== undefined && deadline <= 0) {
      return this.refuse(method, started, new RpcError(`Deadline passed before "${method}" started`, "DEADLINE_EXCEEDED"), call);
    }
    let input = params[0];
    if (route.checksInput) {
      const parsed = route.spec.input.safeParse(input);
      if (!parsed.success) {
        const error = new RpcError(`Invalid input for "${method}": ${summarize(parsed.error.issues)}`, "INVALID_PARAMS", { data: parsed.error.issues });
        return this.refuse(method, started, error, call);
      }
      input = parsed.data;
    }
    // The adaptive limit's sample starts here, not when the read arrived: calls queued behind
    // others of the same read would otherwise carry their wait, a figure the peer shapes by batching.
    const active = new ActiveCall(route.name, call, this, started, this.hooks.observe ? performance.now() : started);
    this.hooks.enter?.();
    let result: unknown;
    try {
      result = runInCall(active, route.handler as (input: unknown, ctx: CallContext) => unknown, input);
    } catch (error) {
      active.settle(this.failure(route, error), undefined);
      return undefined;
    }
    if (isThenable(result)) {
      // Only calls still running can be aborted: they alone are tracked and timed.
      this.active.add(active);
      active.tracked = true;
      active.watchDeadline();
      result.then(
        (value) => this.finish(route, active, value),
        (error) => active.settle(this.failure(route, error), undefined),
      );
      return active;
    }
    this.finish(route, active, result);
    return undefined;
  }

  /** Answers a call no handler ran for (refused, unknown, invalid): counted in the stats, not a latency sample. */
  private refuse(method: string, started: number, error: RpcError, call: IncomingCall): undefined {
    this.count(statsLabel(method, error), error.code, started);
    call.reply(error);
    return undefined;
  }

  /** @internal A call whose handler ran is answered: counted, and a latency sample. */
  answered(call: ActiveCall, error: RpcError | null): void {
    const label = statsLabel(call.method, error);
    const code = error === null ? "OK" : error.code;
    const { observe } = this.hooks;
    if (!observe) return this.count(label, code, call.started);
    // The adaptive limit reads the clock for every call anyway (its sample starts at dispatch).
    const now = performance.now();
    this.stats.record(label, code, (now - call.started) / 1_000);
    observe(now - call.dispatched);
  }

  /** Aborts every running call with `reason`: each caller is answered now, each handler sees its signal. */
  abortAll(reason: RpcError): void {
    for (const call of this.active) call.abort(reason);
  }

  /** @internal Called by an ActiveCall whose handler settled. */
  settled(call: ActiveCall): void {
    if (call.tracked) this.active.delete(call);
    this.hooks.leave?.();
  }

  private finish(route: Route, active: ActiveCall, value: unknown): void {
    if (!route.checksOutput) {
      active.settle(null, value);
      return;
    }
    const checked = route.spec.output.safeParse(value);
    if (checked.success) {
      active.settle(null, checked.data);
      return;
    }
    this.log.error("handler returned a result its contract rejects", { method: route.name, issues: checked.error.issues });
    active.settle(new RpcError(`Handler of "${route.name}" returned an invalid result`, "INTERNAL"), undefined);
  }

  private failure(route: Route, error: unknown): RpcError {
    if (error instanceof RpcError) return error;
    const rpcError = RpcError.from(error, "INTERNAL");
    if (rpcError.code === "INTERNAL") this.log.error("handler threw", { method: route.name, error });
    return rpcError;
  }

  private builtin(call: IncomingCall): void {
    const reply = (error: RpcError | null, result?: unknown) => call.reply(error, result);
    const fn = this.builtins[call.method];
    if (!fn) {
      reply(new RpcError(`Unknown method "${call.method}"`, "METHOD_NOT_FOUND"));
      return;
    }
    let result: unknown;
    try {
      result = fn(call.params[0], call.peer, call.connection);
    } catch (error) {
      reply(RpcError.from(error));
      return;
    }
    if (isThenable(result)) result.then((value) => reply(null, value), (error) => reply(RpcError.from(error)));
    else reply(null, result);
  }
}

/** The method a call is counted under: unknown ones together as "unknown", so a peer cannot mint labels. */
function statsLabel(method: string, error: RpcError | null): string {
  return error?.code === "METHOD_NOT_FOUND" ? "unknown" : method;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === "object" && value !== null && typeof (value as { then?: unknown }).then === "function";
}

function summarize(issues: readonly { path: readonly PropertyKey[]; message: string }[]): string {
  return issues
    .slice(0, 3)
    .map((issue) => (issue.path.length ? `${issue.path.map(String).join(".")}: ${issue.message}` : issue.message))
    .join("; ");
}
