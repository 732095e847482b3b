// The node agent: runs the guests the controller placed on this node, and reports what it observes.
// It never restarts a crashed guest by itself; the controller decides (restart limit, relocation).
import { emptyVmMaps, type ClusterStore, type VmMaps } from "../adapters/etcd/cluster-store.js";
import type {
  Accelerator,
  GuestLaunch,
  GuestProcess,
  Hypervisor,
  MigrationProgress,
} from "../adapters/qemu/port.js";
import type { StorageBackend } from "../adapters/storage/port.js";
import { GuestActions, GuestInfoPoller } from "./guest-care.js";
import { guestLaunch } from "./guest-launch.js";
import { planAgent, SELF_FENCE_REASON, type AgentAction, type LocalOutcome } from "../core/agent-plan.js";
import { highestAckInLog } from "../core/canary.js";
import type {
  HavenEvent,
  Incoming,
  Migration,
  NodeInfo,
  Outgoing,
  Placement,
  VmSpec,
  VmStatus,
} from "../core/model.js";
import { serialized } from "../lib/async.js";
import { isoNow, systemClock, type Clock } from "../lib/clock.js";
import type { Logger } from "../lib/log.js";
import { consoleLogFiles, type ConsoleLogs } from "./console-log.js";

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
  /** The earliest time (ms) etcd may let the lease expire: self-fencing reports how long before it the kills ended. */
  leaseExpiresAt: () => number;
  /** Publishes which guests (by generation) this node runs, so that fences of its old guests can be lifted. */
  publishGuests: (guests: NonNullable<NodeInfo["guests"]>) => Promise<void>;
  /** Where incoming migrations listen (this node's address) and this node's TLS credentials for them. */
  migration: { host: string; tlsDir?: string };
  log: Logger;
  /** Default: the system clock. */
  clock?: Clock;
  /** Where canary guests print their acks; default: the log files of the hypervisor's consolePaths. */
  consoleLogs?: ConsoleLogs;
}

const TICK_MS = 1000;
/** How often the source reads its migration's progress from QEMU. */
const MIGRATION_POLL_MS = 20;
/**
 * How often the target asks its QEMU whether the guest arrived. Slower: the incoming migration runs in the
 * target QEMU's main loop, which every QMP command interrupts, and the source's report usually comes first.
 */
const ARRIVAL_POLL_MS = 250;
/** How often the source writes that progress to etcd. */
const PROGRESS_REPORT_MS = 500;
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
  /** Where the current QEMU's output begins in the guest's console log (the log outlives each QEMU). */
  private readonly consoleFrom = new Map<string, number>();
  private readonly rbdClients = new Map<string, string[]>();
  /** RBD clients that had the guest's disks open before its QEMU here started: not this QEMU's. */
  private readonly othersClients = new Map<string, string[]>();
  private readonly pendingEvents: Array<{ event: Omit<HavenEvent, "time">; at: Date }> = [];
  private flushing = false;
  /** Guests this agent is stopping or killing, with the event their end is recorded as. */
  private readonly ending = new Map<string, { type: "stopped" | "killed"; reason: string }>();
  /** Guests killed by self-fencing, so their exit is reported as such rather than as a crash. */
  private readonly fenced = new Set<string>();
  private synced = false;
  private publishedGuests = "";
  /** Ends the migration loops with the agent. */
  private stopping: AbortSignal = new AbortController().signal;
  /** This node's QEMUs waiting for (or having received) an incoming live migration, as reported to etcd. */
  private readonly incoming = new Map<string, Incoming>();
  /** Outgoing live migrations started here, by VM; ids in `outgoingIds` are never started twice. */
  private readonly outgoing = new Map<string, Outgoing>();
  private readonly outgoingIds = new Set<string>();
  /** Incoming migrations whose QEMU failed here: never started again. */
  private readonly failedIncoming = new Set<string>();
  readonly reconcile: () => void;
  private readonly clock: Clock;
  private readonly consoleLogs: ConsoleLogs;
  private readonly guestInfo: GuestInfoPoller;
  private readonly actions: GuestActions;

  constructor(private readonly deps: AgentDeps) {
    this.clock = deps.clock ?? systemClock;
    this.consoleLogs = deps.consoleLogs ?? consoleLogFiles((vm) => deps.hypervisor.consolePaths(vm).log);
    this.reconcile = serialized(
      () => this.reconcileOnce(),
      (err) => deps.log.error("reconcile failed", { err }),
    );
    this.guestInfo = new GuestInfoPoller(deps.hypervisor, this.clock, () => this.reconcile());
    this.actions = new GuestActions({
      node: deps.node,
      store: deps.store,
      hypervisor: deps.hypervisor,
      log: deps.log,
      event: (type, vm, reason) => this.event(type, vm, reason),
    });
  }

  /** How many QEMUs this agent runs right now. */
  get runningGuests(): number {
    return this.running.size;
  }

  async run(signal: AbortSignal): Promise<void> {
    const { hypervisor, log } = this.deps;
    this.stopping = signal;
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
      await this.clock.sleep(TICK_MS, signal);
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
      await this.clock.sleep(LEASE_GUARD_MS, signal);
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
    const marginMs = Math.round(this.deps.leaseExpiresAt() - this.clock.now());
    if (marginMs <= 0) this.deps.log.error("self-fencing ended after the lease could expire", { marginMs });
    const reason = `${SELF_FENCE_REASON}; its guests were killed ${Math.abs(marginMs)} ms ${marginMs > 0 ? "before" : "AFTER"} the lease could expire`;
    for (const guest of victims) this.event("self-fenced", guest.vm, reason);
  }

  /**
   * The node leaves on purpose (its shutdown policy, once the agent's loop has ended): every guest still here
   * is shut down as `vm stop` does (ACPI, then hard after its stop grace), and the events are written.
   */
  async stopAll(reason: string): Promise<void> {
    const guests = [...this.running.keys()];
    await Promise.all(
      guests.map(async (vm) => {
        const graceMs = (this.vms.specs.get(vm)?.stopGraceSeconds ?? 0) * 1000;
        await this.deps.hypervisor
          .stop(vm, graceMs)
          .then(() => this.event("stopped", vm, reason))
          .catch((err: unknown) => this.deps.log.error("stopping guest failed", { vm, err }));
        this.running.delete(vm);
      }),
    );
    await this.flushEvents();
  }

  /**
   * Before the agent runs: a havend that starts without being able to register (etcd out of reach) cannot
   * vouch for the QEMUs it finds, since the lease they ran under may run out any moment (invariant 2). They
   * are killed at once and reported self-fenced once etcd answers; the controller then restarts them.
   */
  async fenceOrphans(): Promise<void> {
    const orphans = await this.deps.hypervisor.list();
    if (orphans.length === 0) return;
    this.deps.log.warn("no lease vouches for the guests found here: killing them", {
      vms: orphans.map((g) => g.vm),
    });
    await Promise.all(
      orphans.map((guest) =>
        this.deps.hypervisor.kill(guest.vm).catch((err: unknown) => {
          this.deps.log.error("self-fencing kill failed", { vm: guest.vm, err });
        }),
      ),
    );
    for (const guest of orphans) {
      this.outcomes.set(guest.vm, {
        generation: guest.generation,
        state: "fenced",
        message: SELF_FENCE_REASON,
      });
      this.event("self-fenced", guest.vm, SELF_FENCE_REASON);
    }
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
    this.othersClients.delete(vm);
    this.consoleFrom.delete(vm);
    this.guestInfo.forget(vm);
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
      void this.reportIncoming(vm, { ...incoming, state: "failed", message });
      this.event("incoming-failed", vm, message);
    } else if (this.fenced.delete(vm)) {
      this.outcomes.set(vm, { generation, state: "fenced", message: SELF_FENCE_REASON });
    } else if (this.ending.has(vm)) {
      this.recordEnd(vm);
    } else if (this.busy.get(vm) !== "stopping") {
      this.outcomes.set(vm, { generation, state: "crashed", message: "QEMU exited unexpectedly" });
      this.deps.log.warn("guest exited unexpectedly", { vm, generation, pid: guest.pid });
      this.event("crashed", vm, `QEMU (pid ${guest.pid}) exited unexpectedly`);
    }
    this.reconcile();
  }

  /**
   * The `stopped`/`killed` event of a guest this agent ended, recorded the moment its QEMU is gone and before
   * any status says so: the history (and the never-twice check) must see the end before the next start.
   */
  private recordEnd(vm: string): void {
    const end = this.ending.get(vm);
    if (!end) return;
    this.ending.delete(vm);
    this.event(end.type, vm, end.reason);
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
      incomings: this.vms.incomings,
      outgoing: this.outgoingIds,
      failedIncoming: this.failedIncoming,
    });
    for (const action of actions) {
      if (action.type === "migrate") void this.sendGuest(action.vm, action.migration, action.uri);
      else if (!this.busy.has(action.vm)) void this.execute(action);
    }
    await this.forgetEndedMigrations();
    await this.flushEvents();
    await this.publishGuests();
    this.actions.run(this.vms.actions, (vm) => this.runningHere(vm)?.generation);
    this.guestInfo.refresh([...this.running.keys()].filter((vm) => !this.vms.specs.get(vm)?.canary));
    await this.readCanaryAcks();
    await this.readRbdClients();
    await this.reportStatuses();
  }

  /** The guest's QEMU here, when this node is where it is placed (not a migration target waiting for it). */
  private runningHere(vm: string): GuestProcess | undefined {
    const guest = this.running.get(vm);
    const placement = this.vms.placements.get(vm);
    return guest && placement?.node === this.deps.node && placement.generation === guest.generation
      ? guest
      : undefined;
  }

  private async execute(action: Exclude<AgentAction, { type: "migrate" }>): Promise<void> {
    const { log, hypervisor } = this.deps;
    this.busy.set(action.vm, action.type === "start" || action.type === "incoming" ? "starting" : "stopping");
    let failed = false;
    try {
      // Report "starting" first; a migration target has no status to report (the VM is placed elsewhere).
      if (action.type !== "incoming") await this.reportStatuses();
      if (action.type === "start") await this.start(action.vm, action.generation);
      else if (action.type === "incoming") await this.receiveGuest(action.vm, action.migration);
      // Gone while its status was written (self-fenced by the lease guard, or crashed): its end is recorded.
      else if (!this.running.has(action.vm)) return;
      else if (action.type === "stop") {
        log.info("stopping guest", { vm: action.vm, reason: action.reason });
        this.ending.set(action.vm, { type: "stopped", reason: action.reason });
        await hypervisor.stop(action.vm, (this.vms.specs.get(action.vm)?.stopGraceSeconds ?? 0) * 1000);
        this.running.delete(action.vm);
        this.recordEnd(action.vm);
      } else {
        log.info("killing guest", { vm: action.vm, reason: action.reason });
        this.ending.set(action.vm, { type: "killed", reason: action.reason });
        await hypervisor.kill(action.vm);
        this.running.delete(action.vm);
        this.recordEnd(action.vm);
      }
    } catch (err) {
      failed = true;
      log.error("guest action failed", { vm: action.vm, action: action.type, err });
    } finally {
      this.busy.delete(action.vm);
      // A failed action is tried again on the next tick: at once, it would spin against an etcd that refuses
      // at once (one electing a leader answers every request "no leader").
      if (!failed) this.reconcile();
    }
  }

  private async start(vm: string, generation: number): Promise<void> {
    const spec = this.vms.specs.get(vm);
    if (!spec || !this.deps.leaseValid()) return;
    try {
      await this.forgetEarlierRun(vm, false);
      const guest = await this.deps.hypervisor.start(this.launchOf(spec, generation));
      this.running.set(vm, guest);
      this.outcomes.delete(vm);
      // The lease may have run out while QEMU started (a frozen node): the guest may be running elsewhere by
      // now, and this QEMU's disk client was never fenced. It goes at once, as self-fenced.
      if (!this.deps.leaseValid()) return await this.selfFence();
      this.deps.log.info("guest started", { vm, generation, pid: guest.pid, accel: guest.accel });
      this.event("started", vm, `QEMU pid ${guest.pid} (${guest.accel}), generation ${generation}`);
    } catch (err) {
      const message = `QEMU failed to start: ${(err as Error).message}`;
      this.outcomes.set(vm, { generation, state: "failed", message });
      this.deps.log.error("guest failed to start", { vm, generation, err });
      this.event("start-failed", vm, message);
    }
  }

  /**
   * What this node remembers of an earlier run of the guest here (its last ack, its RBD clients) is not about
   * the QEMU that starts now. The guest's console log is kept across runs: acks count from its current end. A
   * migration target notes the clients that already have the disks open: the source's, not its own.
   */
  private async forgetEarlierRun(vm: string, incoming: boolean): Promise<void> {
    this.acks.delete(vm);
    this.rbdClients.delete(vm);
    const disks = incoming ? (this.vms.specs.get(vm)?.disks ?? []) : [];
    const [from, ...lists] = await Promise.all([
      this.consoleLogs.size(vm),
      ...disks.map((disk) => this.deps.storage.watchers(disk.image).catch(() => [])),
    ]);
    this.consoleFrom.set(vm, from);
    this.othersClients.set(vm, lists.flat());
  }

  /** Target side: a QEMU waiting for the guest, reported to etcd with the URI the source must send it to. */
  private async receiveGuest(vm: string, migration: Migration): Promise<void> {
    const spec = this.vms.specs.get(vm);
    if (!spec || !this.deps.leaseValid()) return;
    const base = { id: migration.id, node: this.deps.node, generation: migration.generation };
    const tlsDir = this.deps.migration.tlsDir;
    try {
      if (migration.settings.transport === "tls" && !tlsDir)
        throw new Error(`node ${this.deps.node} has no migration TLS credentials`);
      await this.forgetEarlierRun(vm, true);
      const { guest, uri } = await this.deps.hypervisor.startIncoming(
        this.launchOf(spec, migration.generation),
        {
          listenHost: this.deps.migration.host,
          tls: migration.settings.transport === "tls" ? { dir: tlsDir! } : undefined,
        },
      );
      this.running.set(vm, guest);
      this.outcomes.delete(vm);
      await this.reportIncoming(vm, { ...base, state: "listening", uri });
      this.event(
        "incoming",
        vm,
        `QEMU pid ${guest.pid} waits for the guest from ${migration.from} on ${uri} (${migration.settings.transport.toUpperCase()})`,
      );
      void this.awaitArrival(vm, migration.id, guest.generation);
    } catch (err) {
      const message = `QEMU for the incoming migration failed to start: ${(err as Error).message}`;
      this.failedIncoming.add(migration.id);
      await this.reportIncoming(vm, { ...base, state: "failed", message });
      this.event("incoming-failed", vm, message);
    }
  }

  /** Target side: reports the moment the guest runs here; the controller then flips the placement. */
  private async awaitArrival(vm: string, id: string, generation: number): Promise<void> {
    while (
      !this.stopping.aborted &&
      this.incoming.get(vm)?.id === id &&
      this.running.get(vm)?.generation === generation
    ) {
      const arrived = await this.deps.hypervisor.isRunning(vm).catch(() => false);
      // The controller may have handed the guest over (and this record been dropped) meanwhile.
      const record = this.incoming.get(vm);
      if (record?.id !== id) return;
      if (arrived) {
        // Switches learn the guest's new port now rather than when it next sends something.
        await this.deps.hypervisor
          .announce(vm)
          .catch((err: unknown) => this.deps.log.warn("announce-self failed", { vm, err }));
        await this.reportIncoming(vm, { ...record, state: "running" });
        this.event("arrived", vm, `the guest runs here (QEMU pid ${this.running.get(vm)?.pid})`);
        return;
      }
      await this.clock.sleep(ARRIVAL_POLL_MS, this.stopping);
    }
  }

  private async reportIncoming(vm: string, incoming: Omit<Incoming, "updatedAt">): Promise<void> {
    const report = { ...incoming, updatedAt: isoNow(this.clock) };
    this.incoming.set(vm, report);
    await this.deps.store
      .putIncoming(vm, report, this.deps.lease())
      .catch((err: unknown) => this.deps.log.warn("incoming report failed", { vm, err }));
  }

  /** Source side: runs QEMU's migration to the listening target, reporting progress until it ends. */
  private async sendGuest(vm: string, migration: Migration, uri: string): Promise<void> {
    const { hypervisor, log } = this.deps;
    this.outgoingIds.add(migration.id);
    const now = () => this.clock.now();
    const started = now();
    const host = uri.split(":").slice(1, -1).join(":");
    const { settings } = migration;
    let reportedAt = 0;
    const report = async (progress: Omit<Outgoing, "id" | "elapsedMs">, force = false) => {
      this.outgoing.set(vm, { id: migration.id, elapsedMs: now() - started, ...progress });
      if (!force && now() - reportedAt < PROGRESS_REPORT_MS) return;
      reportedAt = now();
      await this.reportStatuses().catch(() => undefined);
    };
    const fail = (message: string) =>
      report({ ...emptyProgress, state: "failed", qemuStatus: "failed", message }, true);
    try {
      await hypervisor.migrate(vm, {
        uri,
        tls:
          settings.transport === "tls"
            ? { dir: this.deps.migration.tlsDir ?? "", hostname: host }
            : undefined,
        downtimeLimitMs: settings.downtimeLimitMs,
        maxBandwidthBytes:
          settings.maxBandwidthMBps > 0 ? settings.maxBandwidthMBps * 1024 * 1024 : undefined,
      });
      log.info("migrating", { vm, to: migration.to, uri, transport: settings.transport });
    } catch (err) {
      await fail(`QEMU refused to migrate: ${(err as Error).message}`);
      this.event("migration-send-failed", vm, `QEMU refused to migrate: ${(err as Error).message}`);
      return;
    }
    for (;;) {
      const progress: MigrationProgress = await hypervisor.migrationProgress(vm).catch((err: unknown) => ({
        ...emptyProgress,
        status: "failed",
        error: `QEMU is gone: ${(err as Error).message}`,
      }));
      const placement = this.vms.placements.get(vm);
      const placed = placement?.migration;
      const state =
        progress.status === "completed"
          ? "completed"
          : ["failed", "cancelled"].includes(progress.status)
            ? "failed"
            : "migrating";
      // The controller flipped the placement (the target has the guest), or this agent is shutting down.
      const flipped = placement?.node === migration.to && placement.generation >= migration.generation;
      if (this.stopping.aborted || (state !== "completed" && flipped)) return;
      const cancelling = state === "migrating" && (placed?.id !== migration.id || placed.cancel);
      const timedOut = state === "migrating" && now() - started > settings.timeoutSeconds * 1000;
      if (cancelling || timedOut) {
        await hypervisor.cancelMigration(vm).catch(() => undefined);
        const why = timedOut ? `timed out after ${settings.timeoutSeconds} s` : "cancelled";
        await fail(`${why}; QEMU cancelled it and the guest runs on here`);
        this.event(timedOut ? "migration-send-failed" : "migration-send-cancelled", vm, why);
        return;
      }
      const { status, error, ...numbers } = progress;
      await report({ ...numbers, state, qemuStatus: status, message: error }, state !== "migrating");
      if (state === "completed") {
        this.event(
          "migration-sent",
          vm,
          `sent to ${migration.to} in ${now() - started} ms, downtime ${progress.downtimeMs ?? "?"} ms`,
        );
        return;
      }
      if (state === "failed") {
        this.event("migration-send-failed", vm, error ?? `QEMU reports ${status}`);
        return;
      }
      await this.clock.sleep(MIGRATION_POLL_MS, this.stopping);
    }
  }

  /** Drops the local records of migrations the placement no longer names. */
  private async forgetEndedMigrations(): Promise<void> {
    for (const [vm, incoming] of this.incoming) {
      const placement = this.vms.placements.get(vm);
      const adopted = placement?.node === this.deps.node && placement.generation === incoming.generation;
      if (placement?.migration?.id === incoming.id && !adopted) continue;
      this.incoming.delete(vm);
      await this.deps.store.deleteIncoming(vm).catch(() => undefined);
    }
    for (const [vm, outgoing] of this.outgoing) {
      if (this.vms.placements.get(vm)?.migration?.id !== outgoing.id) this.outgoing.delete(vm);
    }
  }

  private launchOf(spec: VmSpec, generation: number): GuestLaunch {
    return guestLaunch(spec, generation, {
      accel: this.deps.accel,
      source: (image, pool) => this.deps.storage.driveSource(image, this.deps.node, pool),
    });
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

  /**
   * The RBD client addresses of each running guest's QEMU, which fencing will blocklist: the disks' clients
   * but those that had them open before this QEMU started (a migration's source keeps them open until it quits).
   */
  private async readRbdClients(): Promise<void> {
    for (const vm of this.running.keys()) {
      if (this.rbdClients.get(vm)?.length) continue;
      const disks = this.vms.specs.get(vm)?.disks ?? [];
      const lists = await Promise.all(
        disks.map((disk) => this.deps.storage.watchers(disk.image).catch(() => [])),
      );
      const others = new Set(this.othersClients.get(vm));
      this.rbdClients.set(vm, [...new Set(lists.flat())].filter((client) => !others.has(client)).sort());
    }
  }

  /** Canary guests print `ack N` after each fsync; the newest N shows that the guest is making progress. */
  private async readCanaryAcks(): Promise<void> {
    for (const vm of this.running.keys()) {
      if (!this.vms.specs.get(vm)?.canary) continue;
      const tail = await this.consoleLogs.tail(vm, this.consoleFrom.get(vm) ?? 0, 4096);
      const ack = highestAckInLog(tail);
      if (ack > 0) this.acks.set(vm, ack);
      else if (!this.acks.has(vm)) this.acks.set(vm, 0);
    }
  }

  private desiredStatus(vm: string, placement: Placement): VmStatus | undefined {
    const base = { node: this.deps.node, generation: placement.generation, updatedAt: isoNow(this.clock) };
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
        outgoing: this.outgoing.get(vm),
        guest: this.guestInfo.get(vm),
      };
    }
    if (busy === "starting") return { ...base, state: "starting" };
    const outcome = this.outcomes.get(vm);
    if (outcome && outcome.generation === placement.generation) {
      return { ...base, state: outcome.state, message: outcome.message };
    }
    if (
      this.vms.specs.get(vm)?.state === "stopped" ||
      placement.state !== "active" ||
      placement.migration?.kind === "cold"
    )
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
      // Refused when the placement has moved on (this view is stale): tried again with the next view.
      if (await this.deps.store.putStatus(vm, status, this.deps.lease())) this.reported.set(vm, fingerprint);
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
    this.pendingEvents.push({
      event: { type, vm, node: this.deps.node, reason },
      at: new Date(this.clock.now()),
    });
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

const emptyProgress = { transferredBytes: 0, remainingBytes: 0, totalBytes: 0, mbps: 0 };
