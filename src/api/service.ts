// What the API does, independent of HTTP: reads that combine etcd state into views, and writes that
// validate, keep invariants and roll back half-done work.
import { randomBytes } from "node:crypto";
import type { z } from "zod";
import { access, constants } from "node:fs/promises";
import { join } from "node:path";
import type { ClusterStore } from "../adapters/etcd/cluster-store.js";
import type { ImageInfo, StorageBackend } from "../adapters/storage/port.js";
import { CANARY_SLOT_BYTES, verifyCanaryImage, type CanaryReport } from "../core/canary.js";
import { conflict, inputError, notFound, unavailable } from "../core/errors.js";
import {
  migrationDefaultsSchema,
  migrationSettingsOf,
  nodeNameSchema,
  viewVm,
  type Maintenance,
  type FrozenNode,
  type ShutdownPolicy,
  type MigrationDefaults,
  type FenceAgent,
  type HavenEvent,
  type NodeInfo,
  type StorageFence,
  type VmSpec,
  type VmAction,
  type VmView,
} from "../core/model.js";
import { ownedImages, ownerOf } from "../core/hardware.js";
import { nodeLoads } from "../core/placement.js";
import { explainPlacement } from "../core/placement-rules.js";
import { orderRefusal } from "../core/scheduler/prepare.js";
import {
  DEFAULT_PLACEMENT_STRATEGY,
  type OrderConstraint,
  type PlacementStrategy,
} from "../core/scheduler/types.js";
import { formatRoles, hasRole, rolesOf, type NodeRole } from "../core/roles.js";
import { nodesByVersion } from "../core/versions.js";
import { isoNow } from "../lib/clock.js";
import {
  ConstraintStore,
  describeConstraint,
  type StoredConstraint,
  type StoredPlacementStrategy,
} from "../adapters/etcd/constraint-store.js";
import type { QemuCapabilities } from "../adapters/qemu/capabilities.js";
import {
  createVmRequest,
  type ManualConstraint,
  type MigrateRequest,
  type UpdateVmRequest,
} from "./requests.js";
import { buildVm, changeHardware, type VmBuilderDeps } from "./vm-builder.js";

/** A create request as a caller writes it: defaults may be left out. */
export type CreateVmInput = z.input<typeof createVmRequest>;

const MB = 1024 * 1024;
/** How long a reboot, reset or disk growth may take its node before the API gives up waiting. */
const ACTION_TIMEOUT_MS = 60_000;

export interface NodeView {
  name: string;
  state: "online";
  api: string;
  accel: string;
  accelReason: string;
  capacity: NodeInfo["capacity"];
  used: { vcpus: number; memoryMb: number };
  storage: NodeInfo["storage"];
  /** Bridges guests' network cards can plug into on this node. */
  bridges: string[];
  vms: string[];
  attributes: Record<string, string>;
  /** The Haven version its havend runs. */
  version: string;
  /** compute (runs guests), storage (Ceph OSDs), monitor (Ceph monitor, etcd voter). */
  roles: readonly NodeRole[];
  /** In maintenance: takes no guests, and its guests are moved away. */
  maintenance: Maintenance | null;
}

export interface PlacementStrategyView {
  /** The strategy that applies. */
  strategy: PlacementStrategy;
  /** Whether it was set (by a user or an import) rather than Haven's default. */
  set: boolean;
  source?: { file: string; line: number };
}

function placementStrategyView(stored: StoredPlacementStrategy | undefined): PlacementStrategyView {
  if (!stored) return { strategy: DEFAULT_PLACEMENT_STRATEGY, set: false };
  return { strategy: stored.strategy, set: true, ...(stored.source && { source: stored.source }) };
}

export class HavenService {
  constructor(
    private readonly store: ClusterStore,
    private readonly storage: StorageBackend,
    private readonly cluster: {
      name: string;
      guestDir: string;
      /** Ceph's own view, when the cluster's storage is Ceph. */
      cephStatus?: () => Promise<unknown>;
      /** The backend for another pool than the default one (RBD only); rejects with NOT_FOUND for a missing pool. */
      storageForPool?: (pool: string) => Promise<StorageBackend>;
      /** What this node's QEMU offers (machine types, CPU models, UEFI). */
      capabilities: () => Promise<QemuCapabilities>;
      /** Writes a cloud-init seed image to the storage. */
      writeSeed: VmBuilderDeps["writeSeed"];
      /** The guest network's DHCP leases (MAC → address), where Haven runs its DHCP server. */
      dhcpLeases?: () => Promise<Map<string, string>>;
    },
    /** Ids of migration requests (the simulator counts them). Times come from the store's clock. */
    private readonly newRequestId: () => string = () => randomBytes(6).toString("hex"),
  ) {
    this.builder = {
      store,
      storageFor: (pool) => this.storageFor(pool),
      guestDir: cluster.guestDir,
      capabilities: cluster.capabilities,
      writeSeed: cluster.writeSeed,
      random: (bytes) => randomBytes(bytes),
    };
  }

  private readonly builder: VmBuilderDeps;

  // --- reads ---
  async status() {
    // Node names only: listNodes() would read every VM a second time to compute loads.
    const [nodes, vms, leader, storage] = await Promise.all([
      this.store.listNodes(),
      this.listVms(),
      this.store.etcd.get(this.store.controllerKey),
      this.storageHealth(),
    ]);
    const byState: Record<string, number> = {};
    for (const vm of vms) byState[vm.state] = (byState[vm.state] ?? 0) + 1;
    return {
      cluster: this.cluster.name,
      controller: leader?.value ?? null,
      storage,
      nodes: { online: nodes.length, names: nodes.map((node) => node.name), versions: nodesByVersion(nodes) },
      vms: { total: vms.length, byState },
    };
  }

  private async storageHealth() {
    const health = await this.storage.health();
    const usage = health.ok ? await this.storage.usage().catch(() => null) : null;
    return { kind: this.storage.kind, ...health, usage };
  }

  async cephStatus(): Promise<unknown> {
    if (!this.cluster.cephStatus)
      throw inputError(`this cluster's storage is ${this.storage.kind}, not Ceph`);
    return this.cluster.cephStatus();
  }

  async listNodes(): Promise<NodeView[]> {
    const [nodes, vms, maintenance] = await Promise.all([
      this.store.listNodes(),
      this.store.snapshotVms(),
      this.store.listMaintenance(),
    ]);
    const loads = nodeLoads(nodes, vms.specs, vms.placements);
    return loads.map(({ node, usedVcpus, usedMemoryMb }) => ({
      name: node.name,
      state: "online",
      api: node.api,
      accel: node.accel,
      accelReason: node.accelReason,
      capacity: node.capacity,
      used: { vcpus: usedVcpus, memoryMb: usedMemoryMb },
      storage: node.storage,
      bridges: node.bridges ?? [],
      vms: [...vms.placements]
        .filter(([, p]) => p.node === node.name)
        .map(([vm]) => vm)
        .sort(),
      attributes: node.attributes,
      version: node.version,
      roles: rolesOf(node),
      maintenance: maintenance.get(node.name) ?? null,
    }));
  }

  async listVms(): Promise<VmView[]> {
    const [{ specs, placements, statuses }, leases] = await Promise.all([
      this.store.snapshotVms(),
      this.dhcpLeases(),
    ]);
    return [...specs.values()]
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((spec) => withLeases(viewVm(spec, placements.get(spec.name), statuses.get(spec.name)), leases));
  }

  async showVm(name: string): Promise<VmView & { spec: VmSpec }> {
    const spec = await this.requireSpec(name);
    const [placement, status, leases] = await Promise.all([
      this.store.getPlacement(name),
      this.store.getStatus(name),
      this.dhcpLeases(),
    ]);
    return { ...withLeases(viewVm(spec.value, placement?.value, status), leases), spec: spec.value };
  }

  private dhcpLeases(): Promise<Map<string, string>> {
    return this.cluster.dhcpLeases?.() ?? Promise.resolve(new Map<string, string>());
  }

  async events(limit: number, after?: string): Promise<Array<HavenEvent & { id: string }>> {
    const events = await this.store.listEvents(after);
    return events.slice(-limit);
  }

  async verifyCanary(name: string): Promise<CanaryReport & { vm: string; disk: string }> {
    const spec = (await this.requireSpec(name)).value;
    const disk = spec.disks[0]?.image;
    if (!spec.canary || !disk) throw inputError(`VM ${name} is not a canary guest`);
    // Only as far as anything was written: a canary's records start at the front, and a large thin disk
    // would otherwise be read (into memory) whole.
    const [info, dataEnd] = await Promise.all([this.storage.info(disk), this.storage.dataEnd(disk)]);
    const length = Math.min(info.sizeBytes, Math.ceil(dataEnd / CANARY_SLOT_BYTES) * CANARY_SLOT_BYTES);
    const bytes = await this.storage.read(disk, 0, length);
    return { vm: name, disk, ...verifyCanaryImage(bytes) };
  }

  // --- VM writes ---
  async createVm(input: CreateVmInput): Promise<VmView> {
    const spec = await buildVm(this.builder, createVmRequest.parse(input));
    await this.store.appendEvent({ type: "created", vm: spec.name, reason: "created by user" });
    return viewVm(spec, undefined, undefined);
  }

  async setDesiredState(name: string, state: "started" | "stopped"): Promise<VmView> {
    const { value: spec, modRevision } = await this.requireSpec(name);
    if (spec.state !== state) {
      await this.store.updateSpec({ ...spec, state }, modRevision);
      await this.store.appendEvent({
        type: state === "started" ? "start-requested" : "stop-requested",
        vm: name,
        reason: "by user",
      });
    }
    return (await this.showVm(name)) satisfies VmView;
  }

  /** Changes a VM's policy (applied from the controller's next decision) and, while it is stopped, its hardware. */
  async updateVm(name: string, request: UpdateVmRequest): Promise<VmView & { spec: VmSpec }> {
    const { value: spec, modRevision } = await this.requireSpec(name);
    const { memoryMb, vcpus, disks, nics, cdrom, cloudInit, ...policy } = request;
    const hardware = definedOnly({ memoryMb, vcpus, disks, nics, cdrom, cloudInit });
    let next: VmSpec = { ...spec, ...definedOnly(policy) };
    if (Object.keys(hardware).length > 0) {
      if (spec.state !== "stopped" || (await this.store.getPlacement(name)))
        throw conflict(
          `VM ${name} must be stopped to change its hardware or cloud-init ('haven vm stop ${name}')`,
        );
      next = await changeHardware(this.builder, next, hardware);
    }
    await this.store.updateSpec(next, modRevision);
    const changes = Object.entries(definedOnly(request)).map(
      ([key, value]) => `${key}=${describeValue(value)}`,
    );
    await this.store.appendEvent({ type: "changed", vm: name, reason: `by user: ${changes.join(", ")}` });
    return this.showVm(name);
  }

  async deleteVm(name: string): Promise<void> {
    const { value: spec, modRevision } = await this.requireSpec(name);
    if (spec.state !== "stopped") throw conflict(`VM ${name} is ${spec.state}; stop it before deleting`);
    if (await this.store.getPlacement(name))
      throw conflict(`VM ${name} is still stopping; try again in a moment`);
    await this.requireImagesClosed(name, spec);
    await this.store.deleteVm(name, modRevision);
    for (const { image, pool } of ownedImages(spec)) {
      await (await this.storageFor(pool)).delete(image).catch((err: unknown) => {
        if (!(err instanceof Error && "code" in err && err.code === "NOT_FOUND")) throw err;
      });
    }
    await this.store.appendEvent({ type: "deleted", vm: name, reason: "deleted by user" });
  }

  /**
   * Checked before a VM record goes, so that a delete refused by storage cannot leave disks without their VM.
   * A QEMU that was killed keeps its hold on a disk until Ceph times the client out.
   */
  private async requireImagesClosed(name: string, spec: VmSpec): Promise<void> {
    for (const { image, pool } of ownedImages(spec)) {
      const watchers = await (await this.storageFor(pool)).watchers(image).catch(() => []);
      if (watchers.length > 0)
        throw conflict(
          `VM ${name} is stopped but its disk ${image} is still open by ${watchers.join(", ")} ` +
            "(a QEMU that was killed holds a disk for up to 30 s); try again shortly",
        );
    }
  }

  /** `haven vm explain`: how placement weighs every online node for this VM, with the constraints' scores. */
  async explainVm(name: string) {
    const { value: spec } = await this.requireSpec(name);
    const [nodes, vms, config] = await Promise.all([
      this.store.listNodes(),
      this.store.snapshotVms(),
      this.store.etcd.list(this.store.configPrefix),
    ]);
    const { maintenance, rules } = this.store.parseConfig(
      new Map(config.kvs.map((kv) => [kv.key, kv.value])),
    );
    const view = {
      nodes,
      specs: vms.specs,
      statuses: vms.statuses,
      maintenance,
      rules,
      now: this.store.clock.now(),
    };
    return {
      ...explainPlacement(spec, view, vms.placements),
      placedOn: vms.placements.get(name)?.node ?? null,
    };
  }

  // --- placement constraints (also written by `haven import crm`) ---
  listConstraints(): Promise<StoredConstraint[]> {
    return ConstraintStore.of(this.store).listConstraints();
  }

  /** Adds a location, rule, colocation or order constraint; the controller applies it from its next round. */
  async addConstraint(constraint: ManualConstraint): Promise<StoredConstraint> {
    const constraints = ConstraintStore.of(this.store);
    if (await constraints.getConstraint(constraint.id))
      throw conflict(
        `constraint ${constraint.id} exists; delete it first ('haven constraint delete ${constraint.id}')`,
      );
    const vms = constrainedVms(constraint);
    for (const vm of vms) await this.requireSpec(vm);
    if (constraint.type === "order") await this.refuseOrderCycle(constraint, constraints);
    const stored: StoredConstraint = { ...constraint, importedAt: isoNow(this.store.clock) };
    await constraints.putConstraint(stored);
    await this.store.appendEvent({
      type: "constraint-added",
      vm: vms.at(-1),
      reason: `by user: ${describeConstraint(stored)}`,
    });
    return stored;
  }

  /** An order that closes a cycle could never hold (each guest would wait for the other). */
  private async refuseOrderCycle(order: OrderConstraint, constraints: ConstraintStore): Promise<void> {
    const recorded = (await constraints.listConstraints()).filter((c) => c.type === "order");
    const refusal = orderRefusal(order, recorded);
    if (refusal) throw inputError(refusal);
  }

  async deleteConstraint(id: string): Promise<void> {
    const constraints = ConstraintStore.of(this.store);
    const existing = await constraints.getConstraint(id);
    if (!existing) throw notFound(`constraint ${id} does not exist`);
    await constraints.deleteConstraint(id);
    await this.store.appendEvent({
      type: "constraint-deleted",
      reason: `by user: ${describeConstraint(existing)}`,
    });
  }

  /** The cluster's placement-strategy: what is set, and what applies. */
  async placementStrategy(): Promise<PlacementStrategyView> {
    const stored = await ConstraintStore.of(this.store).getPlacementStrategy();
    return placementStrategyView(stored);
  }

  /** What a deliberate stop of a node does with its guests (see ShutdownPolicy), and which nodes are frozen. */
  async shutdownPolicy(): Promise<{ policy: ShutdownPolicy; frozen: Array<{ node: string } & FrozenNode> }> {
    const [policy, frozen] = await Promise.all([this.store.getShutdownPolicy(), this.store.listFrozen()]);
    return { policy, frozen: [...frozen].map(([node, mark]) => ({ node, ...mark })) };
  }

  async setShutdownPolicy(policy: ShutdownPolicy): Promise<{ policy: ShutdownPolicy }> {
    await this.store.putShutdownPolicy(policy);
    await this.store.appendEvent({ type: "shutdown-policy-changed", reason: `by user: ${policy}` });
    return { policy };
  }

  /** Sets the placement-strategy (null: back to Haven's default); the controller applies it from its next round. */
  async setPlacementStrategy(strategy: PlacementStrategy | null): Promise<PlacementStrategyView> {
    const constraints = ConstraintStore.of(this.store);
    const stored = strategy ? { strategy, importedAt: isoNow(this.store.clock) } : undefined;
    if (stored) await constraints.putPlacementStrategy(stored);
    else await constraints.deletePlacementStrategy();
    const view = placementStrategyView(stored);
    await this.store.appendEvent({
      type: "placement-strategy-changed",
      reason: `by user: ${view.strategy}${view.set ? "" : " (Haven's default)"}`,
    });
    return view;
  }

  // --- migration and maintenance ---
  /**
   * Asks the controller to move a running VM (live, or cold when it may not migrate live). The checks here
   * answer at once; the controller checks again when it begins, and records a refusal as an event.
   */
  async requestMigration(name: string, request: MigrateRequest): Promise<{ id: string; vm: string }> {
    const { value: spec } = await this.requireSpec(name);
    const [placement, status, nodes, maintenance, defaults] = await Promise.all([
      this.store.getPlacement(name),
      this.store.getStatus(name),
      this.store.listNodes(),
      this.store.listMaintenance(),
      this.store.getMigrationDefaults(),
    ]);
    if (
      spec.state !== "started" ||
      !placement ||
      status?.state !== "running" ||
      status.node !== placement.value.node
    )
      throw conflict(`VM ${name} is not running${status ? ` (it is ${status.state})` : ""}`);
    if (placement.value.migration)
      throw conflict(
        `VM ${name} is already moving to ${placement.value.migration.to}; cancel it with 'haven vm migrate --cancel ${name}'`,
      );
    if (request.to !== undefined) {
      nodeName(request.to);
      if (request.to === placement.value.node) throw inputError(`VM ${name} already runs on ${request.to}`);
      const target = nodes.find((node) => node.name === request.to);
      if (!target) throw conflict(`node ${request.to} is not online`);
      if (!hasRole(target, "compute"))
        throw conflict(`node ${request.to} is not a compute node (roles ${formatRoles(rolesOf(target))})`);
      if (maintenance.has(request.to)) throw conflict(`node ${request.to} is in maintenance`);
    }
    const settings = migrationSettingsOf(defaults);
    const id = this.newRequestId();
    const recorded = await this.store.putMigrationRequest(name, {
      id,
      to: request.to,
      settings: { ...settings, ...definedOnly(request.settings) },
      cancel: false,
      reason: "by user",
      time: isoNow(this.store.clock),
    });
    if (!recorded) throw conflict(`a migration request for VM ${name} is already pending`);
    await this.store.appendEvent({
      type: "migration-requested",
      vm: name,
      reason: `by user, to ${request.to ?? "a node the controller picks"} (request ${id})`,
    });
    return { id, vm: name };
  }

  async cancelMigration(name: string): Promise<{ id: string; vm: string }> {
    const { value: spec } = await this.requireSpec(name);
    const migration = (await this.store.getPlacement(name))?.value.migration;
    if (!migration) throw conflict(`VM ${spec.name} is not moving`);
    const request = {
      id: migration.id,
      settings: migration.settings,
      cancel: true,
      reason: "cancelled by user",
      time: isoNow(this.store.clock),
    };
    await this.store.putMigrationRequest(name, request, true);
    await this.store.appendEvent({ type: "migration-cancel-requested", vm: name, reason: "by user" });
    return { id: migration.id, vm: name };
  }

  migrationDefaults(): Promise<MigrationDefaults> {
    return this.store.getMigrationDefaults();
  }

  async setMigrationDefaults(change: Partial<MigrationDefaults>): Promise<MigrationDefaults> {
    const next = migrationDefaultsSchema.parse({
      ...(await this.store.getMigrationDefaults()),
      ...definedOnly(change),
    });
    await this.store.putMigrationDefaults(next);
    const changes = Object.entries(definedOnly(change)).map(([key, value]) => `${key}=${String(value)}`);
    await this.store.appendEvent({
      type: "migration-defaults-changed",
      reason: `by user: ${changes.join(", ")}`,
    });
    return next;
  }

  /** Maintenance on: the node takes no guests and the controller moves its guests away; off: it takes guests again. */
  async setMaintenance(node: string, on: boolean): Promise<NodeView | { name: string; maintenance: null }> {
    nodeName(node);
    const current = (await this.store.listMaintenance()).get(node);
    if (on && !current) {
      if (!(await this.store.listNodes()).some((n) => n.name === node))
        throw notFound(`node ${node} is not online`);
      await this.store.setMaintenance(node, { since: isoNow(this.store.clock), reason: "by user" });
      await this.store.appendEvent({
        type: "maintenance-on",
        node,
        reason: "by user: its guests move away, and it takes no new ones",
      });
    }
    if (!on && current) {
      await this.store.setMaintenance(node, null);
      await this.store.appendEvent({
        type: "maintenance-off",
        node,
        reason: "by user: it takes guests again",
      });
    }
    return (await this.listNodes()).find((n) => n.name === node) ?? { name: node, maintenance: null };
  }

  // --- fencing ---
  /** The fence agent of each node that has one, and the storage fences still in place. */
  async fencing(): Promise<{ agents: Array<FenceAgent & { node: string }>; storageFences: StorageFence[] }> {
    const [agents, storageFences] = await Promise.all([
      this.store.listFenceAgents(),
      this.store.listStorageFences(),
    ]);
    return { agents: [...agents].map(([node, agent]) => ({ node, ...agent })), storageFences };
  }

  async setFenceAgent(node: string, agent: FenceAgent): Promise<FenceAgent & { node: string }> {
    nodeName(node);
    // The controller may run on any node; this at least catches a typo or a missing package here.
    if (!(await findExecutable(agent.command[0]!)))
      throw inputError(
        `fence agent command ${agent.command[0]} is not an executable file or on PATH on this node; install it on every node`,
      );
    await this.store.putFenceAgent(node, agent);
    await this.store.appendEvent({
      type: "fence-agent-set",
      node,
      reason: `by user: '${agent.command.join(" ")}', timeout ${agent.timeoutSeconds} s`,
    });
    return { node, ...agent };
  }

  async clearFenceAgent(node: string): Promise<void> {
    nodeName(node);
    if (!(await this.store.deleteFenceAgent(node))) throw notFound(`node ${node} has no fence agent`);
    await this.store.appendEvent({ type: "fence-agent-cleared", node, reason: "by user" });
  }

  // --- disks ---
  async listDisks(pool?: string): Promise<ImageInfo[]> {
    return (await this.storageFor(pool)).list();
  }

  async diskInfo(name: string, pool?: string): Promise<ImageInfo> {
    return (await this.storageFor(pool)).info(name);
  }

  async createDisk(name: string, sizeMb: number, pool?: string): Promise<ImageInfo> {
    return (await this.storageFor(pool)).create(name, sizeMb * MB);
  }

  /**
   * Grows or (with allowShrink, unused disks only) shrinks a disk. A disk of a running guest is grown by its
   * QEMU (QMP block_resize), so that the guest sees the new size at once.
   */
  async resizeDisk(name: string, sizeMb: number, allowShrink: boolean, pool?: string): Promise<ImageInfo> {
    const storage = await this.storageFor(pool);
    if (allowShrink) await this.refuseIfUsed(name, "shrink", pool);
    const vmPool = pool === this.defaultPool() ? undefined : pool;
    const owner = ownerOf(await this.store.listSpecs(), name, vmPool);
    const spec = owner === undefined ? undefined : (await this.requireSpec(owner)).value;
    const index = spec?.disks.findIndex((disk) => disk.image === name && disk.pool === vmPool) ?? -1;
    if (spec && index >= 0 && (await this.store.getPlacement(spec.name))) {
      const current = await storage.info(name);
      if (sizeMb * MB < current.sizeBytes)
        throw inputError(
          `disk ${name} of running VM ${spec.name} can only grow (it has ${current.sizeBytes} bytes)`,
        );
      if (sizeMb * MB > current.sizeBytes)
        await this.actOnRunningGuest(spec.name, { type: "resize-disk", disk: index, sizeBytes: sizeMb * MB });
      return storage.info(name);
    }
    return storage.resize(name, sizeMb * MB, { allowShrink });
  }

  /** `vm reboot` (through the guest agent) and `vm reset` (hard), done by the node that runs the guest. */
  async guestAction(name: string, type: "reboot" | "reset"): Promise<HavenEvent> {
    return this.actOnRunningGuest(name, { type });
  }

  /**
   * Records an action for the guest's current QEMU and waits (up to a minute) for its node's agent to report
   * the outcome: the event that names the action. A failure is a conflict that quotes the agent.
   */
  private async actOnRunningGuest(
    name: string,
    what: Pick<VmAction, "type" | "disk" | "sizeBytes">,
  ): Promise<HavenEvent> {
    await this.requireSpec(name);
    const [placement, status] = await Promise.all([
      this.store.getPlacement(name),
      this.store.getStatus(name),
    ]);
    if (!placement || status?.state !== "running" || status.node !== placement.value.node)
      throw conflict(`VM ${name} is not running`);
    const since = `${String(this.store.clock.now() - 1000).padStart(15, "0")}`;
    const action: VmAction = {
      id: this.newRequestId(),
      ...definedOnly(what),
      type: what.type,
      generation: placement.value.generation,
      time: isoNow(this.store.clock),
    };
    if (!(await this.store.putAction(name, action, placement.modRevision)))
      throw conflict(`VM ${name} moved or restarted meanwhile; try again`);
    const tag = `(action ${action.id})`;
    for (let waited = 0; waited < ACTION_TIMEOUT_MS; waited += 250) {
      const outcome = (await this.store.listEvents(since)).find(
        (e) => e.vm === name && e.reason.includes(tag),
      );
      if (outcome?.type === "action-failed") throw conflict(outcome.reason);
      if (outcome) return outcome;
      await this.store.clock.sleep(250);
    }
    await this.store.deleteAction(name, action.id);
    throw unavailable(
      `node ${placement.value.node} did not carry out the ${what.type} of ${name} within a minute`,
    );
  }

  async deleteDisk(name: string, pool?: string): Promise<void> {
    const storage = await this.storageFor(pool);
    await this.refuseIfUsed(name, "delete", pool);
    await storage.delete(name);
  }

  async listSnapshots(image: string, pool?: string) {
    return (await this.storageFor(pool)).listSnapshots(image);
  }

  async createSnapshot(image: string, snapshot: string, pool?: string) {
    return (await this.storageFor(pool)).createSnapshot(image, snapshot);
  }

  async rollbackSnapshot(image: string, snapshot: string, pool?: string): Promise<void> {
    const storage = await this.storageFor(pool);
    await this.refuseIfUsed(image, "roll back", pool);
    await storage.rollbackSnapshot(image, snapshot);
  }

  async deleteSnapshot(image: string, snapshot: string, pool?: string): Promise<void> {
    await (await this.storageFor(pool)).deleteSnapshot(image, snapshot);
  }

  async cloneDisk(image: string, snapshot: string, target: string, pool?: string): Promise<ImageInfo> {
    return (await this.storageFor(pool)).clone(image, snapshot, target);
  }

  private async storageFor(pool: string | undefined): Promise<StorageBackend> {
    if (pool === undefined) return this.storage;
    if (!this.cluster.storageForPool)
      throw inputError(`pools need Ceph RBD storage; this cluster uses ${this.storage.kind}`);
    return this.cluster.storageForPool(pool);
  }

  /** VM disks live in the default pool, so only images there can belong to a VM. */
  private async refuseIfUsed(image: string, what: string, pool?: string): Promise<void> {
    const user = ownerOf(await this.store.listSpecs(), image, pool === this.defaultPool() ? undefined : pool);
    if (user) throw conflict(`cannot ${what} disk ${image}: VM ${user} uses it`);
  }

  private defaultPool(): string | undefined {
    return this.storage.kind === "rbd" ? (this.storage as { pool?: string }).pool : undefined;
  }

  private async requireSpec(name: string) {
    const spec = await this.store.getSpec(name);
    if (!spec) throw notFound(`VM ${name} does not exist`);
    return spec;
  }
}

/** A running guest's cards without addresses from its guest agent get the DHCP server's lease, if any. */
function withLeases(view: VmView, leases: Map<string, string>): VmView {
  if (view.pid === null || leases.size === 0) return view;
  const nics = view.nics.map((nic) => {
    const lease = leases.get(nic.mac);
    return nic.addresses.length === 0 && lease !== undefined ? { ...nic, addresses: [lease] } : nic;
  });
  return { ...view, nics };
}

/** A changed value for the event: lists and objects as JSON, the rest as it is. */
function describeValue(value: unknown): string {
  return typeof value === "object" && value !== null ? JSON.stringify(value) : String(value);
}

/** Drops undefined fields, so that a partial change never overwrites with nothing. */
function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function nodeName(node: string): void {
  const parsed = nodeNameSchema.safeParse(node);
  if (!parsed.success) throw inputError(parsed.error.issues[0]?.message ?? "bad node name");
}

/** Whether `command` runs: an executable path, or a name found on PATH. */
async function findExecutable(command: string): Promise<boolean> {
  const candidates = command.includes("/")
    ? [command]
    : (process.env.PATH ?? "").split(":").map((dir) => join(dir, command));
  for (const candidate of candidates) {
    if (
      await access(candidate, constants.X_OK).then(
        () => true,
        () => false,
      )
    )
      return true;
  }
  return false;
}

/** The VMs a constraint names; the last is the one it places (the dependent, or `then`). */
function constrainedVms(constraint: ManualConstraint): string[] {
  switch (constraint.type) {
    case "colocation":
      return [constraint.withVm, constraint.vm];
    case "order":
      return [constraint.first, constraint.then];
    default:
      return [constraint.vm];
  }
}
