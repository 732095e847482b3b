// The simulated cluster: nodes (power, network, freeze), etcd, the machines under them, and a havend process
// on each powered node running the shipped programs, all driven by one Scheduler. Node-bound work goes
// through onNode/nodeTask: dropped when the node has rebooted since, held back while the node is frozen
// (SIGSTOP), to run in order when it is thawed.
import { ClusterStore, type VmMaps } from "../adapters/etcd/cluster-store.js";
import type { WatchEvent } from "../adapters/etcd/port.js";
import { eventSchema, type HavenEvent } from "../core/model.js";
import type { PlacementRules } from "../core/placement-rules.js";
import { SimEtcd, type SimEtcdClient } from "./etcd.js";
import { SIM_PREFIX, SimHavend } from "./havend.js";
import { Invariants } from "./invariants.js";
import { Machines, type ExitHow, type Proc } from "./machines.js";
import { EPOCH_MS } from "./process.js";
import { Scheduler } from "./scheduler.js";

export { EPOCH_MS };

export interface WorldConfig {
  ttlSeconds: number;
  marginMs: number;
  /** Placement constraints and node attributes in etcd when the run begins (steps may change them). */
  rules: PlacementRules;
  /** How long a change takes to reach a watcher. */
  watchDelayMs: number;
  /** etcd members (default 3): quorum needs more than half of them. */
  etcdMembers?: number;
}

export interface VmTiming {
  startMs: number;
  incomingMs: number;
  stopMs: number;
  migrateMs: number;
  downtimeMs: number;
}

export const DEFAULT_TIMING: VmTiming = {
  startMs: 1000,
  incomingMs: 500,
  stopMs: 1000,
  migrateMs: 2000,
  downtimeMs: 30,
};

export type FenceBehaviour = { result: "ok" | "fail" | "hang"; durationMs: number };

export interface SimNode {
  name: string;
  /** 1-based: addresses are 10.0.0.<index>. */
  index: number;
  capacity: { vcpus: number; memoryMb: number };
  powered: boolean;
  netCut: boolean;
  frozen: boolean;
  /** Simulated ms of the last thaw: a thawed node's guard gets one period to act. */
  thawedAt: number;
  /** Bumped on every power-off: tasks of an earlier boot are dropped. */
  boot: number;
  deferred: Array<() => void>;
  keepAliveLatencyMs: number;
  /** The havend's lease file: survives reboots, as on disk. */
  leaseFile: string;
  havend: SimHavend | undefined;
  fence: FenceBehaviour;
}

/** An event as stored in etcd, with simulated time and the order it was written in (for ties of time). */
export interface StoredEvent extends HavenEvent {
  /** Simulated ms of `time`. */
  at: number;
  seq: number;
}

export interface SimLine {
  at: number;
  seq: number;
  text: string;
}

type Failure = { vm: string; node?: string; message: string; left: number };

/** A shutdown stops havend, then the QEMUs a second later, then the power a second after that. */
const SHUTDOWN_STEP_MS = 1000;

export class World {
  readonly scheduler = new Scheduler();
  readonly etcd: SimEtcd;
  /** The API's etcd client (it reaches any member that has quorum), and Haven's keys through it. */
  readonly api: SimEtcdClient;
  readonly store: ClusterStore;
  readonly machines: Machines;
  readonly nodes = new Map<string, SimNode>();
  readonly lines: SimLine[] = [];
  readonly events: StoredEvent[] = [];
  readonly invariants: Invariants;
  /** Where the programs' own log lines go (`haven simulate --log`); by default nowhere. */
  programLog: ((line: string) => void) | undefined;
  private seq = 0;
  private readonly timings = new Map<string, VmTiming>();
  private readonly canaries = new Set<string>();
  private readonly startFailures: Failure[] = [];
  private readonly stopFailures: Failure[] = [];

  constructor(readonly config: WorldConfig) {
    this.etcd = new SimEtcd(
      {
        scheduler: this.scheduler,
        watchDelayMs: config.watchDelayMs,
        onCommit: (events) => this.committed(events),
      },
      Array.from({ length: config.etcdMembers ?? 3 }, (_, i) => `etcd${i + 1}`),
    );
    this.etcd.ttlMs = config.ttlSeconds * 1000;
    this.api = this.etcd.client({
      reachable: () => true,
      after: (delayMs, run) => this.scheduler.after(delayMs, run),
      keepAliveLatencyMs: () => 0,
    });
    this.store = new ClusterStore(this.api, SIM_PREFIX, {
      now: () => this.wall(),
      sleep: (ms) => new Promise((resolve) => this.scheduler.after(ms, resolve)),
    });
    this.machines = new Machines({
      now: () => this.now(),
      wall: () => this.wall(),
      at: (time, run) => this.scheduler.at(time, run),
      nodeIndex: (node) => this.node(node).index,
      canStream: (node) => this.reachable(node),
      canRun: (node) => this.node(node).powered && !this.node(node).frozen,
      exited: (proc, how) => this.exited(proc, how),
      lostWrite: (lost) => this.invariants.lostWrite(lost),
    });
    this.invariants = new Invariants(this);
  }

  // --- time ---
  now(): number {
    return this.scheduler.now;
  }

  wall(at = this.now()): number {
    return EPOCH_MS + at;
  }

  iso(): string {
    return new Date(this.wall()).toISOString();
  }

  /** Every change etcd applies: events go to the log, placements to the invariants. */
  private committed(changes: WatchEvent[]): void {
    for (const { type, kv } of changes) {
      if (!kv.key.startsWith(SIM_PREFIX)) continue;
      const key = kv.key.slice(SIM_PREFIX.length);
      if (key.startsWith("events/") && type === "put") {
        const event = eventSchema.parse(JSON.parse(kv.value));
        this.events.push({ ...event, at: Date.parse(event.time) - EPOCH_MS, seq: this.seq++ });
      }
      const placement = /^vms\/([^/]+)\/placement$/.exec(key);
      if (placement) this.invariants.placementChanged(placement[1]!, type === "put" ? kv.value : undefined);
    }
  }

  // --- what etcd holds now (for checks and the log; the programs read it through their clients) ---
  vmMaps(): VmMaps {
    return this.store.vmMapsOf(this.etcd.data.peek(this.store.vmsPrefix));
  }

  /** Whether the node's record (under its lease) is in etcd. */
  online(node: string): boolean {
    return this.etcd.data.peek(this.store.nodeKey(node)).some((kv) => kv.key === this.store.nodeKey(node));
  }

  /** The node that holds the controller key. */
  leader(): string | undefined {
    return this.etcd.data.peek(this.store.controllerKey).find((kv) => kv.key === this.store.controllerKey)
      ?.value;
  }

  // --- nodes ---
  addNode(name: string, capacity: SimNode["capacity"]): void {
    this.nodes.set(name, {
      name,
      index: this.nodes.size + 1,
      capacity,
      powered: false,
      netCut: false,
      frozen: false,
      thawedAt: 0,
      boot: 0,
      deferred: [],
      keepAliveLatencyMs: 0,
      leaseFile: "",
      havend: undefined,
      fence: { result: "ok", durationMs: 2000 },
    });
  }

  node(name: string): SimNode {
    const node = this.nodes.get(name);
    if (!node) throw new Error(`no simulated node ${name}`);
    return node;
  }

  /** Whether a process on `node` gets answers from etcd (quorum is etcd's own matter). */
  reachable(name: string): boolean {
    const node = this.node(name);
    return node.powered && !node.netCut && !node.frozen;
  }

  /** Runs `run` on `node` in boot `boot` (default: the current one) after `delayMs`. */
  nodeTask(name: string, delayMs: number, run: () => void, boot?: number): void {
    const node = this.node(name);
    const at = boot ?? node.boot;
    this.scheduler.after(delayMs, () => this.onNode(name, at, run));
  }

  onNode(name: string, boot: number, run: () => void): void {
    const node = this.node(name);
    if (node.boot !== boot || !node.powered) return;
    if (node.frozen) node.deferred.push(run);
    else run();
  }

  // --- QEMU ---
  timing(vm: string): VmTiming {
    return this.timings.get(vm) ?? DEFAULT_TIMING;
  }

  setTiming(vm: string, timing: VmTiming): void {
    this.timings.set(vm, timing);
  }

  isCanary(vm: string): boolean {
    return this.canaries.has(vm);
  }

  setCanary(vm: string): void {
    this.canaries.add(vm);
  }

  failStarts(vm: string, times: number, message: string, node?: string): void {
    this.startFailures.push({ vm, node, message, left: times });
  }

  failStops(vm: string, times: number, message: string, node?: string): void {
    this.stopFailures.push({ vm, node, message, left: times });
  }

  /** The message of an injected start failure for this start, if any. */
  takeStartFailure(vm: string, node: string): string | undefined {
    return take(this.startFailures, vm, node);
  }

  takeStopFailure(vm: string, node: string): string | undefined {
    return take(this.stopFailures, vm, node);
  }

  private exited(proc: Proc, how: ExitHow): void {
    if (how === "power") return;
    const havend = this.node(proc.node).havend;
    havend?.process.run(() => havend.hypervisor.exited(proc));
  }

  // --- faults ---
  powerOn(name: string): void {
    const node = this.node(name);
    if (node.powered) return;
    node.powered = true;
    node.frozen = false;
    node.deferred = [];
    this.startHavend(name);
  }

  powerOff(name: string): void {
    const node = this.node(name);
    if (!node.powered) return;
    this.killHavend(name);
    node.powered = false;
    node.frozen = false;
    node.boot++;
    node.deferred = [];
    this.machines.powerOff(name);
  }

  /** havend starts on a powered node (at boot, or after it was killed or stopped); its QEMUs are found again. */
  startHavend(name: string): boolean {
    const node = this.node(name);
    if (!node.powered || node.havend) return false;
    node.havend = new SimHavend(this, node);
    node.havend.start();
    return true;
  }

  /** SIGKILL of havend alone: its QEMUs keep running. */
  killHavend(name: string): boolean {
    const node = this.node(name);
    if (!node.havend) return false;
    node.havend.kill();
    node.havend = undefined;
    return true;
  }

  /** SIGTERM of havend: it stops cleanly, its QEMUs keep running. */
  stopHavend(name: string): boolean {
    const node = this.node(name);
    if (!node.havend) return false;
    node.havend.stop();
    node.havend = undefined;
    return true;
  }

  /**
   * A clean shutdown: havend gets SIGTERM and stops (its guests keep running, as always), a second later the
   * system stops the QEMUs (SIGTERM: they quit, closing their disks), and a second after that the node is off.
   * Returns false when the node is off already.
   */
  shutdown(name: string): boolean {
    const node = this.node(name);
    if (!node.powered) return false;
    this.stopHavend(name);
    const boot = node.boot;
    this.nodeTask(
      name,
      SHUTDOWN_STEP_MS,
      () => {
        for (const proc of this.machines.all()) if (proc.node === name) this.machines.exit(proc, "quit");
        this.nodeTask(
          name,
          SHUTDOWN_STEP_MS,
          () => {
            this.note(`-- ${name} is powered off (shutdown)`);
            this.powerOff(name);
          },
          boot,
        );
      },
      boot,
    );
    return true;
  }

  setNetCut(name: string, cut: boolean): void {
    this.node(name).netCut = cut;
  }

  freeze(name: string): void {
    const node = this.node(name);
    if (node.powered) node.frozen = true;
  }

  /** SIGCONT: everything that came due while frozen runs now, in order. */
  thaw(name: string): void {
    const node = this.node(name);
    if (!node.frozen) return;
    node.frozen = false;
    node.thawedAt = this.now();
    const due = node.deferred.splice(0);
    for (const run of due) this.onNode(name, node.boot, run);
  }

  // --- the log ---
  note(text: string): SimLine {
    const line = { at: this.now(), seq: this.seq++, text };
    this.lines.push(line);
    return line;
  }
}

function take(failures: Failure[], vm: string, node: string): string | undefined {
  const failure = failures.find((f) => f.vm === vm && f.left > 0 && (!f.node || f.node === node));
  if (!failure) return undefined;
  failure.left--;
  return failure.message;
}
