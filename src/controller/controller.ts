// The controller: runs only on the elected havend. It turns the pure plan into compare-and-swap writes
// and records every decision as an event.
import { emptyVmMaps, type ClusterStore, type VmMaps } from "../adapters/etcd/cluster-store.js";
import { campaign, resign } from "../adapters/etcd/election.js";
import { runInformer } from "../adapters/etcd/informer.js";
import { planController, type ControllerAction } from "../core/controller-plan.js";
import type { FenceAgentRunner } from "../adapters/fence/port.js";
import type { StorageBackend } from "../adapters/storage/port.js";
import type { HavenEvent, NodeInfo, StorageFence } from "../core/model.js";
import { nodeInfoSchema } from "../core/model.js";
import { serialized } from "../lib/async.js";
import { isoNow, systemClock, type Clock } from "../lib/clock.js";
import type { Logger } from "../lib/log.js";

export interface ControllerDeps {
  node: string;
  store: ClusterStore;
  /** Fences a failed node's guests on storage before they are recovered elsewhere (invariant 3). */
  storage: StorageBackend;
  /** Runs the external fence agents configured per node (power off) before their guests are recovered. */
  fenceAgents: FenceAgentRunner;
  lease: () => string;
  log: Logger;
  /** Default: the system clock. */
  clock?: Clock;
  /** Shorter waits for tests. */
  timings?: Partial<typeof DEFAULT_TIMINGS>;
}

const TICK_MS = 1000;
const DEFAULT_TIMINGS = {
  /** A failed fence agent is tried again after this long (its own timeout bounds each run). */
  fenceAgentRetryMs: 10_000,
  /** How often recorded storage fences are checked for nodes that came back. */
  liftFencesEveryMs: 5_000,
};

/** Power fencing of one failed node: running, done, or failed (retried later). */
type PowerFence = { state: "running" } | { state: "done" } | { state: "failed"; at: number };
/** Blocklist entries outlive any partition a node could come back from: a week. */
const FENCE_EXPIRE_SECONDS = 7 * 24 * 3600;

export class Controller {
  private readonly nodes = new Map<string, NodeInfo>();
  private vms: VmMaps = emptyVmMaps();
  /** Last reason reported per unplaceable VM, so a waiting VM is one event, not one per second. */
  private readonly unplaceable = new Map<string, string>();
  private synced = { nodes: false, vms: false, config: false };
  /** Maintenance flags and migration defaults, from `config/`. */
  private config = new Map<string, string>();
  private readonly lostNodes = new Set<string>();
  private readonly powerFences = new Map<string, PowerFence>();
  private readonly reconcile: () => void;
  private readonly timings: typeof DEFAULT_TIMINGS;
  private readonly clock: Clock;

  constructor(private readonly deps: ControllerDeps) {
    this.timings = { ...DEFAULT_TIMINGS, ...deps.timings };
    this.clock = deps.clock ?? systemClock;
    this.reconcile = serialized(
      () => this.reconcileOnce(),
      (err) => deps.log.error("reconcile failed", { err }),
    );
  }

  /** Campaigns for leadership and leads while elected, until the signal aborts. */
  async run(signal: AbortSignal): Promise<void> {
    const { store, log } = this.deps;
    while (!signal.aborted) {
      const lease = this.deps.lease();
      try {
        await campaign(store.etcd, store.controllerKey, this.deps.node, lease, signal, this.clock);
      } catch (err) {
        if (signal.aborted) break;
        log.warn("campaign failed", { err });
        await this.clock.sleep(TICK_MS, signal);
        continue;
      }
      log.info("elected controller", { lease });
      await store
        .appendEvent({ type: "leader", node: this.deps.node, reason: "elected controller" })
        .catch(() => undefined);
      const term = new AbortController();
      const stop = () => term.abort();
      signal.addEventListener("abort", stop, { once: true });
      await Promise.all([this.lead(term.signal), this.watchLeadership(lease, term)]);
      signal.removeEventListener("abort", stop);
      log.info("no longer controller");
    }
    await resign(store.etcd, store.controllerKey, this.deps.lease()).catch(() => undefined);
  }

  /** Ends the term when our election key is gone (lease lost) or belongs to another lease. */
  private async watchLeadership(lease: string, term: AbortController): Promise<void> {
    while (!term.signal.aborted) {
      await this.clock.sleep(TICK_MS, term.signal);
      const kv = await this.deps.store.etcd
        .get(this.deps.store.controllerKey)
        .catch(() => "unknown" as const);
      if (kv === "unknown") continue;
      if (!kv || kv.lease !== lease || lease !== this.deps.lease()) term.abort();
    }
  }

  private async lead(signal: AbortSignal): Promise<void> {
    const { store, log } = this.deps;
    this.synced = { nodes: false, vms: false, config: false };
    const onError = (err: unknown, retryInMs: number) => log.warn("watch failed", { err, retryInMs });
    const retry = { sleep: (ms: number, wake: AbortSignal) => this.clock.sleep(ms, wake) };
    const nodes = runInformer(
      store.etcd,
      store.nodesPrefix,
      {
        onSnapshot: (kvs) => {
          this.nodes.clear();
          for (const kv of kvs)
            this.nodes.set(
              kv.key.slice(store.nodesPrefix.length),
              nodeInfoSchema.parse(JSON.parse(kv.value)),
            );
          this.synced.nodes = true;
          this.reconcile();
        },
        onEvents: (events) => {
          for (const { type, kv } of events) {
            const name = kv.key.slice(store.nodesPrefix.length);
            if (type === "delete") {
              this.nodes.delete(name);
              this.noteNodeLost(name);
            } else {
              if (!this.nodes.has(name)) {
                this.lostNodes.delete(name);
                this.powerFences.delete(name);
                this.event({ type: "node-joined", node: name, reason: "registered with a new lease" });
              }
              this.nodes.set(name, nodeInfoSchema.parse(JSON.parse(kv.value)));
            }
          }
          this.reconcile();
        },
        onError,
      },
      signal,
      retry,
    );
    const config = runInformer(
      store.etcd,
      store.configPrefix,
      {
        onSnapshot: (kvs) => {
          this.config = new Map(kvs.map((kv) => [kv.key, kv.value]));
          this.synced.config = true;
          this.reconcile();
        },
        onEvents: (events) => {
          for (const { type, kv } of events) {
            if (type === "delete") this.config.delete(kv.key);
            else this.config.set(kv.key, kv.value);
          }
          this.reconcile();
        },
        onError,
      },
      signal,
      retry,
    );
    const vms = store.watchVms(
      signal,
      (maps, events) => {
        this.vms = maps;
        if (events === null) this.synced.vms = true;
        this.reconcile();
      },
      onError,
    );
    let liftedAt = 0;
    while (!signal.aborted) {
      await this.clock.sleep(TICK_MS, signal);
      this.reconcile();
      if (this.clock.now() - liftedAt >= this.timings.liftFencesEveryMs) {
        liftedAt = this.clock.now();
        await this.liftFences().catch((err: unknown) => log.warn("lifting fences failed", { err }));
      }
    }
    await Promise.all([nodes, vms, config]);
  }

  /**
   * Invariant 3: fence first; only a fenced guest may start elsewhere. The node's fence agent (if any) must
   * have powered it off, then the guest's disks are fenced. A failed fence is a refusal, retried.
   */
  private async recover(action: Extract<ControllerAction, { type: "recover" }>): Promise<void> {
    const { store, storage, log } = this.deps;
    if (!(await this.confirmedByEtcd(action))) return;
    if (!(await this.powerFenced(action.from))) return;
    const fenced: string[] = [];
    try {
      for (const image of action.images) fenced.push(...(await storage.fence(image, FENCE_EXPIRE_SECONDS)));
    } catch (err) {
      const reason = `node ${action.from} failed, but its guest could not be fenced, so it is not started elsewhere: ${(err as Error).message}`;
      this.refuseRecovery(action.vm, action.from, reason);
      return;
    }
    this.unplaceable.delete(action.vm);
    if (fenced.length > 0) {
      const record: StorageFence = {
        node: action.from,
        vm: action.vm,
        generation: action.expectedGeneration,
        addresses: fenced,
        time: isoNow(this.clock),
      };
      // Only bookkeeping for lifting the fence later; without it the entries simply expire.
      await store.putStorageFence(record).catch((err: unknown) => log.warn("fence not recorded", { err }));
    }
    const clients = fenced.length > 0 ? `blocklisted ${fenced.join(", ")}` : "no client held its disks";
    this.event({
      type: "fenced",
      vm: action.vm,
      node: action.from,
      reason: `${clients} (${action.images.join(", ") || "no disks"})`,
    });
    const placement = { ...action.placement, updatedAt: isoNow(this.clock) };
    const recovered = { type: "recovered", vm: action.vm, node: placement.node, reason: action.event };
    if (!(await store.swapPlacement(action.vm, placement, action.expectedGeneration, recovered))) return;
    this.vms.placements.set(action.vm, placement);
    log.info("recovered", { vm: action.vm, from: action.from, to: placement.node });
  }

  /**
   * A controller cut off from etcd still has its last view and may not know that it lost the lead: before it
   * fences anything, etcd itself must confirm that this node still leads, that the failed node is still gone
   * and that the guest is still placed there. Otherwise it could blocklist the QEMU that a newer leader has
   * started elsewhere meanwhile. An unreachable etcd throws here, and nothing is fenced.
   */
  private async confirmedByEtcd(action: Extract<ControllerAction, { type: "recover" }>): Promise<boolean> {
    const { store } = this.deps;
    const [leader, node, placement] = await Promise.all([
      store.etcd.get(store.controllerKey),
      store.etcd.get(store.nodeKey(action.from)),
      store.getPlacement(action.vm),
    ]);
    return (
      leader?.lease === this.deps.lease() &&
      node === undefined &&
      placement?.value.node === action.from &&
      placement.value.generation === action.expectedGeneration
    );
  }

  private refuseRecovery(vm: string, node: string, reason: string): void {
    if (this.unplaceable.get(vm) === reason) return;
    this.unplaceable.set(vm, reason);
    this.deps.log.warn("recovery refused", { vm, node, reason });
    this.event({ type: "recovery-refused", vm, node, reason });
  }

  /**
   * Whether the failed node is powered off by its fence agent, or has none. The agent runs in the background
   * (it may take its whole timeout) while other decisions go on; until it succeeded, nothing of the node's
   * is recovered.
   */
  private async powerFenced(node: string): Promise<boolean> {
    const fence = this.powerFences.get(node);
    if (fence?.state === "done") return true;
    if (fence?.state === "running") return false;
    if (fence?.state === "failed" && this.clock.now() - fence.at < this.timings.fenceAgentRetryMs)
      return false;
    const agent = await this.deps.store.getFenceAgent(node);
    if (!agent) {
      this.powerFences.set(node, { state: "done" });
      return true;
    }
    this.powerFences.set(node, { state: "running" });
    const command = agent.command.join(" ");
    this.deps.log.info("running fence agent", { node, command });
    void this.deps.fenceAgents.run(node, agent).then((outcome) => {
      if (this.powerFences.get(node)?.state !== "running") return; // the node came back meanwhile
      this.powerFences.set(node, outcome.ok ? { state: "done" } : { state: "failed", at: this.clock.now() });
      this.event({
        type: outcome.ok ? "power-fenced" : "power-fence-failed",
        node,
        reason: `fence agent '${command}' ${outcome.summary} after ${(outcome.durationMs / 1000).toFixed(1)} s${outcome.ok ? "" : `; guests of ${node} are not started elsewhere; retrying in ${this.timings.fenceAgentRetryMs / 1000} s`}`,
      });
      this.reconcile();
    });
    return false;
  }

  /**
   * A storage fence stays until its node is back and its agent shows that the fenced generation of the guest
   * no longer runs there; then the blocklist entries are removed (they would expire after a week anyway).
   */
  private async liftFences(): Promise<void> {
    for (const fence of await this.deps.store.listStorageFences()) {
      if (!runsNoLonger(fence, this.nodes.get(fence.node))) continue;
      if (!(await this.liftConfirmedByEtcd(fence))) continue;
      await this.deps.storage.unfence(fence.addresses);
      await this.deps.store.deleteStorageFence(fence);
      this.event({
        type: "unfenced",
        vm: fence.vm,
        node: fence.node,
        reason: `node ${fence.node} is back and no longer runs generation ${fence.generation}: lifted the blocklisting of ${fence.addresses.join(", ")}`,
      });
    }
  }

  /**
   * The view a lift is decided on may be stale: a controller that was cut off from etcd still believes it
   * leads and still has the node records of before the cut, with guests that have run there since left out.
   * Lifting on such a view unblocks a QEMU that may write again. etcd must confirm that this node leads and
   * that the node's record there, under its current lease, no longer lists the fenced generation.
   */
  private async liftConfirmedByEtcd(fence: StorageFence): Promise<boolean> {
    const { store } = this.deps;
    const [leader, node] = await Promise.all([
      store.etcd.get(store.controllerKey),
      store.etcd.get(store.nodeKey(fence.node)),
    ]);
    if (leader?.lease !== this.deps.lease() || !node) return false;
    return runsNoLonger(fence, nodeInfoSchema.parse(JSON.parse(node.value)));
  }

  /** One detection event per lost node, also when a new leader first sees placements on a node that is gone. */
  private noteNodeLost(node: string): void {
    if (this.lostNodes.has(node)) return;
    this.lostNodes.add(node);
    this.event({ type: "node-lost", node, reason: "its lease expired: no keep-alive within the TTL" });
  }

  private event(event: Omit<HavenEvent, "time">): void {
    this.deps.store
      .appendEvent(event)
      .catch((err: unknown) => this.deps.log.warn("event not recorded", { err }));
  }

  private async reconcileOnce(): Promise<void> {
    if (!this.synced.nodes || !this.synced.vms || !this.synced.config) return;
    for (const placement of this.vms.placements.values()) {
      if (!this.nodes.has(placement.node)) this.noteNodeLost(placement.node);
    }
    const actions = planController({
      now: this.clock.now(),
      nodes: [...this.nodes.values()],
      ...this.vms,
      ...this.deps.store.parseConfig(this.config),
    });
    for (const action of actions) await this.apply(action);
    // A VM that is still waiting keeps its last reason, so the same refusal is one event, not one per second.
    const waiting = new Set(
      actions.filter((action) => action.type === "unplaceable" || action.type === "recover").map((a) => a.vm),
    );
    for (const vm of this.unplaceable.keys()) if (!waiting.has(vm)) this.unplaceable.delete(vm);
  }

  private async apply(action: ControllerAction): Promise<void> {
    const { store, log } = this.deps;
    if (action.type === "unplaceable") {
      if (this.unplaceable.get(action.vm) === action.reason) return;
      this.unplaceable.set(action.vm, action.reason);
      log.warn(action.waiting ? "VM waits" : "cannot place VM", { vm: action.vm, reason: action.reason });
      const type = action.waiting ? "waiting" : "unplaceable";
      await store.appendEvent({ type, vm: action.vm, reason: action.reason });
      return;
    }
    if (action.type === "recover") return this.recover(action);
    if (action.type === "refuse-request") {
      await store.deleteMigrationRequest(action.vm, action.request);
      log.warn("migration refused", { vm: action.vm, reason: action.reason });
      await store.appendEvent({ type: "migration-refused", vm: action.vm, reason: action.reason });
      return;
    }
    if (action.type === "release") {
      const released = { type: "released", vm: action.vm, reason: action.reason };
      if (await store.swapPlacement(action.vm, null, action.expectedGeneration, released))
        this.vms.placements.delete(action.vm);
      return;
    }
    const placement = { ...action.placement, updatedAt: isoNow(this.clock) };
    const type = action.decision;
    const placed = { type, vm: action.vm, node: placement.node, reason: action.event };
    if (!(await store.swapPlacement(action.vm, placement, action.expectedGeneration, placed))) return;
    this.vms.placements.set(action.vm, placement);
    if (action.request) {
      await store.deleteMigrationRequest(action.vm, action.request);
      this.vms.requests.delete(action.vm);
    }
    log.info("placement", { vm: action.vm, node: placement.node, generation: placement.generation, type });
  }
}

/** Whether the fenced node is back and its agent says it no longer runs the fenced generation of the guest. */
function runsNoLonger(fence: StorageFence, node: NodeInfo | undefined): boolean {
  const guests = node?.guests;
  return guests !== undefined && !guests.some((g) => g.vm === fence.vm && g.generation <= fence.generation);
}
