// One node's havend without its process shell: the node lease, the agent and the controller candidate over
// the ports they take from the world (clock, etcd, hypervisor, storage, fence agents, lease file). main.ts
// wires it to the real adapters and the HTTP API; the simulator wires the same class to simulated ones.
import type { ClusterStore } from "../adapters/etcd/cluster-store.js";
import type { FenceAgentRunner } from "../adapters/fence/port.js";
import type { HostNetwork } from "../adapters/network/port.js";
import type { Accelerator, Hypervisor } from "../adapters/qemu/port.js";
import type { StorageBackend } from "../adapters/storage/port.js";
import { Controller, type ControllerDeps } from "../controller/controller.js";
import type { NodeInfo, ShutdownPolicy } from "../core/model.js";
import { DEFAULT_SELF_FENCE_MARGIN_MS, mayFeedWatchdog, mayRunGuests } from "../core/self-fence.js";
import { versionProblem } from "../core/versions.js";
import { isoNow, type Clock } from "../lib/clock.js";
import type { Logger } from "../lib/log.js";
import { Agent } from "../agent/agent.js";
import type { ConsoleLogs } from "../agent/console-log.js";
import { NodeLease, type LeaseFile } from "../agent/node-lease.js";

const CONDITIONS_INTERVAL_MS = 10_000;
const MAX_REGISTER_BACKOFF_MS = 5000;
const LEAVE_POLL_MS = 500;
const REMOVAL_POLL_MS = 2000;
/** The reason of the maintenance or freeze a shutdown sets; the node lifts it when it is back. */
const SHUTDOWN_REASON = "host shutdown";
const REMOVAL_REASON = "removed from the cluster";

export interface HavendDeps {
  /** The node record it registers (name, API address, capacity, accelerator, storage health…). */
  info: NodeInfo;
  leaseTtlSeconds: number;
  /** Guests are killed this long before the lease could expire on etcd's side (invariant 2). */
  selfFenceMarginMs?: number;
  clock: Clock;
  store: ClusterStore;
  hypervisor: Hypervisor;
  storage: StorageBackend;
  fenceAgents: FenceAgentRunner;
  /** The bridges this node offers to guests' network cards. */
  network: HostNetwork;
  leaseFile: LeaseFile;
  accel: Accelerator;
  /** Where incoming migrations listen (this node's address) and this node's TLS credentials for them. */
  migration: { host: string; tlsDir?: string };
  consoleLogs?: ConsoleLogs;
  controllerTimings?: ControllerDeps["timings"];
  /** Called once when an administrator removes this node (`haven node remove`) while it runs. */
  onRemoved?: () => void;
  log: Logger;
}

/** Why this havend does not join the cluster: the administrator's to act on, not a crash. */
export class RefusedToJoin extends Error {
  constructor(
    message: string,
    /** Whether a service manager should start havend again (a removed node should stay stopped). */
    readonly retry: boolean,
  ) {
    super(message);
  }
}

export class Havend {
  readonly lease: NodeLease;
  readonly agent: Agent;
  readonly controller: Controller;

  constructor(private readonly deps: HavendDeps) {
    const { info, clock, store, log } = deps;
    this.lease = new NodeLease(store, info, deps.leaseTtlSeconds, deps.leaseFile, clock, log.child("lease"));
    const lease = () => this.lease.id;
    this.agent = new Agent({
      node: info.name,
      store,
      hypervisor: deps.hypervisor,
      storage: deps.storage,
      accel: deps.accel,
      lease,
      leaseValid: () => this.leaseValid(),
      leaseExpiresAt: () => this.lease.deadline(0),
      publishGuests: (guests) => this.lease.update({ guests }),
      migration: deps.migration,
      log: log.child("agent"),
      clock,
      consoleLogs: deps.consoleLogs,
    });
    this.controller = new Controller({
      node: info.name,
      store,
      storage: deps.storage,
      fenceAgents: deps.fenceAgents,
      lease,
      log: log.child("controller"),
      clock,
      timings: deps.controllerTimings,
    });
  }

  /** Until when this node may run guests (ms on its clock). */
  deadline(): number {
    return this.lease.deadline(this.deps.selfFenceMarginMs ?? DEFAULT_SELF_FENCE_MARGIN_MS);
  }

  /** Whether the node lease is certainly still valid (invariant 2). */
  leaseValid(): boolean {
    return mayRunGuests(this.deps.clock.now(), this.deadline());
  }

  /** Whether a watchdog may be fed: with a valid lease, or with no guest left. */
  mayFeedWatchdog(): boolean {
    return mayFeedWatchdog(this.leaseValid(), this.agent.runningGuests);
  }

  /**
   * Registers the node, retrying with capped backoff until etcd answers or the signal aborts. When the first
   * attempt fails, the guests a previous havend left running are killed: no lease vouches for them. Throws
   * RefusedToJoin, without retrying and after killing those guests, when the node was removed or an online
   * node's version is out of range of this one's.
   */
  async register(signal: AbortSignal): Promise<void> {
    for (
      let delay = 200, first = true;
      !signal.aborted;
      delay = Math.min(delay * 2, MAX_REGISTER_BACKOFF_MS)
    ) {
      try {
        await this.lease.register(() => this.refuseToJoin());
        await this.liftShutdownMarks();
        return;
      } catch (err) {
        if (err instanceof RefusedToJoin) {
          // This havend will not run: nothing will renew a lease for the guests a previous one left here.
          await this.agent.fenceOrphans();
          throw err;
        }
        this.deps.log.warn("cannot register node yet", { err, retryInMs: delay });
        if (first) await this.agent.fenceOrphans();
        first = false;
        await this.deps.clock.sleep(delay, signal);
      }
    }
  }

  /**
   * A deliberate stop of this node (host shutdown or reboot), by the cluster's shutdown policy: `migrate` puts
   * the node in maintenance and waits (up to `migrateWithinMs`) until its guests have moved away; `freeze`
   * marks the node frozen first, so that the controller neither fences nor recovers its guests. Then the
   * loops end (`endLoops`), the guests still here are shut down, and the lease is given up: with `failover`
   * the controller recovers them elsewhere at once, as for a failed node.
   */
  async leave(
    policy: ShutdownPolicy,
    endLoops: () => Promise<void>,
    migrateWithinMs: number,
    reason = SHUTDOWN_REASON,
  ): Promise<void> {
    const { store, info, clock, log } = this.deps;
    const since = isoNow(clock);
    log.info("node leaving", { policy, reason });
    if (policy === "migrate") {
      await store.setMaintenance(info.name, { since, reason });
      const left = await this.awaitGuestsMoved(clock.now() + migrateWithinMs);
      if (left.length > 0) log.warn("guests did not move away in time; stopping them", { vms: left });
    }
    if (policy === "freeze") await store.setFrozen(info.name, { since, reason: SHUTDOWN_REASON });
    await endLoops();
    const why = reason === SHUTDOWN_REASON ? `shut down (shutdown policy ${policy})` : reason;
    await this.agent.stopAll(`node ${info.name} ${why}`);
    await this.lease.revoke();
  }

  /** The guests still placed here once none is, or the deadline passed. */
  private async awaitGuestsMoved(deadline: number): Promise<string[]> {
    const { store, info, clock } = this.deps;
    for (;;) {
      const { placements } = await store.snapshotVms();
      const here = [...placements].filter(([, p]) => p.node === info.name).map(([vm]) => vm);
      if (here.length === 0 || clock.now() >= deadline) return here;
      await clock.sleep(LEAVE_POLL_MS);
    }
  }

  /** Back after a shutdown: the maintenance or freeze that shutdown set is lifted. */
  private async liftShutdownMarks(): Promise<void> {
    const { store, info } = this.deps;
    if ((await store.listMaintenance()).get(info.name)?.reason === SHUTDOWN_REASON)
      await store.setMaintenance(info.name, null);
    if ((await store.listFrozen()).has(info.name)) await store.setFrozen(info.name, null);
  }

  /**
   * A removed node does not join until its name joins anew; a node whose version is out of range of an online
   * node's does not join until one of them is upgraded (rolling upgrades).
   */
  private async refuseToJoin(): Promise<void> {
    const { info, store } = this.deps;
    const removed = await store.getRemovedNode(info.name);
    if (removed)
      throw new RefusedToJoin(
        `node ${info.name} was removed from the cluster (${removed.since}, on ${removed.by}); ` +
          `to bring it back, make a token with 'haven node add ${info.name}' and join with it`,
        false,
      );
    const online = (await store.listNodes()).filter((node) => node.name !== info.name);
    const problem = versionProblem(info.version, online);
    if (problem) throw new RefusedToJoin(problem, true);
  }

  /** Migrates the guests away and leaves, as a shutdown with the migrate policy does. */
  leaveRemoved(endLoops: () => Promise<void>, migrateWithinMs: number): Promise<void> {
    return this.leave("migrate", endLoops, migrateWithinMs, REMOVAL_REASON);
  }

  /** Keeps the lease, runs the agent and the controller candidate until the signal aborts. */
  async run(signal: AbortSignal): Promise<void> {
    await Promise.all([
      this.lease.keepAlive(
        signal,
        () => this.agent.selfFence(),
        () => this.agent.resetReported(),
      ),
      this.agent.run(signal),
      this.controller.run(signal),
      this.watchNodeConditions(signal),
      this.watchRemoval(signal),
    ]);
  }

  /** Tells `onRemoved` once an administrator has removed this node. */
  private async watchRemoval(signal: AbortSignal): Promise<void> {
    const { store, info, clock, log, onRemoved } = this.deps;
    if (!onRemoved) return;
    while (!signal.aborted) {
      const removed = await store.getRemovedNode(info.name).catch(() => undefined);
      if (removed) {
        log.info("node removed from the cluster", { ...removed });
        return onRemoved();
      }
      await clock.sleep(REMOVAL_POLL_MS, signal);
    }
  }

  /** Republishes the node record whenever the node's storage health or its bridges change. */
  private async watchNodeConditions(signal: AbortSignal): Promise<void> {
    const { storage, network, clock, log } = this.deps;
    let last = "";
    while (!signal.aborted) {
      const conditions = await nodeConditions(storage, network);
      const fingerprint = JSON.stringify(conditions);
      if (fingerprint !== last) {
        if (last) log.info("node conditions changed", { ...conditions });
        await this.lease.update(conditions).catch((err: unknown) => log.warn("node update failed", { err }));
        last = fingerprint;
      }
      await clock.sleep(CONDITIONS_INTERVAL_MS, signal);
    }
  }
}

/** What decides whether a guest can run here besides room: the storage it reaches, the bridges it offers. */
export async function nodeConditions(
  storage: StorageBackend,
  network: HostNetwork,
): Promise<Pick<NodeInfo, "storage" | "bridges">> {
  const [health, bridges] = await Promise.all([storage.health(), network.bridges()]);
  return { storage: health, bridges };
}
