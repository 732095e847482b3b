// The simulated etcd: Haven's keys as typed maps, leases that expire on the etcd side, quorum, and the event
// log. Every request names the node it comes from (null: the API, which any reachable member serves); a node
// that is cut off, frozen or powered off, or a cluster without quorum, gets EtcdDown instead of an answer.
import {
  DEFAULT_MIGRATION,
  type FenceAgent,
  type HavenEvent,
  type Incoming,
  type Maintenance,
  type MigrationDefaults,
  type MigrationRequest,
  type NodeInfo,
  type Placement,
  type StorageFence,
  type VmSpec,
  type VmStatus,
} from "../core/model.js";
import type { PlacementRules } from "../core/placement-rules.js";
import type { Constraint } from "../core/scheduler/types.js";

/** etcd did not answer (no quorum, or the caller cannot reach it). */
export class EtcdDown extends Error {
  constructor(what: string) {
    super(`etcd unavailable: ${what}`);
    this.name = "EtcdDown";
  }
}

/** A put under a lease that no longer exists. */
export class LeaseGone extends Error {
  constructor(lease: string) {
    super(`etcd lease ${lease} not found (expired or revoked)`);
    this.name = "LeaseGone";
  }
}

export const isEtcdError = (err: unknown): err is EtcdDown | LeaseGone =>
  err instanceof EtcdDown || err instanceof LeaseGone;

export interface Leased<T> {
  value: T;
  lease: string;
}

interface Lease {
  id: string;
  node: string;
  ttlMs: number;
  expiresAt: number;
}

/** What watchers of `vms/` see. */
export interface VmMaps {
  specs: Map<string, VmSpec>;
  placements: Map<string, Placement>;
  statuses: Map<string, VmStatus>;
  requests: Map<string, MigrationRequest>;
  incomings: Map<string, Incoming>;
}

export const emptyVmMaps = (): VmMaps => ({
  specs: new Map(),
  placements: new Map(),
  statuses: new Map(),
  requests: new Map(),
  incomings: new Map(),
});

/** An event as stored, with the order it was written in (for ties of time). */
export interface StoredEvent extends HavenEvent {
  /** Simulated ms of `time`. */
  at: number;
  seq: number;
}

export interface EtcdEnv {
  /** Simulated ms since the start. */
  now(): number;
  /** Wall-clock ms (what ISO times in keys and events are made of). */
  wall(at?: number): number;
  reachable(node: string): boolean;
  at(time: number, run: () => void): void;
  /** Called after every change (watchers are notified). */
  changed(): void;
  /** Shared sequence of log lines and events. */
  nextSeq(): number;
}

export class SimEtcd {
  quorum = true;
  /** Bumped on every change; watchers compare it with what they saw. */
  revision = 0;
  private nextLease = 0x1000;
  private parkedKeepAlives: Array<{ id: string; answer: (ttl: number) => void }> = [];
  readonly leases = new Map<string, Lease>();
  readonly nodes = new Map<string, Leased<NodeInfo>>();
  readonly specs = new Map<string, VmSpec>();
  readonly placements = new Map<string, Placement>();
  readonly statuses = new Map<string, Leased<VmStatus>>();
  readonly requests = new Map<string, MigrationRequest>();
  readonly incomings = new Map<string, Leased<Incoming>>();
  readonly maintenance = new Map<string, Maintenance>();
  migrationDefaults: MigrationDefaults = DEFAULT_MIGRATION;
  readonly storageFences = new Map<string, StorageFence>();
  readonly fenceAgents = new Map<string, FenceAgent>();
  /** `config/constraints/` by id, in the order they were written. */
  readonly constraints = new Map<string, Constraint>();
  /** `config/node-attributes/`: attributes recorded for nodes, which location rules match. */
  readonly nodeAttributes = new Map<string, Record<string, string>>();
  leader: Leased<string> | undefined;
  readonly events: StoredEvent[] = [];

  constructor(private readonly env: EtcdEnv) {}

  /** Throws unless `from` (null: the API) gets an answer. */
  check(from: string | null, what: string): void {
    if (!this.quorum) throw new EtcdDown(`${what}: no quorum`);
    if (from !== null && !this.env.reachable(from)) throw new EtcdDown(`${what}: ${from} cannot reach etcd`);
  }

  private changed(): void {
    this.revision++;
    this.env.changed();
  }

  // --- leases ---
  grantLease(from: string, ttlMs: number): string {
    this.check(from, "grant lease");
    const id = (this.nextLease++).toString(16);
    this.leases.set(id, { id, node: from, ttlMs, expiresAt: this.env.now() + ttlMs });
    this.scheduleExpiry(id);
    return id;
  }

  /** A keep-alive reaching etcd now; returns the TTL in seconds, 0 when the lease is gone. */
  keepAliveArrives(id: string): number {
    const lease = this.leases.get(id);
    if (!lease) return 0;
    lease.expiresAt = this.env.now() + lease.ttlMs;
    this.scheduleExpiry(id);
    return lease.ttlMs / 1000;
  }

  /** A keep-alive request: answered at once, or (without quorum) once quorum is back. */
  keepAliveRequest(id: string, answer: (ttl: number) => void): void {
    if (this.quorum) answer(this.keepAliveArrives(id));
    else this.parkedKeepAlives.push({ id, answer });
  }

  leaseAlive(id: string | undefined): boolean {
    return id !== undefined && this.leases.has(id);
  }

  private scheduleExpiry(id: string): void {
    const lease = this.leases.get(id)!;
    this.env.at(lease.expiresAt, () => {
      const current = this.leases.get(id);
      if (current && this.quorum && current.expiresAt <= this.env.now()) this.expire(current);
    });
  }

  /** Without quorum nothing expires; a new etcd leader restores every lease's full TTL (what etcd does). */
  setQuorum(ok: boolean): void {
    this.quorum = ok;
    if (!ok) return;
    for (const lease of this.leases.values()) {
      lease.expiresAt = this.env.now() + lease.ttlMs;
      this.scheduleExpiry(lease.id);
    }
    const parked = this.parkedKeepAlives.splice(0);
    for (const { id, answer } of parked) answer(this.keepAliveArrives(id));
    this.changed();
  }

  private expire(lease: Lease): void {
    this.leases.delete(lease.id);
    for (const map of [this.nodes, this.statuses, this.incomings] as Array<Map<string, Leased<unknown>>>) {
      for (const [key, entry] of map) if (entry.lease === lease.id) map.delete(key);
    }
    if (this.leader?.lease === lease.id) this.leader = undefined;
    this.changed();
  }

  private requireLease(lease: string): void {
    if (!this.leases.has(lease)) throw new LeaseGone(lease);
  }

  // --- nodes, statuses, incoming reports (under leases) ---
  putNode(from: string, info: NodeInfo, lease: string): void {
    this.check(from, "put node");
    this.requireLease(lease);
    this.nodes.set(info.name, { value: info, lease });
    this.changed();
  }

  putStatus(from: string, vm: string, status: VmStatus, lease: string): void {
    this.check(from, "put status");
    this.requireLease(lease);
    this.statuses.set(vm, { value: status, lease });
    this.changed();
  }

  putIncoming(from: string, vm: string, incoming: Incoming, lease: string): void {
    this.check(from, "put incoming");
    this.requireLease(lease);
    this.incomings.set(vm, { value: incoming, lease });
    this.changed();
  }

  deleteIncoming(from: string, vm: string): void {
    this.check(from, "delete incoming");
    if (this.incomings.delete(vm)) this.changed();
  }

  // --- specs and requests (API), placements (controller) ---
  putSpec(from: string | null, spec: VmSpec): void {
    this.check(from, "put spec");
    this.specs.set(spec.name, spec);
    this.changed();
  }

  /** Compare-and-swap on the generation, as ClusterStore.swapPlacement; null removes. */
  swapPlacement(from: string, vm: string, next: Placement | null, expectedGeneration: number): boolean {
    this.check(from, "swap placement");
    if ((this.placements.get(vm)?.generation ?? 0) !== expectedGeneration || !this.specs.has(vm))
      return false;
    if (next) this.placements.set(vm, next);
    else this.placements.delete(vm);
    this.changed();
    return true;
  }

  putRequest(from: string | null, vm: string, request: MigrationRequest, replace: boolean): boolean {
    this.check(from, "put migration request");
    if ((!replace && this.requests.has(vm)) || !this.specs.has(vm)) return false;
    this.requests.set(vm, request);
    this.changed();
    return true;
  }

  deleteRequest(from: string, vm: string, id: string): void {
    this.check(from, "delete migration request");
    if (this.requests.get(vm)?.id !== id) return;
    this.requests.delete(vm);
    this.changed();
  }

  setMaintenance(from: string | null, node: string, maintenance: Maintenance | null): void {
    this.check(from, "maintenance");
    if (maintenance) this.maintenance.set(node, maintenance);
    else this.maintenance.delete(node);
    this.changed();
  }

  setMigrationDefaults(from: string | null, defaults: MigrationDefaults): void {
    this.check(from, "migration defaults");
    this.migrationDefaults = defaults;
    this.changed();
  }

  // --- placement rules (config/constraints/, config/node-attributes/) ---
  putConstraint(from: string | null, constraint: Constraint): void {
    this.check(from, "put constraint");
    this.constraints.set(constraint.id, constraint);
    this.changed();
  }

  deleteConstraint(from: string | null, id: string): void {
    this.check(from, "delete constraint");
    this.constraints.delete(id);
    this.changed();
  }

  setNodeAttributes(from: string | null, node: string, attributes: Record<string, string>): void {
    this.check(from, "node attributes");
    this.nodeAttributes.set(node, attributes);
    this.changed();
  }

  // --- fencing ---
  putStorageFence(from: string, fence: StorageFence): void {
    this.check(from, "put storage fence");
    this.storageFences.set(`${fence.node}/${fence.vm}`, fence);
  }

  listStorageFences(from: string): StorageFence[] {
    this.check(from, "list storage fences");
    return [...this.storageFences.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([, f]) => f);
  }

  deleteStorageFence(from: string, fence: StorageFence): void {
    this.check(from, "delete storage fence");
    this.storageFences.delete(`${fence.node}/${fence.vm}`);
  }

  setFenceAgent(from: string | null, node: string, agent: FenceAgent | null): void {
    this.check(from, "fence agent");
    if (agent) this.fenceAgents.set(node, agent);
    else this.fenceAgents.delete(node);
    this.changed(); // under config/, which the controller watches
  }

  getFenceAgent(from: string, node: string): FenceAgent | undefined {
    this.check(from, "get fence agent");
    return this.fenceAgents.get(node);
  }

  // --- leader election (one key under the leader's lease) ---
  /** Creates the leader key if absent; returns whether `lease` holds it now. */
  campaign(from: string, lease: string): boolean {
    this.check(from, "campaign");
    if (!this.leader) {
      this.requireLease(lease);
      this.leader = { value: from, lease };
      this.changed();
    }
    return this.leader.lease === lease;
  }

  getLeader(from: string): Leased<string> | undefined {
    this.check(from, "get leader");
    return this.leader;
  }

  // --- events ---
  appendEvent(from: string | null, event: Omit<HavenEvent, "time">, at = this.env.now()): void {
    this.check(from, "append event");
    const time = new Date(this.env.wall(at)).toISOString();
    this.events.push({ time, ...event, at, seq: this.env.nextSeq() });
  }

  // --- what watchers get ---
  vmMaps(): VmMaps {
    return {
      specs: new Map(this.specs),
      placements: new Map(this.placements),
      statuses: values(this.statuses),
      requests: new Map(this.requests),
      incomings: values(this.incomings),
    };
  }

  /** What the controller's watch of `config/` reads as placement rules. */
  rules(): PlacementRules {
    return { constraints: [...this.constraints.values()], nodeAttributes: new Map(this.nodeAttributes) };
  }
}

function values<T>(map: Map<string, Leased<T>>): Map<string, T> {
  return new Map([...map].map(([key, entry]) => [key, entry.value]));
}
