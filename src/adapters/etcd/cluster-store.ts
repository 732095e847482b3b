// Haven's etcd layout (design brief, "Cluster state"): typed reads and compare-and-swap writes of nodes,
// VM specs, placements, statuses and events, all under one configurable prefix.
import { randomBytes } from "node:crypto";
import type { z } from "zod";
import { conflict } from "../../core/errors.js";
import {
  DEFAULT_MIGRATION,
  eventSchema,
  fenceAgentSchema,
  incomingSchema,
  maintenanceSchema,
  frozenNodeSchema,
  removedNodeSchema,
  shutdownPolicySchema,
  DEFAULT_SHUTDOWN_POLICY,
  migrationDefaultsSchema,
  migrationRequestSchema,
  nodeInfoSchema,
  storageFenceSchema,
  placementSchema,
  vmSpecSchema,
  vmStatusSchema,
  type FenceAgent,
  type HavenEvent,
  type Incoming,
  type Maintenance,
  type FrozenNode,
  type RemovedNode,
  type ShutdownPolicy,
  type MigrationDefaults,
  type MigrationRequest,
  type StorageFence,
  type NodeInfo,
  type Placement,
  type VmSpec,
  type VmStatus,
  vmActionSchema,
  type VmAction,
} from "../../core/model.js";
import { joinGrantSchema, type JoinGrant } from "../../core/join.js";
import type { PlacementRules } from "../../core/placement-rules.js";
import { systemClock, type Clock } from "../../lib/clock.js";
import type { Constraint } from "../../core/scheduler/types.js";
import {
  ConstraintStore,
  storedConstraintSchema,
  storedNodeAttributesSchema,
  storedPlacementStrategySchema,
  type StoredConstraint,
} from "./constraint-store.js";
import { runInformer } from "./informer.js";
import type { EtcdClient, KeyValue, WatchEvent } from "./port.js";

export interface Versioned<T> {
  value: T;
  modRevision: number;
}

const VM_KEY_KINDS = ["spec", "placement", "status", "request", "incoming", "action"] as const;
export type VmKeyKind = (typeof VM_KEY_KINDS)[number];
const isVmKeyKind = (kind: string): kind is VmKeyKind => (VM_KEY_KINDS as readonly string[]).includes(kind);

/** Everything known about VMs, keyed by VM name; kept current by a watch. */
export interface VmMaps {
  specs: Map<string, VmSpec>;
  placements: Map<string, Placement>;
  statuses: Map<string, VmStatus>;
  /** Migration requests (users, drains) not yet taken up by the controller. */
  requests: Map<string, MigrationRequest>;
  /** Target agents' reports on QEMUs waiting for (or running) an incoming live migration. */
  incomings: Map<string, Incoming>;
  /** Reboots, resets and disk resizes asked of running guests, until their node's agent has done them. */
  actions: Map<string, VmAction>;
}

export const emptyVmMaps = (): VmMaps => ({
  specs: new Map(),
  placements: new Map(),
  statuses: new Map(),
  requests: new Map(),
  incomings: new Map(),
  actions: new Map(),
});

export class ClusterStore {
  constructor(
    readonly etcd: EtcdClient,
    readonly prefix: string,
    /** Event times, and the informers' waits between retries. */
    readonly clock: Clock = systemClock,
  ) {}

  // --- keys ---
  nodeKey = (node: string) => `${this.prefix}nodes/${node}`;
  vmKey = (vm: string, kind: VmKeyKind) => `${this.prefix}vms/${vm}/${kind}`;
  get nodesPrefix() {
    return `${this.prefix}nodes/`;
  }
  get vmsPrefix() {
    return `${this.prefix}vms/`;
  }
  get eventsPrefix() {
    return `${this.prefix}events/`;
  }
  get storageFencesPrefix() {
    return `${this.prefix}fences/`;
  }
  storageFenceKey = (fence: Pick<StorageFence, "node" | "vm">) =>
    `${this.storageFencesPrefix}${fence.node}/${fence.vm}`;
  get fenceAgentsPrefix() {
    return `${this.prefix}config/fence-agents/`;
  }
  get joinGrantsPrefix() {
    return `${this.prefix}join-grants/`;
  }
  get removedNodesPrefix() {
    return `${this.prefix}removed-nodes/`;
  }
  get controllerKey() {
    return `${this.prefix}controller/leader`;
  }

  /** Splits `<prefix>vms/<vm>/<kind>` into its parts, or undefined for other keys. */
  parseVmKey(key: string): { vm: string; kind: VmKeyKind } | undefined {
    if (!key.startsWith(this.vmsPrefix)) return undefined;
    const [vm, kind, ...rest] = key.slice(this.vmsPrefix.length).split("/");
    if (!vm || !kind || rest.length > 0 || !isVmKeyKind(kind)) return undefined;
    return { vm, kind };
  }

  // --- nodes ---
  async putNode(info: NodeInfo, lease: string): Promise<void> {
    await this.etcd.put(this.nodeKey(info.name), JSON.stringify(info), { lease });
  }

  async listNodes(): Promise<NodeInfo[]> {
    const { kvs } = await this.etcd.list(this.nodesPrefix);
    return kvs.map((kv) => decode(nodeInfoSchema, kv));
  }

  // --- VM spec ---
  async getSpec(vm: string): Promise<Versioned<VmSpec> | undefined> {
    return versioned(vmSpecSchema, await this.etcd.get(this.vmKey(vm, "spec")));
  }

  async listSpecs(): Promise<VmSpec[]> {
    const { kvs } = await this.etcd.list(this.vmsPrefix);
    return kvs.filter((kv) => this.parseVmKey(kv.key)?.kind === "spec").map((kv) => decode(vmSpecSchema, kv));
  }

  /** Creates the spec only if no VM of that name exists. */
  async createSpec(spec: VmSpec): Promise<void> {
    const key = this.vmKey(spec.name, "spec");
    const result = await this.etcd.txn(
      [{ key, target: "version", result: "equal", value: 0 }],
      [{ type: "put", key, value: JSON.stringify(spec) }],
    );
    if (!result.succeeded) throw conflict(`VM ${spec.name} already exists`);
  }

  /** Replaces the spec if nobody changed it since it was read. */
  async updateSpec(spec: VmSpec, expectedModRevision: number): Promise<void> {
    const key = this.vmKey(spec.name, "spec");
    const result = await this.etcd.txn(
      [{ key, target: "mod", result: "equal", value: expectedModRevision }],
      [{ type: "put", key, value: JSON.stringify(spec) }],
    );
    if (!result.succeeded) throw conflict(`VM ${spec.name} was changed concurrently; try again`);
  }

  /** Deletes every key of a VM if its spec is unchanged and it has no placement. */
  async deleteVm(vm: string, expectedModRevision: number): Promise<void> {
    const result = await this.etcd.txn(
      [
        { key: this.vmKey(vm, "spec"), target: "mod", result: "equal", value: expectedModRevision },
        { key: this.vmKey(vm, "placement"), target: "version", result: "equal", value: 0 },
      ],
      [{ type: "delete", key: `${this.vmsPrefix}${vm}/`, prefix: true }],
    );
    if (!result.succeeded) throw conflict(`VM ${vm} changed or is still placed on a node; stop it first`);
  }

  // --- placement (controller only) ---
  async getPlacement(vm: string): Promise<Versioned<Placement> | undefined> {
    return versioned(placementSchema, await this.etcd.get(this.vmKey(vm, "placement")));
  }

  /**
   * Writes (or with `null` removes) a placement if the current one still has `expectedGeneration`
   * (0: none may exist). Returns false when somebody else changed it first. The event that explains the
   * change is written in the same transaction: whoever sees the new placement also finds why.
   */
  async swapPlacement(
    vm: string,
    next: Placement | null,
    expectedGeneration: number,
    event?: Omit<HavenEvent, "time">,
  ): Promise<boolean> {
    const key = this.vmKey(vm, "placement");
    const current = await this.getPlacement(vm);
    if ((current?.value.generation ?? 0) !== expectedGeneration) return false;
    const result = await this.etcd.txn(
      [
        current
          ? { key, target: "mod", result: "equal", value: current.modRevision }
          : { key, target: "version", result: "equal", value: 0 },
        // A placement only makes sense while the VM exists.
        { key: this.vmKey(vm, "spec"), target: "version", result: "greater", value: 0 },
      ],
      [
        next ? { type: "put", key, value: JSON.stringify(next) } : { type: "delete", key },
        ...(event ? [{ type: "put" as const, ...this.eventRecord(event) }] : []),
      ],
    );
    return result.succeeded;
  }

  // --- migration requests (API) and incoming reports (target agents) ---
  /** Records a request unless one is pending already; returns whether it was recorded. */
  async putMigrationRequest(vm: string, request: MigrationRequest, replace = false): Promise<boolean> {
    const key = this.vmKey(vm, "request");
    const result = await this.etcd.txn(
      [
        ...(replace ? [] : [{ key, target: "version" as const, result: "equal" as const, value: 0 }]),
        { key: this.vmKey(vm, "spec"), target: "version", result: "greater", value: 0 },
      ],
      [{ type: "put", key, value: JSON.stringify(request) }],
    );
    return result.succeeded;
  }

  /** Removes the request if it is still the one with this id. */
  async deleteMigrationRequest(vm: string, id: string): Promise<void> {
    const key = this.vmKey(vm, "request");
    const current = await this.etcd.get(key);
    if (!current || decode(migrationRequestSchema, current).id !== id) return;
    await this.etcd.txn(
      [{ key, target: "mod", result: "equal", value: current.modRevision }],
      [{ type: "delete", key }],
    );
  }

  async putIncoming(vm: string, incoming: Incoming, lease: string): Promise<void> {
    await this.etcd.put(this.vmKey(vm, "incoming"), JSON.stringify(incoming), { lease });
  }

  async deleteIncoming(vm: string): Promise<void> {
    await this.etcd.delete(this.vmKey(vm, "incoming"));
  }

  // --- actions on running guests (API writes, the running node's agent does them) ---
  /** Records the action while the placement is still at `placementRevision`; false when it moved on. */
  async putAction(vm: string, action: VmAction, placementRevision: number): Promise<boolean> {
    const result = await this.etcd.txn(
      [{ key: this.vmKey(vm, "placement"), target: "mod", result: "equal", value: placementRevision }],
      [{ type: "put", key: this.vmKey(vm, "action"), value: JSON.stringify(action) }],
    );
    return result.succeeded;
  }

  async getAction(vm: string): Promise<VmAction | undefined> {
    const kv = await this.etcd.get(this.vmKey(vm, "action"));
    return kv ? tryDecode(vmActionSchema, kv) : undefined;
  }

  /** Removes the action if it is still the one with this id. */
  async deleteAction(vm: string, id: string): Promise<void> {
    const key = this.vmKey(vm, "action");
    const current = await this.etcd.get(key);
    if (!current || tryDecode(vmActionSchema, current)?.id !== id) return;
    await this.etcd.txn(
      [{ key, target: "mod", result: "equal", value: current.modRevision }],
      [{ type: "delete", key }],
    );
  }

  // --- cluster configuration (API) ---
  get configPrefix() {
    return `${this.prefix}config/`;
  }
  get migrationDefaultsKey() {
    return `${this.prefix}config/migration`;
  }
  get maintenancePrefix() {
    return `${this.prefix}config/maintenance/`;
  }
  get shutdownPolicyKey() {
    return `${this.prefix}config/shutdown-policy`;
  }
  get frozenPrefix() {
    return `${this.prefix}config/frozen/`;
  }

  /** Maintenance and freeze flags, defaults and rules from a raw copy of `config/` (the controller watches it). */
  parseConfig(config: ReadonlyMap<string, string>): {
    maintenance: Set<string>;
    frozen: Set<string>;
    migrationDefaults: MigrationDefaults;
    rules: PlacementRules;
  } {
    const maintenance = new Set<string>();
    const frozen = new Set<string>();
    const constraints: Constraint[] = [];
    const nodeAttributes = new Map<string, Record<string, string>>();
    const store = ConstraintStore.of(this);
    for (const [key, value] of config) {
      if (key.startsWith(this.maintenancePrefix)) maintenance.add(key.slice(this.maintenancePrefix.length));
      if (key.startsWith(this.frozenPrefix)) frozen.add(key.slice(this.frozenPrefix.length));
      // A malformed entry is left out rather than stopping every placement decision.
      if (key.startsWith(store.constraintsPrefix)) {
        const parsed = storedConstraintSchema.safeParse(JSON.parse(value));
        if (parsed.success) constraints.push(schedulerConstraint(parsed.data));
      }
      if (key.startsWith(store.nodeAttributesPrefix)) {
        const parsed = storedNodeAttributesSchema.safeParse(JSON.parse(value));
        if (parsed.success) nodeAttributes.set(parsed.data.node, parsed.data.attributes);
      }
    }
    const stored = config.get(this.migrationDefaultsKey);
    const parsed = stored ? migrationDefaultsSchema.safeParse(JSON.parse(stored)) : undefined;
    const strategy = config.get(store.placementStrategyKey);
    const placement = strategy ? storedPlacementStrategySchema.safeParse(JSON.parse(strategy)) : undefined;
    // Constraints in id order: where several scores of one guest add up, they add up in this order.
    constraints.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return {
      maintenance,
      frozen,
      migrationDefaults: parsed?.success ? parsed.data : DEFAULT_MIGRATION,
      rules: {
        constraints,
        nodeAttributes,
        ...(placement?.success && { placementStrategy: placement.data.strategy }),
      },
    };
  }

  async getMigrationDefaults(): Promise<MigrationDefaults> {
    const stored = versioned(migrationDefaultsSchema, await this.etcd.get(this.migrationDefaultsKey));
    return stored?.value ?? DEFAULT_MIGRATION;
  }

  async putMigrationDefaults(defaults: MigrationDefaults): Promise<void> {
    await this.etcd.put(this.migrationDefaultsKey, JSON.stringify(defaults));
  }

  /** Nodes in maintenance, with since when and why: they take no guests, and theirs are moved away. */
  async listMaintenance(): Promise<Map<string, Maintenance>> {
    const { kvs } = await this.etcd.list(this.maintenancePrefix);
    return new Map(
      kvs.map((kv) => [kv.key.slice(this.maintenancePrefix.length), decode(maintenanceSchema, kv)]),
    );
  }

  async setMaintenance(node: string, maintenance: Maintenance | null): Promise<void> {
    const key = `${this.maintenancePrefix}${node}`;
    if (maintenance) await this.etcd.put(key, JSON.stringify(maintenance));
    else await this.etcd.delete(key);
  }

  async getShutdownPolicy(): Promise<ShutdownPolicy> {
    return (
      versioned(shutdownPolicySchema, await this.etcd.get(this.shutdownPolicyKey))?.value ??
      DEFAULT_SHUTDOWN_POLICY
    );
  }

  async putShutdownPolicy(policy: ShutdownPolicy): Promise<void> {
    await this.etcd.put(this.shutdownPolicyKey, JSON.stringify(policy));
  }

  /** Nodes that shut down with the freeze policy, with since when and why. */
  async listFrozen(): Promise<Map<string, FrozenNode>> {
    const { kvs } = await this.etcd.list(this.frozenPrefix);
    return new Map(kvs.map((kv) => [kv.key.slice(this.frozenPrefix.length), decode(frozenNodeSchema, kv)]));
  }

  async setFrozen(node: string, frozen: FrozenNode | null): Promise<void> {
    const key = `${this.frozenPrefix}${node}`;
    if (frozen) await this.etcd.put(key, JSON.stringify(frozen));
    else await this.etcd.delete(key);
  }

  // --- status (agents, under their node lease) ---
  /**
   * Writes the status only while the VM's placement names the reporting node, in one transaction guarded by
   * the placement's revision: a node that comes back after its guest was moved elsewhere cannot overwrite the
   * status of the guest's new node with its stale view. Returns whether it was written.
   */
  async putStatus(vm: string, status: VmStatus, lease: string): Promise<boolean> {
    const placement = await this.etcd.get(this.vmKey(vm, "placement"));
    if (!placement || decode(placementSchema, placement).node !== status.node) return false;
    const result = await this.etcd.txn(
      [{ key: placement.key, target: "mod", result: "equal", value: placement.modRevision }],
      [{ type: "put", key: this.vmKey(vm, "status"), value: JSON.stringify(status), lease }],
    );
    return result.succeeded;
  }

  async getStatus(vm: string): Promise<VmStatus | undefined> {
    return versioned(vmStatusSchema, await this.etcd.get(this.vmKey(vm, "status")))?.value;
  }

  // --- everything about VMs in one consistent read ---
  async snapshotVms(): Promise<VmMaps> {
    const { kvs } = await this.etcd.list(this.vmsPrefix);
    return this.vmMapsOf(kvs);
  }

  /**
   * Keeps one VmMaps current from a watch of every VM key. `onChange` runs after each snapshot
   * (`events` null: everything may have changed) and after each batch of events.
   */
  watchVms(
    signal: AbortSignal,
    onChange: (vms: VmMaps, events: WatchEvent[] | null) => void,
    onError: (err: unknown, retryInMs: number) => void,
  ): Promise<void> {
    let vms = emptyVmMaps();
    const handlers = {
      onSnapshot: (kvs: KeyValue[]) => {
        vms = this.vmMapsOf(kvs);
        onChange(vms, null);
      },
      onEvents: (events: WatchEvent[]) => {
        for (const event of events) this.applyVmKey(vms, event.kv, event.type === "delete");
        onChange(vms, events);
      },
      onError,
    };
    return runInformer(this.etcd, this.vmsPrefix, handlers, signal, {
      sleep: (ms, wake) => this.clock.sleep(ms, wake),
    });
  }

  vmMapsOf(kvs: KeyValue[]): VmMaps {
    const maps = emptyVmMaps();
    for (const kv of kvs) this.applyVmKey(maps, kv);
    return maps;
  }

  /** Updates maps of specs/placements/statuses from one key (put) or its absence (delete). */
  applyVmKey(maps: VmMaps, kv: KeyValue, deleted = false): void {
    const parsed = this.parseVmKey(kv.key);
    if (!parsed) return;
    const { vm, kind } = parsed;
    if (kind === "spec") setOrDelete(maps.specs, vm, deleted ? undefined : decode(vmSpecSchema, kv));
    if (kind === "placement")
      setOrDelete(maps.placements, vm, deleted ? undefined : decode(placementSchema, kv));
    if (kind === "status") setOrDelete(maps.statuses, vm, deleted ? undefined : decode(vmStatusSchema, kv));
    // Requests and incoming reports are transient: a malformed one is ignored rather than stopping every
    // watcher of the VM keys (the controller ends a migration without a valid report by its timeout).
    if (kind === "request")
      setOrDelete(maps.requests, vm, deleted ? undefined : tryDecode(migrationRequestSchema, kv));
    if (kind === "incoming")
      setOrDelete(maps.incomings, vm, deleted ? undefined : tryDecode(incomingSchema, kv));
    if (kind === "action") setOrDelete(maps.actions, vm, deleted ? undefined : tryDecode(vmActionSchema, kv));
  }

  // --- fencing (controller and API) ---
  /** Records a storage fence; a later fence of the same VM on the same node replaces it (newer generation). */
  async putStorageFence(fence: StorageFence): Promise<void> {
    await this.etcd.put(this.storageFenceKey(fence), JSON.stringify(fence));
  }

  async listStorageFences(): Promise<StorageFence[]> {
    const { kvs } = await this.etcd.list(this.storageFencesPrefix);
    return kvs.map((kv) => decode(storageFenceSchema, kv));
  }

  async deleteStorageFence(fence: StorageFence): Promise<void> {
    await this.etcd.delete(this.storageFenceKey(fence));
  }

  /** Per node: the command that powers it off. Not under a lease: it must outlive the node it fences. */
  async putFenceAgent(node: string, agent: FenceAgent): Promise<void> {
    await this.etcd.put(`${this.fenceAgentsPrefix}${node}`, JSON.stringify(agent));
  }

  async getFenceAgent(node: string): Promise<FenceAgent | undefined> {
    return versioned(fenceAgentSchema, await this.etcd.get(`${this.fenceAgentsPrefix}${node}`))?.value;
  }

  async listFenceAgents(): Promise<Map<string, FenceAgent>> {
    const { kvs } = await this.etcd.list(this.fenceAgentsPrefix);
    return new Map(
      kvs.map((kv) => [kv.key.slice(this.fenceAgentsPrefix.length), decode(fenceAgentSchema, kv)]),
    );
  }

  /** Returns whether there was one. */
  async deleteFenceAgent(node: string): Promise<boolean> {
    return (await this.etcd.delete(`${this.fenceAgentsPrefix}${node}`)) > 0;
  }

  // --- removed nodes ---
  async getRemovedNode(node: string): Promise<RemovedNode | undefined> {
    return versioned(removedNodeSchema, await this.etcd.get(`${this.removedNodesPrefix}${node}`))?.value;
  }

  async setRemovedNode(node: string, removed: RemovedNode | null): Promise<void> {
    const key = `${this.removedNodesPrefix}${node}`;
    if (removed) await this.etcd.put(key, JSON.stringify(removed));
    else await this.etcd.delete(key);
  }

  // --- join grants ---
  /** Keeps a grant until it is taken or `ttlSeconds` pass (its lease then deletes it). */
  async putJoinGrant(id: string, grant: JoinGrant, ttlSeconds: number): Promise<void> {
    const lease = await this.etcd.grantLease(ttlSeconds);
    const key = `${this.joinGrantsPrefix}${id}`;
    const { succeeded } = await this.etcd.txn(
      [{ key, target: "version", result: "equal", value: 0 }],
      [{ type: "put", key, value: JSON.stringify(grant), lease }],
    );
    if (!succeeded) throw conflict(`join grant ${id} exists already`);
  }

  async getJoinGrant(id: string): Promise<Versioned<JoinGrant> | undefined> {
    return versioned(joinGrantSchema, await this.etcd.get(`${this.joinGrantsPrefix}${id}`));
  }

  async listJoinGrants(): Promise<Array<{ id: string; grant: JoinGrant }>> {
    const { kvs } = await this.etcd.list(this.joinGrantsPrefix);
    return kvs.map((kv) => ({
      id: kv.key.slice(this.joinGrantsPrefix.length),
      grant: decode(joinGrantSchema, kv),
    }));
  }

  async deleteJoinGrant(id: string): Promise<void> {
    await this.etcd.delete(`${this.joinGrantsPrefix}${id}`);
  }

  /** Deletes the grant if it is still the one read at `modRevision`: true for exactly one taker. */
  async takeJoinGrant(id: string, modRevision: number): Promise<boolean> {
    const key = `${this.joinGrantsPrefix}${id}`;
    const { succeeded } = await this.etcd.txn(
      [{ key, target: "mod", result: "equal", value: modRevision }],
      [{ type: "delete", key }],
    );
    return succeeded;
  }

  // --- events ---
  async appendEvent(event: Omit<HavenEvent, "time">, now = new Date(this.clock.now())): Promise<void> {
    const { key, value } = this.eventRecord(event, now);
    await this.etcd.put(key, value);
  }

  private eventRecord(event: Omit<HavenEvent, "time">, now = new Date(this.clock.now())) {
    // Keys sort by time; the random tail keeps two events of the same millisecond apart.
    const key = `${this.eventsPrefix}${now.getTime().toString().padStart(15, "0")}-${randomBytes(4).toString("hex")}`;
    return { key, value: JSON.stringify({ time: now.toISOString(), ...event }) };
  }

  /** Events in the order they happened, each with its id (its key, which sorts by time); `after` skips older ones. */
  async listEvents(after?: string): Promise<Array<HavenEvent & { id: string }>> {
    const { kvs } = await this.etcd.list(this.eventsPrefix);
    return kvs
      .map((kv) => ({ id: kv.key.slice(this.eventsPrefix.length), ...decode(eventSchema, kv) }))
      .filter((event) => after === undefined || event.id > after);
  }
}

/** A stored constraint without its origin, as the scheduler takes it. */
function schedulerConstraint(stored: StoredConstraint): Constraint {
  const { source: _source, importedAt: _importedAt, ...constraint } = stored;
  return constraint;
}

function setOrDelete<T>(map: Map<string, T>, key: string, value: T | undefined): void {
  if (value === undefined) map.delete(key);
  else map.set(key, value);
}

function decode<T>(schema: z.ZodType<T>, kv: KeyValue): T {
  const parsed = schema.safeParse(JSON.parse(kv.value));
  if (!parsed.success) throw new Error(`malformed value at ${kv.key}: ${parsed.error.message}`);
  return parsed.data;
}

function tryDecode<T>(schema: z.ZodType<T>, kv: KeyValue): T | undefined {
  const parsed = schema.safeParse(JSON.parse(kv.value));
  return parsed.success ? parsed.data : undefined;
}

function versioned<T>(schema: z.ZodType<T>, kv: KeyValue | undefined): Versioned<T> | undefined {
  return kv ? { value: decode(schema, kv), modRevision: kv.modRevision } : undefined;
}
