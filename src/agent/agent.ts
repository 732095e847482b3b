// The node agent: runs the guests the controller placed on this node, and reports what it observes.
// It never restarts a crashed guest by itself; the controller decides (restart limit, relocation).
import { open } from "node:fs/promises";
import { emptyVmMaps, type ClusterStore, type VmMaps } from "../adapters/etcd/cluster-store.js";
import type { GuestLaunch, GuestProcess, Hypervisor, Accelerator } from "../adapters/qemu/port.js";
import type { StorageBackend } from "../adapters/storage/port.js";
import { planAgent, SELF_FENCE_REASON, type AgentAction, type LocalOutcome } from "../core/agent-plan.js";
import { highestAckInLog } from "../core/canary.js";
import type { HavenEvent, NodeInfo, Placement, VmSpec, VmStatus } from "../core/model.js";
import { serialized, sleep } from "../lib/async.js";
import type { Logger } from "../lib/log.js";

export interface AgentDeps {
  node: string;
  store: ClusterStore;
  hypervisor: Hypervisor;
  storage: StorageBackend;
  accel: Accelerator;
  /** The current node lease; status keys live and die with it. */
  lease: () => string;
  /** Whether the node lease is certainly still valid (invariant 2); checked before every start. */
  leaseValid: () => boolean;
  /** Publishes which guests (by generation) this node runs, so that fences of its old guests can be lifted. */
  publishGuests: (guests: NonNullable<NodeInfo["guests"]>) => Promise<void>;
  log: Logger;
}

const TICK_MS = 1000;
const MAX_PENDING_EVENTS = 1000;
/** How often the lease deadline is checked: the self-fencing margin must cover this plus the kill. */
const LEASE_GUARD_MS = 100;

export class Agent {
  private vms: VmMaps = emptyVmMaps();
  private readonly running = new Map<string, GuestProcess>();
  private readonly outcomes = new Map<string, LocalOutcome & { message: string }>();
  private readonly busy = new Map<string, "starting" | "stopping">();
  private readonly reported = new Map<string, string>();
  private readonly acks = new Map<string, number>();
  private readonly rbdClients = new Map<string, string[]>();
  private readonly pendingEvents: Array<{ event: Omit<HavenEvent, "time">; at: Date }> = [];
  private flushing = false;
  /** Guests killed by self-fencing, so their exit is reported as such rather than as a crash. */
  private readonly fenced = new Set<string>();
  private synced = false;
  private publishedGuests = "";
  readonly reconcile: () => void;

  constructor(private readonly deps: AgentDeps) {
    this.reconcile = serialized(
      () => this.reconcileOnce(),
      (err) => deps.log.error("reconcile failed", { err }),
    );
  }

  /** How many QEMUs this agent runs right now. */
  get runningGuests(): number {
    return this.running.size;
  }

  async run(signal: AbortSignal): Promise<void> {
    const { hypervisor, log } = this.deps;
    for (const guest of await hypervisor.list()) {
      this.running.set(guest.vm, guest);
      log.info("re-attached to running guest", {
        vm: guest.vm,
        pid: guest.pid,
        generation: guest.generation,
      });
    }
    const unsubscribe = hypervisor.onExit((vm, generation) => this.onGuestExit(vm, generation));
    const informer = this.deps.store.watchVms(
      signal,
      (vms, events) => {
        this.vms = vms;
        if (events === null) {
          this.seedOutcomesFromStatus();
          this.synced = true;
        }
        for (const event of events ?? []) {
          const vm = this.deps.store.parseVmKey(event.kv.key)?.vm;
          if (vm && !vms.placements.has(vm)) this.forgetReleased(vm);
        }
        this.reconcile();
      },
      (err, retryInMs) => log.warn("watch failed", { err, retryInMs }),
    );
    const guard = this.guardLease(signal);
    while (!signal.aborted) {
      await sleep(TICK_MS, signal);
      this.reconcile();
    }
    await guard;
    unsubscribe();
    await informer;
  }

  /** Kills every guest the moment the lease deadline passes, without waiting for etcd or a reconcile. */
  private async guardLease(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      if (!this.deps.leaseValid() && this.running.size > 0) await this.selfFence();
      await sleep(LEASE_GUARD_MS, signal);
    }
  }

  /** SIGKILL every guest of this node at once: they may no longer run here (invariant 2). */
  async selfFence(): Promise<void> {
    const victims = [...this.running.values()];
    if (victims.length === 0) return;
    this.deps.log.warn("self-fencing: killing all guests", { vms: victims.map((g) => g.vm) });
    for (const guest of victims) this.fenced.add(guest.vm);
    await Promise.all(
      victims.map((guest) =>
        this.deps.hypervisor.kill(guest.vm).catch((err: unknown) => {
          this.deps.log.error("self-fencing kill failed", { vm: guest.vm, err });
        }),
      ),
    );
    for (const guest of victims) this.event("self-fenced", guest.vm, SELF_FENCE_REASON);
  }

  /** A crash reported by an earlier run of this agent stays a crash: the controller decides what follows. */
  private seedOutcomesFromStatus(): void {
    for (const [vm, status] of this.vms.statuses) {
      if (status.node !== this.deps.node || this.running.has(vm)) continue;
      if (status.state === "crashed" || status.state === "failed" || status.state === "fenced") {
        this.outcomes.set(vm, {
          generation: status.generation,
          state: status.state,
          message: status.message ?? "",
        });
      }
    }
  }

  /** A released placement ends the story of its last start here. */
  private forgetReleased(vm: string): void {
    if (this.running.has(vm)) return;
    this.outcomes.delete(vm);
    this.acks.delete(vm);
    this.rbdClients.delete(vm);
    this.reported.delete(vm);
  }

  private onGuestExit(vm: string, generation: number): void {
    const guest = this.running.get(vm);
    if (!guest || guest.generation !== generation) return;
    this.running.delete(vm);
    if (this.fenced.delete(vm)) {
      this.outcomes.set(vm, { generation, state: "fenced", message: SELF_FENCE_REASON });
    } else if (this.busy.get(vm) !== "stopping") {
      this.outcomes.set(vm, { generation, state: "crashed", message: "QEMU exited unexpectedly" });
      this.deps.log.warn("guest exited unexpectedly", { vm, generation, pid: guest.pid });
      this.event("crashed", vm, `QEMU (pid ${guest.pid}) exited unexpectedly`);
    }
    this.reconcile();
  }

  private async reconcileOnce(): Promise<void> {
    if (!this.synced) return;
    const actions = planAgent({
      node: this.deps.node,
      specs: this.vms.specs,
      placements: this.vms.placements,
      running: this.running,
      outcomes: this.outcomes,
      leaseValid: this.deps.leaseValid(),
    });
    for (const action of actions) {
      if (!this.busy.has(action.vm)) void this.execute(action);
    }
    await this.flushEvents();
    await this.publishGuests();
    await this.readCanaryAcks();
    await this.readRbdClients();
    await this.reportStatuses();
  }

  private async execute(action: AgentAction): Promise<void> {
    const { log, hypervisor } = this.deps;
    this.busy.set(action.vm, action.type === "start" ? "starting" : "stopping");
    try {
      await this.reportStatuses();
      if (action.type === "start") await this.start(action.vm, action.generation);
      else if (action.type === "stop") {
        log.info("stopping guest", { vm: action.vm, reason: action.reason });
        await hypervisor.stop(action.vm, (this.vms.specs.get(action.vm)?.stopGraceSeconds ?? 0) * 1000);
        this.running.delete(action.vm);
        this.event("stopped", action.vm, action.reason);
      } else {
        log.info("killing guest", { vm: action.vm, reason: action.reason });
        await hypervisor.kill(action.vm);
        this.running.delete(action.vm);
        this.event("killed", action.vm, action.reason);
      }
    } catch (err) {
      log.error("guest action failed", { vm: action.vm, action: action.type, err });
    } finally {
      this.busy.delete(action.vm);
      this.reconcile();
    }
  }

  private async start(vm: string, generation: number): Promise<void> {
    const spec = this.vms.specs.get(vm);
    if (!spec || !this.deps.leaseValid()) return;
    try {
      const guest = await this.deps.hypervisor.start(this.launchOf(spec, generation));
      this.running.set(vm, guest);
      this.outcomes.delete(vm);
      this.rbdClients.delete(vm);
      this.deps.log.info("guest started", { vm, generation, pid: guest.pid, accel: guest.accel });
      this.event("started", vm, `QEMU pid ${guest.pid} (${guest.accel}), generation ${generation}`);
    } catch (err) {
      const message = `QEMU failed to start: ${(err as Error).message}`;
      this.outcomes.set(vm, { generation, state: "failed", message });
      this.deps.log.error("guest failed to start", { vm, generation, err });
      this.event("start-failed", vm, message);
    }
  }

  private launchOf(spec: VmSpec, generation: number): GuestLaunch {
    return {
      vm: spec.name,
      generation,
      memoryMb: spec.memoryMb,
      vcpus: spec.vcpus,
      kernel: spec.kernel,
      initrd: spec.initrd,
      append: spec.append,
      disks: spec.disks.map((disk) => ({
        image: disk.image,
        source: this.deps.storage.driveSource(disk.image, this.deps.node),
      })),
      accel: this.deps.accel,
    };
  }

  private async publishGuests(): Promise<void> {
    const guests = [...this.running.values()]
      .map((guest) => ({ vm: guest.vm, generation: guest.generation }))
      .sort((a, b) => a.vm.localeCompare(b.vm));
    const fingerprint = JSON.stringify(guests);
    if (fingerprint === this.publishedGuests) return;
    await this.deps.publishGuests(guests);
    this.publishedGuests = fingerprint;
  }

  /** The RBD client addresses of each running guest's QEMU, which fencing will blocklist. */
  private async readRbdClients(): Promise<void> {
    for (const vm of this.running.keys()) {
      if (this.rbdClients.get(vm)?.length) continue;
      const disks = this.vms.specs.get(vm)?.disks ?? [];
      const lists = await Promise.all(
        disks.map((disk) => this.deps.storage.watchers(disk.image).catch(() => [])),
      );
      this.rbdClients.set(vm, [...new Set(lists.flat())].sort());
    }
  }

  /** Canary guests print `ack N` after each fsync; the newest N shows that the guest is making progress. */
  private async readCanaryAcks(): Promise<void> {
    for (const vm of this.running.keys()) {
      if (!this.vms.specs.get(vm)?.canary) continue;
      const tail = await readTail(this.deps.hypervisor.consolePaths(vm).log, 4096);
      const ack = highestAckInLog(tail);
      if (ack > 0) this.acks.set(vm, ack);
      else if (!this.acks.has(vm)) this.acks.set(vm, 0);
    }
  }

  private desiredStatus(vm: string, placement: Placement): VmStatus | undefined {
    const now = new Date().toISOString();
    const base = { node: this.deps.node, generation: placement.generation, updatedAt: now };
    const guest = this.running.get(vm);
    const busy = this.busy.get(vm);
    if (busy === "stopping")
      return { ...base, generation: guest?.generation ?? placement.generation, state: "stopping" };
    if (guest) {
      return {
        ...base,
        generation: guest.generation,
        state: busy ?? "running",
        pid: guest.pid,
        accel: guest.accel,
        startedAt: guest.startedAt,
        lastAck: this.acks.get(vm),
        rbdClients: this.rbdClients.get(vm),
      };
    }
    if (busy === "starting") return { ...base, state: "starting" };
    const outcome = this.outcomes.get(vm);
    if (outcome && outcome.generation === placement.generation) {
      return { ...base, state: outcome.state, message: outcome.message };
    }
    if (this.vms.specs.get(vm)?.state === "stopped" || placement.state !== "active")
      return { ...base, state: "stopped" };
    return undefined;
  }

  private async reportStatuses(): Promise<void> {
    for (const [vm, placement] of this.vms.placements) {
      if (placement.node !== this.deps.node || !this.vms.specs.has(vm)) continue;
      const status = this.desiredStatus(vm, placement);
      if (!status) continue;
      const fingerprint = JSON.stringify({ ...status, updatedAt: undefined });
      if (this.reported.get(vm) === fingerprint) continue;
      await this.deps.store.putStatus(vm, status, this.deps.lease());
      this.reported.set(vm, fingerprint);
    }
  }

  /** Forget what was reported, so every status is written again (after a new lease). */
  resetReported(): void {
    this.reported.clear();
    this.reconcile();
  }

  /** Records an event; while etcd is unreachable events wait in order (with their own time) and go later. */
  private event(type: string, vm: string, reason: string): void {
    if (this.pendingEvents.length >= MAX_PENDING_EVENTS) this.pendingEvents.shift();
    this.pendingEvents.push({ event: { type, vm, node: this.deps.node, reason }, at: new Date() });
    void this.flushEvents();
  }

  private async flushEvents(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    try {
      while (this.pendingEvents.length > 0) {
        const { event, at } = this.pendingEvents[0]!;
        await this.deps.store.appendEvent(event, at);
        this.pendingEvents.shift();
      }
    } catch (err) {
      this.deps.log.warn("events not recorded yet", { err, pending: this.pendingEvents.length });
    } finally {
      this.flushing = false;
    }
  }
}

async function readTail(path: string, bytes: number): Promise<string> {
  const file = await open(path, "r").catch(() => undefined);
  if (!file) return "";
  try {
    const { size } = await file.stat();
    const length = Math.min(bytes, size);
    const buffer = Buffer.alloc(length);
    await file.read(buffer, 0, length, size - length);
    return buffer.toString("latin1");
  } finally {
    await file.close();
  }
}
