// The node agent of src/agent/agent.ts, step for step, on the simulated world: the same planAgent decides,
// and each of its actions is carried out as the program does (status first, then QEMU, events queued while
// etcd is out of reach). Where the program awaits, this code continues in a task at the simulated time the
// operation ends. Keep the two in step: a change of the program's order of effects belongs here too.
import { planAgent, SELF_FENCE_REASON, type AgentAction, type LocalOutcome } from "../core/agent-plan.js";
import { simReconciler } from "./reconcile.js";
import type {
  HavenEvent,
  Incoming,
  Migration,
  NodeInfo,
  Outgoing,
  Placement,
  VmStatus,
} from "../core/model.js";
import { emptyVmMaps, isEtcdError, type VmMaps } from "./etcd.js";
import type { SimHypervisor, GuestInfo, Progress } from "./hypervisor.js";
import type { World } from "./world.js";

/** What the agent needs of its havend: the node lease. */
export interface AgentHost {
  readonly node: string;
  leaseId(): string;
  leaseValid(): boolean;
  publishGuests(guests: NonNullable<NodeInfo["guests"]>): void;
}

const TICK_MS = 1000;
const MIGRATION_POLL_MS = 20;
const PROGRESS_REPORT_MS = 500;
const MAX_PENDING_EVENTS = 1000;
/** A request to an etcd that does not answer fails after the client's timeout (gateway-client.ts). */
export const REQUEST_TIMEOUT_MS = 2000;

const emptyProgress = { transferredBytes: 0, remainingBytes: 0, totalBytes: 0, mbps: 0 };

export class SimAgent {
  private vms: VmMaps = emptyVmMaps();
  private synced = false;
  readonly running = new Map<string, GuestInfo>();
  private readonly outcomes = new Map<string, LocalOutcome & { message: string }>();
  private readonly busy = new Map<string, "starting" | "stopping">();
  private readonly reported = new Map<string, string>();
  private readonly rbdClients = new Map<string, string[]>();
  private readonly pendingEvents: Array<{ event: Omit<HavenEvent, "time">; at: number }> = [];
  private readonly ending = new Map<string, { type: "stopped" | "killed"; reason: string }>();
  private readonly fenced = new Set<string>();
  private publishedGuests = "";
  private readonly incoming = new Map<string, Incoming>();
  private readonly outgoing = new Map<string, Outgoing>();
  private readonly outgoingIds = new Set<string>();
  private readonly failedIncoming = new Set<string>();
  /** `serialized` of the program: one reconcile at a time; a failing etcd request holds it for its timeout. */
  private reconciler: (() => void) | undefined;

  constructor(
    private readonly world: World,
    private readonly host: AgentHost,
    private readonly hypervisor: SimHypervisor,
  ) {}

  private get node(): string {
    return this.host.node;
  }

  run(): void {
    for (const guest of this.hypervisor.list()) this.running.set(guest.vm, guest);
    this.hypervisor.onExit((vm, generation) => this.onGuestExit(vm, generation));
    this.world.watchVms(this.node, (vms) => this.onWatch(vms));
    const tick = () => {
      this.reconcile();
      this.world.nodeTask(this.node, TICK_MS, tick);
    };
    this.world.nodeTask(this.node, TICK_MS, tick);
  }

  private onWatch(vms: VmMaps): void {
    const previous = this.vms;
    this.vms = vms;
    if (!this.synced) {
      this.seedOutcomesFromStatus();
      this.synced = true;
    } else {
      for (const vm of changedVms(previous, vms)) if (!vms.placements.has(vm)) this.forgetReleased(vm);
    }
    this.reconcile();
  }

  reconcile(): void {
    this.reconciler ??= simReconciler(this.world, this.node, () => this.reconcileOnce(), REQUEST_TIMEOUT_MS);
    this.reconciler();
  }

  /** SIGKILL every guest of this node at once: they may no longer run here (invariant 2). */
  selfFence(): void {
    const victims = [...this.running.values()];
    if (victims.length === 0) return;
    for (const guest of victims) this.fenced.add(guest.vm);
    for (const guest of victims) this.hypervisor.kill(guest.vm, () => undefined);
    for (const guest of victims) this.event("self-fenced", guest.vm, SELF_FENCE_REASON);
  }

  resetReported(): void {
    this.reported.clear();
    this.reconcile();
  }

  private seedOutcomesFromStatus(): void {
    for (const [vm, status] of this.vms.statuses) {
      if (status.node !== this.node || this.running.has(vm)) continue;
      if (status.state === "crashed" || status.state === "failed" || status.state === "fenced")
        this.outcomes.set(vm, {
          generation: status.generation,
          state: status.state,
          message: status.message ?? "",
        });
    }
  }

  private forgetReleased(vm: string): void {
    if (this.running.has(vm)) return;
    this.outcomes.delete(vm);
    this.rbdClients.delete(vm);
    this.reported.delete(vm);
  }

  private onGuestExit(vm: string, generation: number): void {
    const guest = this.running.get(vm);
    if (!guest || guest.generation !== generation) return;
    this.running.delete(vm);
    const incoming = this.incoming.get(vm);
    if (incoming?.generation === generation && incoming.state !== "running") {
      this.fenced.delete(vm);
      const message = "QEMU exited before the guest arrived (the incoming migration failed)";
      this.failedIncoming.add(incoming.id);
      this.reportIncoming(vm, { ...incoming, state: "failed", message });
      this.event("incoming-failed", vm, message);
    } else if (this.fenced.delete(vm)) {
      this.outcomes.set(vm, { generation, state: "fenced", message: SELF_FENCE_REASON });
    } else if (this.ending.has(vm)) {
      this.recordEnd(vm);
    } else if (this.busy.get(vm) !== "stopping") {
      this.outcomes.set(vm, { generation, state: "crashed", message: "QEMU exited unexpectedly" });
      this.event("crashed", vm, `QEMU (pid ${guest.pid}) exited unexpectedly`);
    }
    this.reconcile();
  }

  private recordEnd(vm: string): void {
    const end = this.ending.get(vm);
    if (!end) return;
    this.ending.delete(vm);
    this.event(end.type, vm, end.reason);
  }

  private reconcileOnce(): void {
    if (!this.synced) return;
    const actions = planAgent({
      node: this.node,
      specs: this.vms.specs,
      placements: this.vms.placements,
      running: this.running,
      outcomes: this.outcomes,
      leaseValid: this.host.leaseValid(),
      incomings: this.vms.incomings,
      outgoing: this.outgoingIds,
      failedIncoming: this.failedIncoming,
    });
    for (const action of actions) {
      if (action.type === "migrate") this.sendGuest(action.vm, action.migration, action.uri);
      else if (!this.busy.has(action.vm)) this.execute(action);
    }
    this.forgetEndedMigrations();
    this.flushEvents();
    this.publishGuests();
    this.readRbdClients();
    this.reportStatuses();
  }

  private execute(action: Exclude<AgentAction, { type: "migrate" }>): void {
    const { vm } = action;
    this.busy.set(vm, action.type === "start" || action.type === "incoming" ? "starting" : "stopping");
    const done = () => {
      this.busy.delete(vm);
      this.reconcile();
    };
    try {
      this.reportStatuses();
    } catch (err) {
      if (!isEtcdError(err)) throw err;
      // The status write failed after the request timeout; the action is given up and retried later.
      this.world.nodeTask(this.node, REQUEST_TIMEOUT_MS, done);
      return;
    }
    if (action.type === "start") this.start(vm, action.generation, done);
    else if (action.type === "incoming") this.receiveGuest(vm, action.migration, done);
    else {
      const type = action.type === "stop" ? "stopped" : "killed";
      this.ending.set(vm, { type, reason: action.reason });
      const ended = () => {
        this.running.delete(vm);
        this.recordEnd(vm);
        done();
      };
      if (action.type === "stop") this.hypervisor.stop(vm, ended);
      else this.hypervisor.kill(vm, ended);
    }
  }

  private start(vm: string, generation: number, done: () => void): void {
    const spec = this.vms.specs.get(vm);
    if (!spec || !this.host.leaseValid()) return done();
    this.hypervisor.start(spec, generation, (guest) => {
      if (guest instanceof Error) {
        const message = `QEMU failed to start: ${guest.message}`;
        this.outcomes.set(vm, { generation, state: "failed", message });
        this.event("start-failed", vm, message);
      } else {
        this.running.set(vm, guest);
        this.outcomes.delete(vm);
        this.rbdClients.delete(vm);
        // As agent.ts: a start that outlasted the lease is self-fenced at once.
        if (!this.host.leaseValid()) this.selfFence();
        else this.event("started", vm, `QEMU pid ${guest.pid} (tcg), generation ${generation}`);
      }
      done();
    });
  }

  private receiveGuest(vm: string, migration: Migration, done: () => void): void {
    const spec = this.vms.specs.get(vm);
    if (!spec || !this.host.leaseValid()) return done();
    const base = { id: migration.id, node: this.node, generation: migration.generation };
    this.hypervisor.startIncoming(spec, migration.generation, (result) => {
      if (result instanceof Error) {
        const message = `QEMU for the incoming migration failed to start: ${result.message}`;
        this.failedIncoming.add(migration.id);
        this.reportIncoming(vm, { ...base, state: "failed", message });
        this.event("incoming-failed", vm, message);
        return done();
      }
      const { guest, uri } = result;
      this.running.set(vm, guest);
      this.outcomes.delete(vm);
      this.reportIncoming(vm, { ...base, state: "listening", uri });
      this.event(
        "incoming",
        vm,
        `QEMU pid ${guest.pid} waits for the guest from ${migration.from} on ${uri} (${migration.settings.transport.toUpperCase()})`,
      );
      this.awaitArrival(vm, migration.id, guest.generation);
      done();
    });
  }

  private awaitArrival(vm: string, id: string, generation: number): void {
    const poll = () => {
      if (this.incoming.get(vm)?.id !== id || this.running.get(vm)?.generation !== generation) return;
      const arrived = this.hypervisor.isRunning(vm);
      const record = this.incoming.get(vm)!;
      if (arrived) {
        this.reportIncoming(vm, { ...record, state: "running" });
        this.event("arrived", vm, `the guest runs here (QEMU pid ${this.running.get(vm)?.pid})`);
        return;
      }
      this.world.nodeTask(this.node, MIGRATION_POLL_MS, poll);
    };
    poll();
  }

  private reportIncoming(vm: string, incoming: Omit<Incoming, "updatedAt">): void {
    const report = { ...incoming, updatedAt: this.world.iso() };
    this.incoming.set(vm, report);
    try {
      this.world.etcd.putIncoming(this.node, vm, report, this.host.leaseId());
    } catch (err) {
      if (!isEtcdError(err)) throw err;
    }
  }

  private sendGuest(vm: string, migration: Migration, uri: string): void {
    this.outgoingIds.add(migration.id);
    const started = this.world.wall();
    const { settings } = migration;
    let reportedAt = 0;
    const report = (progress: Omit<Outgoing, "id" | "elapsedMs">, force = false) => {
      this.outgoing.set(vm, { id: migration.id, elapsedMs: this.world.wall() - started, ...progress });
      if (!force && this.world.wall() - reportedAt < PROGRESS_REPORT_MS) return;
      reportedAt = this.world.wall();
      try {
        this.reportStatuses();
      } catch (err) {
        if (!isEtcdError(err)) throw err;
      }
    };
    const fail = (message: string) =>
      report({ ...emptyProgress, state: "failed", qemuStatus: "failed", message }, true);
    const refused = this.hypervisor.migrate(vm, uri);
    if (refused) {
      fail(`QEMU refused to migrate: ${refused.message}`);
      this.event("migration-send-failed", vm, `QEMU refused to migrate: ${refused.message}`);
      return;
    }
    const poll = () => {
      const progress: Progress = this.hypervisor.migrationProgress(vm);
      const placement = this.vms.placements.get(vm);
      const placed = placement?.migration;
      const state =
        progress.status === "completed"
          ? "completed"
          : ["failed", "cancelled"].includes(progress.status)
            ? "failed"
            : "migrating";
      const flipped = placement?.node === migration.to && placement.generation >= migration.generation;
      if (state !== "completed" && flipped) return;
      const cancelling = state === "migrating" && (placed?.id !== migration.id || placed.cancel);
      const timedOut = state === "migrating" && this.world.wall() - started > settings.timeoutSeconds * 1000;
      if (cancelling || timedOut) {
        this.hypervisor.cancelMigration(vm);
        const why = timedOut ? `timed out after ${settings.timeoutSeconds} s` : "cancelled";
        fail(`${why}; QEMU cancelled it and the guest runs on here`);
        this.event(timedOut ? "migration-send-failed" : "migration-send-cancelled", vm, why);
        return;
      }
      const { status, error, ...numbers } = progress;
      report({ ...numbers, state, qemuStatus: status, message: error }, state !== "migrating");
      if (state === "completed") {
        this.event(
          "migration-sent",
          vm,
          `sent to ${migration.to} in ${this.world.wall() - started} ms, downtime ${progress.downtimeMs ?? "?"} ms`,
        );
        return;
      }
      if (state === "failed") {
        this.event("migration-send-failed", vm, error ?? `QEMU reports ${status}`);
        return;
      }
      this.world.nodeTask(this.node, MIGRATION_POLL_MS, poll);
    };
    poll();
  }

  private forgetEndedMigrations(): void {
    for (const [vm, incoming] of [...this.incoming]) {
      const placement = this.vms.placements.get(vm);
      const adopted = placement?.node === this.node && placement.generation === incoming.generation;
      if (placement?.migration?.id === incoming.id && !adopted) continue;
      this.incoming.delete(vm);
      try {
        this.world.etcd.deleteIncoming(this.node, vm);
      } catch (err) {
        if (!isEtcdError(err)) throw err;
      }
    }
    for (const [vm, outgoing] of [...this.outgoing]) {
      if (this.vms.placements.get(vm)?.migration?.id !== outgoing.id) this.outgoing.delete(vm);
    }
  }

  private publishGuests(): void {
    const guests = [...this.running.values()]
      .map((guest) => ({ vm: guest.vm, generation: guest.generation }))
      .sort((a, b) => a.vm.localeCompare(b.vm));
    const fingerprint = JSON.stringify(guests);
    if (fingerprint === this.publishedGuests) return;
    this.host.publishGuests(guests);
    this.publishedGuests = fingerprint;
  }

  private readRbdClients(): void {
    for (const vm of this.running.keys()) {
      if (this.rbdClients.get(vm)?.length) continue;
      const disks = this.vms.specs.get(vm)?.disks ?? [];
      const lists = disks.map((disk) => this.world.machines.watchers(disk.image));
      this.rbdClients.set(vm, [...new Set(lists.flat())].sort());
    }
  }

  private desiredStatus(vm: string, placement: Placement): VmStatus | undefined {
    const base = { node: this.node, generation: placement.generation, updatedAt: this.world.iso() };
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
        accel: "tcg",
        startedAt: guest.startedAt,
        rbdClients: this.rbdClients.get(vm),
        outgoing: this.outgoing.get(vm),
      };
    }
    if (busy === "starting") return { ...base, state: "starting" };
    const outcome = this.outcomes.get(vm);
    if (outcome && outcome.generation === placement.generation)
      return { ...base, state: outcome.state, message: outcome.message };
    if (
      this.vms.specs.get(vm)?.state === "stopped" ||
      placement.state !== "active" ||
      placement.migration?.kind === "cold"
    )
      return { ...base, state: "stopped" };
    return undefined;
  }

  private reportStatuses(): void {
    for (const [vm, placement] of this.vms.placements) {
      if (placement.node !== this.node || !this.vms.specs.has(vm)) continue;
      const status = this.desiredStatus(vm, placement);
      if (!status) continue;
      const fingerprint = JSON.stringify({ ...status, updatedAt: undefined });
      if (this.reported.get(vm) === fingerprint) continue;
      this.world.etcd.putStatus(this.node, vm, status, this.host.leaseId());
      this.reported.set(vm, fingerprint);
    }
  }

  /** Events wait in order, with their own time, while etcd is out of reach (lost if the node dies). */
  private event(type: string, vm: string, reason: string): void {
    if (this.pendingEvents.length >= MAX_PENDING_EVENTS) this.pendingEvents.shift();
    this.pendingEvents.push({ event: { type, vm, node: this.node, reason }, at: this.world.now() });
    this.flushEvents();
  }

  private flushEvents(): void {
    while (this.pendingEvents.length > 0) {
      const { event, at } = this.pendingEvents[0]!;
      try {
        this.world.etcd.appendEvent(this.node, event, at);
      } catch (err) {
        if (!isEtcdError(err)) throw err;
        return;
      }
      this.pendingEvents.shift();
    }
  }
}

/** VMs with any key that differs between two views (what a watch's events would name). */
function changedVms(a: VmMaps, b: VmMaps): Set<string> {
  const changed = new Set<string>();
  for (const kind of ["specs", "placements", "statuses", "requests", "incomings"] as const) {
    const before = a[kind] as Map<string, unknown>;
    const after = b[kind] as Map<string, unknown>;
    for (const [vm, value] of after) if (before.get(vm) !== value) changed.add(vm);
    for (const vm of before.keys()) if (!after.has(vm)) changed.add(vm);
  }
  return changed;
}
