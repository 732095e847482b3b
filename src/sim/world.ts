// The simulated cluster: nodes (power, network, freeze), etcd, the machines under them, and the havends on
// top, all driven by one Scheduler. Node-bound work goes through nodeTask: it is dropped when the node has
// rebooted since, and held back while the node is frozen (SIGSTOP), to run in order when it is thawed.
import type { FenceAgent, MigrationDefaults, NodeInfo } from "../core/model.js";
import type { PlacementRules } from "../core/placement-rules.js";
import type { FenceOutcome } from "../adapters/fence/port.js";
import { SimEtcd, type Leased, type VmMaps } from "./etcd.js";
import { SimHavend } from "./havend.js";
import { Invariants } from "./invariants.js";
import { Machines, type ExitHow, type Proc } from "./machines.js";
import { Scheduler } from "./scheduler.js";

/** Simulated time 0 on the wall clock (events carry ISO times, as in etcd). */
export const EPOCH_MS = Date.UTC(2025, 0, 1);

export interface WorldConfig {
  ttlSeconds: number;
  marginMs: number;
  /** Placement constraints and node attributes in etcd when the run begins (steps may change them). */
  rules: PlacementRules;
  /** How long a change takes to reach a watcher. */
  watchDelayMs: number;
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
  epoch: number;
  deferred: Array<() => void>;
  keepAliveLatencyMs: number;
  /** The havend's lease file: survives reboots, as on disk. */
  leaseFile: string;
  havend: SimHavend | undefined;
  fence: FenceBehaviour;
}

export interface ClusterSnapshot {
  nodes: Map<string, Leased<NodeInfo>>;
  vms: VmMaps;
  maintenance: Set<string>;
  migrationDefaults: MigrationDefaults;
  rules: PlacementRules;
}

export interface SimLine {
  at: number;
  seq: number;
  text: string;
}

interface Subscriber {
  node: string;
  epoch: number;
  active: boolean;
  pending: boolean;
  backoffMs: number;
  revision: number;
  deliver: (first: boolean) => void;
}

const MAX_WATCH_BACKOFF_MS = 5000;

export class World {
  readonly clock = new Scheduler();
  readonly etcd: SimEtcd;
  readonly machines: Machines;
  readonly nodes = new Map<string, SimNode>();
  readonly lines: SimLine[] = [];
  readonly invariants: Invariants;
  private seq = 0;
  private requests = 0;
  private readonly subscribers = new Set<Subscriber>();
  private readonly timings = new Map<string, VmTiming>();
  private readonly startFailures: Array<{ vm: string; node?: string; message: string; left: number }> = [];

  constructor(readonly config: WorldConfig) {
    this.etcd = new SimEtcd({
      now: () => this.now(),
      wall: (at) => this.wall(at),
      reachable: (node) => this.reachable(node),
      at: (time, run) => this.clock.at(time, run),
      changed: () => this.changed(),
      nextSeq: () => this.seq++,
    });
    this.machines = new Machines({
      now: () => this.now(),
      wall: () => this.wall(),
      at: (time, run) => this.clock.at(time, run),
      nodeIndex: (node) => this.node(node).index,
      canStream: (node) => this.canStream(node),
      exited: (proc, how) => this.exited(proc, how),
    });
    this.invariants = new Invariants(this);
    // What etcd holds before the run begins: nobody watches yet, so no change is announced.
    for (const constraint of config.rules.constraints) this.etcd.constraints.set(constraint.id, constraint);
    for (const [node, attributes] of config.rules.nodeAttributes)
      this.etcd.nodeAttributes.set(node, { ...attributes });
  }

  // --- time ---
  now(): number {
    return this.clock.now;
  }

  wall(at = this.now()): number {
    return EPOCH_MS + at;
  }

  iso(): string {
    return new Date(this.wall()).toISOString();
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
      epoch: 0,
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

  /** Whether a process on `node` gets answers from etcd (quorum is checked by etcd itself). */
  reachable(name: string): boolean {
    const node = this.node(name);
    return node.powered && !node.netCut && !node.frozen;
  }

  private canStream(name: string): boolean {
    return this.reachable(name);
  }

  keepAliveLatency(node: string): number {
    return this.node(node).keepAliveLatencyMs;
  }

  /** Runs `run` in the process of `node` that exists now (or in boot `epoch`), after `delayMs`. */
  nodeTask(name: string, delayMs: number, run: () => void, epoch?: number): void {
    const node = this.node(name);
    const boot = epoch ?? node.epoch;
    this.clock.after(delayMs, () => this.onNode(node, boot, run));
  }

  private onNode(node: SimNode, epoch: number, run: () => void): void {
    if (node.epoch !== epoch || !node.powered) return;
    if (node.frozen) node.deferred.push(run);
    else run();
  }

  // --- watches ---
  /** The agent's watch of `vms/`: a first snapshot, then the state after every change, while reachable. */
  watchVms(node: string, onChange: (vms: VmMaps) => void): () => void {
    return this.subscribe(node, () => onChange(this.etcd.vmMaps()));
  }

  /** The controller's watches of `nodes/`, `vms/` and `config/`. */
  watchCluster(node: string, onChange: (snapshot: ClusterSnapshot, first: boolean) => void): () => void {
    return this.subscribe(node, (first) =>
      onChange(
        {
          nodes: new Map(this.etcd.nodes),
          vms: this.etcd.vmMaps(),
          maintenance: new Set(this.etcd.maintenance.keys()),
          migrationDefaults: this.etcd.migrationDefaults,
          rules: this.etcd.rules(),
        },
        first,
      ),
    );
  }

  private subscribe(node: string, deliver: (first: boolean) => void): () => void {
    const sub: Subscriber = {
      node,
      epoch: this.node(node).epoch,
      active: true,
      pending: true,
      backoffMs: 0,
      revision: -1,
      deliver,
    };
    this.subscribers.add(sub);
    this.attemptDelivery(sub, this.config.watchDelayMs);
    return () => {
      sub.active = false;
      this.subscribers.delete(sub);
    };
  }

  private changed(): void {
    for (const sub of this.subscribers) {
      if (sub.pending) continue;
      sub.pending = true;
      this.attemptDelivery(sub, this.config.watchDelayMs);
    }
    if (!this.etcd.leader) {
      // Waiting candidates watch the leader key and race to create it.
      for (const node of this.nodes.values()) {
        const havend = node.havend;
        if (havend?.controller.campaigning)
          this.nodeTask(node.name, this.config.watchDelayMs, () => {
            if (node.havend === havend) havend.controller.wake();
          });
      }
    }
  }

  /** A watch that cannot reach etcd retries with the informer's backoff (100 ms doubling to 5 s). */
  private attemptDelivery(sub: Subscriber, delayMs: number): void {
    this.nodeTask(
      sub.node,
      delayMs,
      () => {
        if (!sub.active) return;
        if (!this.reachable(sub.node) || !this.etcd.quorum) {
          sub.backoffMs = Math.min(Math.max(sub.backoffMs * 2, 100), MAX_WATCH_BACKOFF_MS);
          return this.attemptDelivery(sub, sub.backoffMs);
        }
        sub.pending = false;
        sub.backoffMs = 0;
        if (sub.revision === this.etcd.revision) return;
        const first = sub.revision === -1;
        sub.revision = this.etcd.revision;
        sub.deliver(first);
      },
      sub.epoch,
    );
  }

  // --- QEMU ---
  timing(vm: string): VmTiming {
    return this.timings.get(vm) ?? DEFAULT_TIMING;
  }

  setTiming(vm: string, timing: VmTiming): void {
    this.timings.set(vm, timing);
  }

  failStarts(vm: string, times: number, message: string, node?: string): void {
    this.startFailures.push({ vm, node, message, left: times });
  }

  /** The message of an injected start failure for this start, if any. */
  takeStartFailure(vm: string, node: string): string | undefined {
    const failure = this.startFailures.find((f) => f.vm === vm && f.left > 0 && (!f.node || f.node === node));
    if (!failure) return undefined;
    failure.left--;
    return failure.message;
  }

  private exited(proc: Proc, how: ExitHow): void {
    if (how === "power") return;
    const node = this.node(proc.node);
    const havend = node.havend;
    if (havend) this.onNode(node, node.epoch, () => havend.hypervisor.exited(proc));
  }

  // --- fence agents ---
  /** Runs `target`'s fence agent from the controller on `from`; success powers the target off. */
  runFenceAgent(
    from: string,
    target: string,
    agent: FenceAgent,
    done: (outcome: FenceOutcome) => void,
  ): void {
    const behaviour = this.node(target).fence;
    const durationMs = behaviour.result === "hang" ? agent.timeoutSeconds * 1000 : behaviour.durationMs;
    this.nodeTask(from, durationMs, () => {
      const ok = behaviour.result === "ok";
      if (ok && this.node(target).powered) {
        this.note(`-- ${target} is powered off by its fence agent`);
        this.powerOff(target);
      }
      const summary =
        behaviour.result === "ok"
          ? "exited 0"
          : behaviour.result === "fail"
            ? "exited 1: power off failed"
            : `timed out after ${agent.timeoutSeconds} s`;
      done({ ok, summary, durationMs });
    });
  }

  // --- faults ---
  powerOn(name: string): void {
    const node = this.node(name);
    if (node.powered) return;
    node.powered = true;
    node.frozen = false;
    node.deferred = [];
    node.havend = new SimHavend(this, node);
    node.havend.boot();
  }

  powerOff(name: string): void {
    const node = this.node(name);
    if (!node.powered) return;
    node.powered = false;
    node.frozen = false;
    node.epoch++;
    node.deferred = [];
    node.havend = undefined;
    for (const sub of [...this.subscribers]) if (sub.node === name) this.subscribers.delete(sub);
    this.machines.powerOff(name);
  }

  setNetCut(name: string, cut: boolean): void {
    this.node(name).netCut = cut;
  }

  freeze(name: string): void {
    const node = this.node(name);
    if (node.powered) node.frozen = true;
  }

  /** SIGCONT: everything that came due while frozen runs now, in order, as one step. */
  thaw(name: string): void {
    const node = this.node(name);
    if (!node.frozen) return;
    node.frozen = false;
    node.thawedAt = this.now();
    const due = node.deferred.splice(0);
    for (const run of due) this.onNode(node, node.epoch, run);
  }

  // --- checks and log ---
  recovered(vm: string, from: string): void {
    this.invariants.recovered(vm, from);
  }

  note(text: string): SimLine {
    const line = { at: this.now(), seq: this.seq++, text };
    this.lines.push(line);
    return line;
  }

  /** Migration request ids, as the API makes them (random there, counted here). */
  nextRequestId(): string {
    return `m${++this.requests}`;
  }
}
