// The controller of src/controller/controller.ts on the simulated world: the same planController decides, and
// each action is applied as the program applies it — compare-and-swap writes, the fence agent before the
// storage fence before the new placement, one event per lost node and per refusal, fences lifted once a node
// is back without the fenced guest. Like the program's Controller object it lives as long as its havend, so
// what it remembers (lost nodes, power fences, refusals) survives a lost and regained leadership.
import { planController, type ControllerAction } from "../core/controller-plan.js";
import { NO_RULES, type PlacementRules } from "../core/placement-rules.js";
import { simReconciler } from "./reconcile.js";
import {
  DEFAULT_MIGRATION,
  type HavenEvent,
  type MigrationDefaults,
  type NodeInfo,
  type StorageFence,
} from "../core/model.js";
import { REQUEST_TIMEOUT_MS } from "./agent.js";
import { emptyVmMaps, isEtcdError, type VmMaps } from "./etcd.js";
import type { SimHavend } from "./havend.js";
import type { ClusterSnapshot, World } from "./world.js";

const TICK_MS = 1000;
const FENCE_AGENT_RETRY_MS = 10_000;
const LIFT_FENCES_EVERY_MS = 5_000;
/** A candidate looks again this often even if its watch reported nothing (election.ts). */
const CAMPAIGN_POLL_MS = 1000;
/** Blocklist entries outlive any partition a node could come back from: a week. */
export const FENCE_EXPIRE_SECONDS = 7 * 24 * 3600;

type PowerFence = { state: "running" } | { state: "done" } | { state: "failed"; at: number };

export class SimController {
  private readonly nodes = new Map<string, NodeInfo>();
  private readonly nodeLeases = new Map<string, string>();
  private vms: VmMaps = emptyVmMaps();
  private maintenance = new Set<string>();
  private migrationDefaults: MigrationDefaults = DEFAULT_MIGRATION;
  private rules: PlacementRules = NO_RULES;
  private readonly unplaceable = new Map<string, string>();
  private synced = false;
  private readonly lostNodes = new Set<string>();
  private readonly powerFences = new Map<string, PowerFence>();
  /** idle until its havend has registered (a candidate needs a lease). */
  private state: "idle" | "campaigning" | "leading" = "idle";
  /** Bumped when a term ends or a campaign attempt is superseded: older timers do nothing. */
  private generation = 0;
  private unwatch: (() => void) | undefined;
  private reconciler: (() => void) | undefined;

  constructor(
    private readonly world: World,
    private readonly havend: SimHavend,
  ) {}

  private get node(): string {
    return this.havend.node;
  }

  get leading(): boolean {
    return this.state === "leading";
  }

  get campaigning(): boolean {
    return this.state === "campaigning";
  }

  run(): void {
    this.state = "campaigning";
    this.campaign();
  }

  /** The leader key was deleted: a waiting candidate tries at once. */
  wake(): void {
    if (this.state === "campaigning") this.campaign();
  }

  private campaign(): void {
    const attempt = ++this.generation;
    const again = (delay: number) =>
      this.world.nodeTask(this.node, delay, () => {
        if (this.generation === attempt && this.state === "campaigning") this.campaign();
      });
    let won: boolean;
    try {
      won = this.world.etcd.campaign(this.node, this.havend.leaseId());
    } catch (err) {
      if (!isEtcdError(err)) throw err;
      return again(REQUEST_TIMEOUT_MS + TICK_MS);
    }
    if (won) this.lead();
    else again(CAMPAIGN_POLL_MS);
  }

  private lead(): void {
    this.state = "leading";
    const term = ++this.generation;
    const lease = this.havend.leaseId();
    this.synced = false;
    this.event({ type: "leader", node: this.node, reason: "elected controller" });
    this.unwatch = this.world.watchCluster(this.node, (snapshot, first) => this.onWatch(snapshot, first));
    let liftedAt = 0;
    const tick = () => {
      if (this.generation !== term) return;
      this.reconcile();
      if (this.world.wall() - liftedAt >= LIFT_FENCES_EVERY_MS) {
        liftedAt = this.world.wall();
        try {
          this.liftFences();
        } catch (err) {
          if (!isEtcdError(err)) throw err;
        }
      }
      // watchLeadership: the term ends when our key is gone or held under another lease.
      let holder;
      try {
        holder = this.world.etcd.getLeader(this.node);
      } catch (err) {
        if (!isEtcdError(err)) throw err;
        return this.world.nodeTask(this.node, TICK_MS, tick);
      }
      if (!holder || holder.lease !== lease || lease !== this.havend.leaseId()) return this.endTerm();
      this.world.nodeTask(this.node, TICK_MS, tick);
    };
    this.world.nodeTask(this.node, TICK_MS, tick);
  }

  private endTerm(): void {
    this.generation++;
    this.unwatch?.();
    this.unwatch = undefined;
    this.state = "campaigning";
    this.campaign();
  }

  private onWatch(snapshot: ClusterSnapshot, first: boolean): void {
    if (first) {
      this.nodes.clear();
      this.nodeLeases.clear();
    }
    const names = [...new Set([...this.nodes.keys(), ...snapshot.nodes.keys()])].sort();
    for (const name of names) {
      const next = snapshot.nodes.get(name);
      const known = this.nodes.has(name);
      const renewed = known && next && this.nodeLeases.get(name) !== next.lease;
      // What the program's node watch reports as a delete (and a put, for a node back under a new lease).
      if (known && (!next || renewed)) {
        this.nodes.delete(name);
        this.noteNodeLost(name);
      }
      if (!next) continue;
      if (!this.nodes.has(name) && !first) {
        this.lostNodes.delete(name);
        this.powerFences.delete(name);
        this.event({ type: "node-joined", node: name, reason: "registered with a new lease" });
      }
      this.nodes.set(name, next.value);
      this.nodeLeases.set(name, next.lease);
    }
    this.vms = snapshot.vms;
    this.maintenance = snapshot.maintenance;
    this.migrationDefaults = snapshot.migrationDefaults;
    this.rules = snapshot.rules;
    this.synced = true;
    this.reconcile();
  }

  reconcile(): void {
    this.reconciler ??= simReconciler(this.world, this.node, () => this.reconcileOnce(), REQUEST_TIMEOUT_MS);
    this.reconciler();
  }

  private reconcileOnce(): void {
    if (!this.synced) return;
    for (const placement of this.vms.placements.values())
      if (!this.nodes.has(placement.node)) this.noteNodeLost(placement.node);
    const actions = planController({
      now: this.world.wall(),
      nodes: [...this.nodes.values()],
      ...this.vms,
      maintenance: this.maintenance,
      migrationDefaults: this.migrationDefaults,
      rules: this.rules,
    });
    for (const action of actions) this.apply(action);
    const waiting = new Set(
      actions.filter((action) => action.type === "unplaceable" || action.type === "recover").map((a) => a.vm),
    );
    for (const vm of [...this.unplaceable.keys()]) if (!waiting.has(vm)) this.unplaceable.delete(vm);
  }

  private apply(action: ControllerAction): void {
    const { etcd } = this.world;
    if (action.type === "unplaceable") {
      if (this.unplaceable.get(action.vm) === action.reason) return;
      this.unplaceable.set(action.vm, action.reason);
      const type = action.waiting ? "waiting" : "unplaceable";
      etcd.appendEvent(this.node, { type, vm: action.vm, reason: action.reason });
      return;
    }
    if (action.type === "recover") return this.recover(action);
    if (action.type === "refuse-request") {
      etcd.deleteRequest(this.node, action.vm, action.request);
      etcd.appendEvent(this.node, { type: "migration-refused", vm: action.vm, reason: action.reason });
      return;
    }
    if (action.type === "release") {
      if (etcd.swapPlacement(this.node, action.vm, null, action.expectedGeneration)) {
        this.vms.placements.delete(action.vm);
        etcd.appendEvent(this.node, { type: "released", vm: action.vm, reason: action.reason });
      }
      return;
    }
    const placement = { ...action.placement, updatedAt: this.world.iso() };
    if (!etcd.swapPlacement(this.node, action.vm, placement, action.expectedGeneration)) return;
    this.vms.placements.set(action.vm, placement);
    if (action.request) {
      etcd.deleteRequest(this.node, action.vm, action.request);
      this.vms.requests.delete(action.vm);
    }
    etcd.appendEvent(this.node, {
      type: action.decision,
      vm: action.vm,
      node: placement.node,
      reason: action.event,
    });
  }

  /** Invariant 3: the fence agent (if any) first, then the storage fence, then the new placement. */
  private recover(action: Extract<ControllerAction, { type: "recover" }>): void {
    const { etcd, machines } = this.world;
    if (!this.confirmedByEtcd(action)) return;
    if (!this.powerFenced(action.from)) return;
    const fenced: string[] = [];
    try {
      for (const image of action.images) fenced.push(...machines.fence(image));
      this.world.invariants.fenced(this.node, action.vm, fenced);
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
        time: this.world.iso(),
      };
      try {
        etcd.putStorageFence(this.node, record);
      } catch (err) {
        if (!isEtcdError(err)) throw err;
      }
    }
    const clients = fenced.length > 0 ? `blocklisted ${fenced.join(", ")}` : "no client held its disks";
    this.event({
      type: "fenced",
      vm: action.vm,
      node: action.from,
      reason: `${clients} (${action.images.join(", ") || "no disks"})`,
    });
    const placement = { ...action.placement, updatedAt: this.world.iso() };
    if (!etcd.swapPlacement(this.node, action.vm, placement, action.expectedGeneration)) return;
    this.world.recovered(action.vm, action.from);
    this.vms.placements.set(action.vm, placement);
    this.event({ type: "recovered", vm: action.vm, node: placement.node, reason: action.event });
  }

  /** As controller.ts: etcd confirms the lead, the node's absence and the placement before any fence. */
  private confirmedByEtcd(action: Extract<ControllerAction, { type: "recover" }>): boolean {
    const { etcd } = this.world;
    const leader = etcd.getLeader(this.node);
    etcd.check(this.node, "get node");
    const placement = etcd.placements.get(action.vm);
    return (
      leader?.lease === this.havend.leaseId() &&
      !etcd.nodes.has(action.from) &&
      placement?.node === action.from &&
      placement.generation === action.expectedGeneration
    );
  }

  private refuseRecovery(vm: string, node: string, reason: string): void {
    if (this.unplaceable.get(vm) === reason) return;
    this.unplaceable.set(vm, reason);
    this.event({ type: "recovery-refused", vm, node, reason });
  }

  /** Whether the failed node is off by its fence agent, or has none; the agent runs in the background. */
  private powerFenced(node: string): boolean {
    const fence = this.powerFences.get(node);
    if (fence?.state === "done") return true;
    if (fence?.state === "running") return false;
    if (fence?.state === "failed" && this.world.wall() - fence.at < FENCE_AGENT_RETRY_MS) return false;
    const agent = this.world.etcd.getFenceAgent(this.node, node);
    if (!agent) {
      this.powerFences.set(node, { state: "done" });
      return true;
    }
    this.powerFences.set(node, { state: "running" });
    const command = agent.command.join(" ");
    this.world.runFenceAgent(this.node, node, agent, (outcome) => {
      if (this.powerFences.get(node)?.state !== "running") return; // the node came back meanwhile
      this.powerFences.set(node, outcome.ok ? { state: "done" } : { state: "failed", at: this.world.wall() });
      this.event({
        type: outcome.ok ? "power-fenced" : "power-fence-failed",
        node,
        reason: `fence agent '${command}' ${outcome.summary} after ${(outcome.durationMs / 1000).toFixed(1)} s${outcome.ok ? "" : `; guests of ${node} are not started elsewhere; retrying in ${FENCE_AGENT_RETRY_MS / 1000} s`}`,
      });
      this.reconcile();
    });
    return false;
  }

  private liftFences(): void {
    const { etcd, machines } = this.world;
    for (const fence of etcd.listStorageFences(this.node)) {
      const guests = this.nodes.get(fence.node)?.guests;
      if (!guests || guests.some((g) => g.vm === fence.vm && g.generation <= fence.generation)) continue;
      machines.unfence(fence.addresses);
      etcd.deleteStorageFence(this.node, fence);
      this.event({
        type: "unfenced",
        vm: fence.vm,
        node: fence.node,
        reason: `node ${fence.node} is back and no longer runs generation ${fence.generation}: lifted the blocklisting of ${fence.addresses.join(", ")}`,
      });
    }
  }

  private noteNodeLost(node: string): void {
    if (this.lostNodes.has(node)) return;
    this.lostNodes.add(node);
    this.event({ type: "node-lost", node, reason: "its lease expired: no keep-alive within the TTL" });
  }

  /** The program's `event()`: fire and forget, lost when etcd does not answer. */
  private event(event: Omit<HavenEvent, "time">): void {
    try {
      this.world.etcd.appendEvent(this.node, event);
    } catch (err) {
      if (!isEtcdError(err)) throw err;
    }
  }
}
