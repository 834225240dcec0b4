/**
 * CPU pinning and CPU noise for the benchmarks that compare stacks side by side (bench:echo).
 *
 * Where `taskset` exists and the machine has two cores or more, the bench process (the client)
 * is pinned to core 0 and every server it starts to core 1, so client and server never fight
 * for one core and the figures do not depend on the scheduler's mood. `CpuMeter` tells how
 * much CPU every other process (and, on a virtual machine, every other guest) used during a round,
 * from /proc: a round shared with them is a round to discard.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import process from "node:process";

/** Core of the bench process (the client side) and core of the servers it starts. */
export const CLIENT_CORE = 0;
export const SERVER_CORE = 1;

/** True when `taskset` runs here and there are two cores to pin to. */
export const canPin: boolean = availableParallelism() >= 2 && spawnSync("taskset", ["-V"]).status === 0;

/** Pins this process, every thread of it, to `core`; false when pinning is not possible here. */
export function pinSelf(core = CLIENT_CORE): boolean {
  if (!canPin) return false;
  return spawnSync("taskset", ["-a", "-p", "-c", String(core), String(process.pid)]).status === 0;
}

/** `command args` run on `core` (prefixed with `taskset -c`), or unchanged when pinning is not possible. */
export function pinned(command: string, args: string[], core = SERVER_CORE): [string, string[]] {
  return canPin ? ["taskset", ["-c", String(core), command, ...args]] : [command, args];
}

/** Clock ticks per second of /proc's CPU times (USER_HZ: 100 on every Linux build that matters). */
const TICKS_PER_SECOND = 100;

/**
 * CPU time of the whole machine in user and system mode, plus steal (what the hypervisor gave other
 * guests while we wanted the CPU: on a shared VM, the noisiest neighbour), in ticks; interrupts are
 * left out (our own loopback traffic lands there).
 */
function machineTicks(): number {
  const fields = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!.trim().split(/\s+/).map(Number);
  const [user, nice, system, , , , , steal] = fields.slice(1) as number[];
  return user! + nice! + system! + (steal ?? 0);
}

/** User and system CPU time of process `pid`, in ticks; 0 once it is gone. */
function processTicks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return 0;
  }
}

/** Measures, over a round, the CPU used by processes other than the round's own (as a fraction of one core). */
export class CpuMeter {
  private readonly pids: number[];
  private readonly startedAt = performance.now();
  private readonly machine0: number;
  private readonly own0: number;

  /** Starts measuring now; `pids` are the round's own processes (this one is always counted as own). */
  constructor(pids: number[]) {
    this.pids = [process.pid, ...pids];
    this.machine0 = machineTicks();
    this.own0 = this.ownTicks();
  }

  private ownTicks(): number {
    return this.pids.reduce((sum, pid) => sum + processTicks(pid), 0);
  }

  /**
   * CPU other processes used since the start, in cores (0.25: a quarter of one core); undefined without /proc.
   * `exitedSeconds`: CPU of own processes that have exited meanwhile (their /proc entry is gone), as they reported it.
   */
  others(exitedSeconds = 0): number | undefined {
    try {
      const seconds = (performance.now() - this.startedAt) / 1000;
      const other = (machineTicks() - this.machine0 - (this.ownTicks() - this.own0)) / TICKS_PER_SECOND - exitedSeconds;
      return Math.max(0, other / seconds);
    } catch {
      return undefined;
    }
  }
}

/** Resident memory of process `pid` in bytes (VmRSS), or undefined without /proc. */
export function residentBytes(pid: number): number | undefined {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}
