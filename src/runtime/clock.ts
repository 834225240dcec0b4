/** A timer that can be cancelled. */
export interface TimerHandle {
  cancel(): void;
}

/** Time as a part sees it: real in a node, virtual in tests and the simulator. */
export interface Clock {
  now(): number;
  setTimer(ms: number, fn: () => void): TimerHandle;
}

/** A runtime timer as a `TimerHandle`: one object per timer, no closure (deadlines arm one per call). */
class RealTimer implements TimerHandle {
  constructor(private readonly id: ReturnType<typeof setTimeout>) {}

  cancel(): void {
    clearTimeout(this.id);
  }
}

/** The real clock: wall time and runtime timers. */
export const realClock: Clock = {
  now: () => Date.now(),
  setTimer: (ms, fn) => new RealTimer(setTimeout(fn, ms)),
};

/** Resolves after `ms` on `clock`. */
export function sleep(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolve) => clock.setTimer(ms, resolve));
}

/** Resolves true if `promise` settles within `ms` on `clock`, false otherwise; the timer never outlives it. */
export async function within(clock: Clock, promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: TimerHandle | undefined;
  const timeout = new Promise<false>((resolve) => (timer = clock.setTimer(ms, () => resolve(false))));
  try {
    return await Promise.race([promise.then(() => true as const), timeout]);
  } finally {
    timer?.cancel();
  }
}
