// A network of Linux namespaces for tests: each node gets its own network
// stack and address on a bridge the test creates, so faults between hosts are
// real (link down, silence without FIN or RST, delay in a proxy). This kernel
// has no netem or gact qdiscs, so faults are made with what it does have: a
// bridge port taken down (partition, bursty loss, blackhole) and a userspace
// proxy (delay, jitter, resets). Needs root and iproute2's `ip`.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { createServer, connect, type Server, type Socket } from "node:net";
import { IP_COMMAND, type NodeProcess, type RunnerName, startNodeProcess, stopProcess } from "./process.ts";

/** Runs `ip <args>`; rejects with its standard error. */
function ip(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(IP_COMMAND!, args, (error, stdout, stderr) => (error ? reject(new Error(`ip ${args.join(" ")}: ${String(stderr).trim() || error.message}`)) : resolve(String(stdout))));
  });
}

/** Why namespace tests cannot run here (not root, no `ip`, namespaces refused), or undefined when they can. */
export const NETNS_SKIP: string | undefined = await (async () => {
  if (process.platform !== "linux") return "network namespaces need Linux";
  if (!IP_COMMAND) return "network namespace tests need iproute2's ip command, which is missing";
  // process.getuid is not on every runtime's node:process; /proc says the same everywhere.
  const uid = /^Uid:\s+(\d+)/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1];
  if (uid !== "0") return `network namespace tests need root (uid ${uid})`;
  const probe = `ebb${process.pid}p`;
  try {
    await ip(["netns", "add", probe]);
    await ip(["netns", "del", probe]);
  } catch (error) {
    return `network namespaces are refused here: ${error instanceof Error ? error.message : String(error)}`;
  }
  return undefined;
})();

let networksMade = 0;

/** One host of a test network: its namespace, address and the bridge-side end of its link. */
export interface Host {
  index: number;
  /** The namespace's name, for `ip netns exec`. */
  netns: string;
  /** Its address on the bridge. */
  address: string;
  /** The bridge-side veth: taking it down cuts the host off without a FIN or RST. */
  port: string;
}

/** A bursty loss pattern running on one host's link; `done` resolves when it has ended with the link up. */
export interface Flapping {
  done: Promise<void>;
  /** Ends the pattern early, leaving the link up. */
  stop(): Promise<void>;
}

/** Node processes, namespaces and a bridge: create with `createNetwork`, always `close()` in `finally`. */
export interface Network {
  /** The bridge's address in the root namespace: the test process (client, proxies) reaches the hosts from it. */
  gateway: string;
  hosts: Host[];
  /** Starts an ebb node inside host `index`'s namespace; it is killed by `close()` if still running. */
  startNode(index: number, runner: RunnerName, env: Record<string, string>): Promise<NodeProcess>;
  /** Takes a host's link down: a partition, or a blackhole when left down (peers see no FIN and no RST). */
  linkDown(index: number): Promise<void>;
  linkUp(index: number): Promise<void>;
  /** Bursty loss: the link is down `downMs` in every `periodMs` for `durationMs` (20% with 100 of 500). */
  flap(index: number, options: { downMs: number; periodMs: number; durationMs: number }): Flapping;
  /** Kills what it started and removes the namespaces and the bridge; safe to call twice. */
  close(): Promise<void>;
}

/** A private /24 no interface of this machine is on yet, derived from the pid so parallel runs differ. */
async function freeSubnet(): Promise<string> {
  const used = await ip(["-4", "-o", "addr", "show"]) + (await ip(["-4", "route", "show"]));
  const pid = process.pid;
  for (let i = 0; i < 256; i++) {
    const subnet = `10.${100 + ((pid >> 8) + networksMade) % 100}.${(pid + i) % 256}`;
    if (!new RegExp(`(^|\\s)${subnet.replaceAll(".", "\\.")}\\.`, "m").test(used)) return subnet;
  }
  throw new Error("no free 10.x.y.0/24 for a test network");
}

/**
 * Creates `count` namespaces, each with a veth link onto a new bridge, on a
 * private /24: the bridge (root namespace) is .1, host i is .(i+2). Names are
 * unique per process (`ebb<pid><n>`), short enough for interface names (15).
 */
export async function createNetwork(count: number): Promise<Network> {
  const base = `ebb${process.pid}${String.fromCharCode(97 + (networksMade++ % 26))}`;
  const subnet = await freeSubnet();
  const bridge = `${base}b`;
  const hosts: Host[] = Array.from({ length: count }, (_, i) => ({ index: i, netns: `${base}n${i}`, address: `${subnet}.${i + 2}`, port: `${base}h${i}` }));
  const nodes: NodeProcess[] = [];
  const flappers = new Set<ChildProcess>();
  let closed = false;

  const close = async () => {
    if (closed) return;
    closed = true;
    for (const flapper of flappers) flapper.kill("SIGKILL");
    for (const node of nodes) await stopProcess(node);
    // A namespace outlives its processes while their orphaned TCP sockets still retransmit
    // (minutes, after a blackhole), and its veth with it: delete each link explicitly.
    for (const host of hosts) await ip(["link", "del", host.port]).catch(() => {});
    for (const host of hosts) await ip(["netns", "del", host.netns]).catch(() => {});
    await ip(["link", "del", bridge]).catch(() => {});
  };

  try {
    await ip(["link", "add", bridge, "type", "bridge"]);
    await ip(["addr", "add", `${subnet}.1/24`, "dev", bridge]);
    await ip(["link", "set", bridge, "up"]);
    for (const host of hosts) {
      await ip(["netns", "add", host.netns]);
      await ip(["link", "add", host.port, "type", "veth", "peer", "name", "eth0", "netns", host.netns]);
      await ip(["link", "set", host.port, "master", bridge, "up"]);
      await ip(["-n", host.netns, "addr", "add", `${host.address}/24`, "dev", "eth0"]);
      await ip(["-n", host.netns, "link", "set", "eth0", "up"]);
      await ip(["-n", host.netns, "link", "set", "lo", "up"]);
    }
  } catch (error) {
    await close();
    throw error;
  }

  const host = (index: number) => hosts[index] ?? assertNever(`no host ${index} in a network of ${count}`);
  return {
    gateway: `${subnet}.1`,
    hosts,
    async startNode(index, runner, env) {
      const proc = await startNodeProcess(runner, { EBB_HOST: host(index).address, ...env }, [], { netns: host(index).netns });
      nodes.push(proc);
      return proc;
    },
    linkDown: (index) => ip(["link", "set", "dev", host(index).port, "down"]).then(() => {}),
    linkUp: (index) => ip(["link", "set", "dev", host(index).port, "up"]).then(() => {}),
    flap(index, { downMs, periodMs, durationMs }) {
      // A shell loop in its own process keeps the pattern's timing off the test's busy event loop.
      const port = host(index).port;
      const rounds = Math.max(1, Math.round(durationMs / periodMs));
      const script = `i=0; trap '${IP_COMMAND} link set dev ${port} up; exit 0' TERM; while [ $i -lt ${rounds} ]; do ` +
        `${IP_COMMAND} link set dev ${port} down; sleep ${downMs / 1000}; ${IP_COMMAND} link set dev ${port} up; sleep ${(periodMs - downMs) / 1000}; i=$((i+1)); done`;
      const child = spawn("sh", ["-c", script], { stdio: "ignore" });
      flappers.add(child);
      const done = new Promise<void>((resolve) => child.on("exit", () => (flappers.delete(child), resolve())));
      return {
        done: done.then(() => ip(["link", "set", "dev", port, "up"]).then(() => {})),
        async stop() {
          child.kill("SIGTERM");
          await done;
          await ip(["link", "set", "dev", port, "up"]);
        },
      };
    },
    close,
  };
}

function assertNever(message: string): never {
  throw new Error(message);
}

/** A userspace TCP proxy that delays every byte each way; peers reach a node through `address`. */
export interface DelayProxy {
  /** host:port to advertise and dial instead of the node's own. */
  address: string;
  /** Connections open through the proxy. */
  connections(): number;
  /** Resets every connection through it (RST both ways), as a middlebox that lost its state would. */
  reset(): void;
  close(): Promise<void>;
}

/** Options of `startDelayProxy`. */
export interface DelayProxyOptions {
  /** Address in the root namespace to listen on (the network's gateway); port 0 picks one. */
  listenHost: string;
  listenPort?: number;
  target: { host: string; port: number };
  /** Added one way: a round trip through the proxy takes twice this more. */
  delayMs: number;
  /** Each chunk waits up to this much more, order kept. */
  jitterMs?: number;
}

/**
 * Listens on `listenHost` and forwards each connection to `target`, holding
 * every chunk `delayMs` (plus jitter) in each direction, in order. FIN is
 * forwarded after the same delay; a failed or reset side resets the other.
 */
export async function startDelayProxy(options: DelayProxyOptions): Promise<DelayProxy> {
  const { target, delayMs, jitterMs = 0 } = options;
  const pairs = new Set<[Socket, Socket]>();
  const server: Server = createServer({ allowHalfOpen: true }, (downstream) => {
    const upstream = connect({ host: target.host, port: target.port, allowHalfOpen: true });
    const pair: [Socket, Socket] = [downstream, upstream];
    pairs.add(pair);
    downstream.setNoDelay(true);
    upstream.setNoDelay(true);
    const abort = () => {
      pairs.delete(pair);
      if (!downstream.destroyed) downstream.resetAndDestroy();
      if (!upstream.destroyed) upstream.resetAndDestroy();
    };
    downstream.on("error", abort);
    upstream.on("error", abort);
    delayed(downstream, upstream, delayMs, jitterMs, abort);
    delayed(upstream, downstream, delayMs, jitterMs, abort);
    const forget = () => {
      if (downstream.destroyed && upstream.destroyed) pairs.delete(pair);
    };
    downstream.on("close", forget);
    upstream.on("close", forget);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.listenPort ?? 0, options.listenHost, () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  const reset = () => {
    for (const [a, b] of pairs) {
      a.resetAndDestroy();
      b.resetAndDestroy();
    }
    pairs.clear();
  };
  return {
    address: `${options.listenHost}:${port}`,
    connections: () => pairs.size,
    reset,
    async close() {
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      reset();
      await stopped;
    },
  };
}

/** Forwards `from` to `to` with every chunk and the FIN held `delayMs` (+ jitter), in arrival order. */
function delayed(from: Socket, to: Socket, delayMs: number, jitterMs: number, abort: () => void): void {
  const queue: { at: number; chunk: Uint8Array | null }[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  let last = 0;
  const flush = () => {
    timer = undefined;
    const now = Date.now();
    while (queue.length > 0 && queue[0]!.at <= now) {
      const { chunk } = queue.shift()!;
      if (to.destroyed) return;
      if (chunk === null) to.end();
      else to.write(chunk);
    }
    if (queue.length > 0) timer = setTimeout(flush, queue[0]!.at - now);
  };
  const push = (chunk: Uint8Array | null) => {
    // Later chunks never overtake earlier ones, whatever their jitter.
    last = Math.max(last, Date.now() + delayMs + Math.random() * jitterMs);
    queue.push({ at: last, chunk });
    if (timer === undefined) timer = setTimeout(flush, last - Date.now());
  };
  from.on("data", (chunk: Uint8Array) => push(chunk));
  from.on("end", () => push(null));
  // A side that closed without its FIN reaching us (reset, error) takes the other down at once.
  from.on("close", (hadError: boolean) => {
    if (hadError) abort();
  });
}

/** A TCP connection of a process with a given peer, as /proc/<pid>/net/tcp shows it. */
export interface TcpConnection {
  /** `ESTABLISHED`, `SYN_SENT`, `FIN_WAIT1`, … */
  state: string;
  /** Bytes sent and not yet acknowledged (or not yet sent). */
  unackedBytes: number;
  /** Retransmissions of the oldest unacknowledged segment (or SYN) so far. */
  retransmits: number;
  /** The timer armed on it: `retransmit` (data or SYN unanswered), `keepalive`, `time-wait`, `window-probe`; undefined when none. */
  timer?: "retransmit" | "keepalive" | "time-wait" | "window-probe";
  /** When that timer fires, in ms from now. */
  timerInMs?: number;
}

const TCP_TIMERS = { "01": "retransmit", "02": "keepalive", "03": "time-wait", "04": "window-probe" } as const;

const TCP_STATES: Record<string, string> = {
  "01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1", "05": "FIN_WAIT2", "06": "TIME_WAIT",
  "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING",
};

/** The inodes of the socket descriptors `pid` holds. */
function socketInodes(pid: number): Set<string> {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const inode = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1];
      if (inode !== undefined) inodes.add(inode);
    } catch {
      // closed between the listing and the read
    }
  }
  return inodes;
}

/** The TCP connections whose descriptors `pid` holds with `remoteHost`, read in its own namespace's /proc/<pid>/net/tcp. */
export function connectionsOf(pid: number, remoteHost: string): TcpConnection[] {
  const inodes = socketInodes(pid);
  // /proc/net/tcp writes an IPv4 address as 8 hex digits in host (little-endian) byte order.
  const remoteHex = remoteHost.split(".").reverse().map((b) => Number(b).toString(16).padStart(2, "0")).join("").toUpperCase();
  const found: TcpConnection[] = [];
  for (const row of readFileSync(`/proc/${pid}/net/tcp`, "utf8").split("\n").slice(1)) {
    // sl local rem st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
    const fields = row.trim().split(/\s+/);
    if (fields.length < 10 || !inodes.has(fields[9]!) || fields[2]!.split(":")[0] !== remoteHex) continue;
    const [timer, when] = fields[5]!.split(":") as [keyof typeof TCP_TIMERS | "00", string];
    found.push({
      state: TCP_STATES[fields[3]!] ?? fields[3]!,
      unackedBytes: parseInt(fields[4]!.split(":")[0]!, 16),
      retransmits: parseInt(fields[6]!, 16),
      timer: timer === "00" ? undefined : TCP_TIMERS[timer],
      // In clock ticks (USER_HZ, 100 a second).
      timerInMs: timer === "00" ? undefined : parseInt(when, 16) * 10,
    });
  }
  return found;
}

/** Socket descriptors a process holds, and those whose TCP peer is `remoteHost`. */
export interface SocketCount {
  /** Every socket descriptor (TCP, UDP, Unix, listeners). */
  sockets: number;
  /** TCP connections with `remoteHost`, any state (connection attempts included). */
  toRemote: number;
  /** Of those, ESTABLISHED ones. */
  establishedToRemote: number;
}

/** Counts the socket descriptors of `pid`, and its TCP connections with `remoteHost`. */
export function socketsOf(pid: number, remoteHost: string): SocketCount {
  const connections = connectionsOf(pid, remoteHost);
  return { sockets: socketInodes(pid).size, toRemote: connections.length, establishedToRemote: connections.filter((c) => c.state === "ESTABLISHED").length };
}

/** 32 random bytes in base64: a cluster key for EBB_CLUSTER_KEY, as `ebb keygen` prints. */
export function randomClusterKey(): string {
  return btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))));
}
