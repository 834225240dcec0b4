import { RpcError } from "../rpc/errors.ts";

/** The states of a node, in the only order they happen. */
export type LifecycleState = "starting" | "ready" | "draining" | "stopped";

const ORDER: Record<LifecycleState, number> = { starting: 0, ready: 1, draining: 2, stopped: 3 };

/** A listener of state changes. */
export type StateListener = (state: LifecycleState, previous: LifecycleState) => void;

/**
 * The node's lifecycle state and the baffle: which requests may reach a handler.
 *
 * - starting: refused with UNAVAILABLE, processed false (not warm yet; try another node)
 * - ready: admitted
 * - draining: admitted until the baffle closes (after the drain delay), then SHUTTING_DOWN, processed false
 * - stopped: SHUTTING_DOWN, processed false
 */
export class Lifecycle {
  private current: LifecycleState = "starting";
  private baffleClosed = false;
  private readonly listeners = new Set<StateListener>();
  /** Requests refused because the node was not ready yet. */
  notReadyCount = 0;
  /** Requests answered SHUTTING_DOWN by the baffle. */
  baffledCount = 0;

  constructor(
    private readonly nodeId: string,
    /** A listener that threw: reported here; the change and the other listeners go on. */
    private readonly onListenerError: (error: unknown) => void = () => {},
  ) {}

  get state(): LifecycleState {
    return this.current;
  }

  /** True once the baffle answers every request SHUTTING_DOWN. */
  get baffled(): boolean {
    return this.baffleClosed;
  }

  /** Moves forward to `next`; moving backwards or staying is ignored. Listeners run synchronously. */
  advance(next: LifecycleState): boolean {
    const previous = this.current;
    if (ORDER[next] <= ORDER[previous]) return false;
    this.current = next;
    if (next === "stopped") this.baffleClosed = true;
    for (const listener of this.listeners) {
      try {
        listener(next, previous);
      } catch (error) {
        this.onListenerError(error);
      }
    }
    return true;
  }

  /** From now on every request is answered SHUTTING_DOWN without entering a handler. */
  closeBaffle(): void {
    this.baffleClosed = true;
  }

  /** Subscribes to state changes; returns the unsubscribe function. */
  onChange(listener: StateListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The admission decision for a service call; undefined admits it. */
  admit(): RpcError | undefined {
    if (this.current === "ready" || (this.current === "draining" && !this.baffleClosed)) return undefined;
    if (this.current === "starting") {
      this.notReadyCount++;
      return new RpcError(`Node ${this.nodeId} is starting and not ready yet`, "UNAVAILABLE", { processed: false, data: { state: "starting" } });
    }
    this.baffledCount++;
    return new RpcError(`Node ${this.nodeId} is shutting down`, "SHUTTING_DOWN", { data: { state: this.current } });
  }
}
