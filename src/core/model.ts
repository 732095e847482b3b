// Haven's data model: what lives in etcd, validated with schemas at every boundary.
import { z } from "zod";

export * from "./names.js";
import {
  cloudInitSchema,
  cpuModelSchema,
  firmwareSchema,
  guestInfoSchema,
  machineTypeSchema,
  nicSchema,
  vmDiskSchema,
  type Nic,
} from "./hardware.js";
import { imageNameSchema, nodeNameSchema, poolNameSchema, vmNameSchema } from "./names.js";
import { rolesSchema } from "./roles.js";

export const MAX_MEMORY_MB = 1024 * 1024;
export const MAX_VCPUS = 256;
/** 64 TiB, the largest disk Haven creates. */
export const MAX_DISK_MB = 64 * 1024 * 1024;

export const memoryMbSchema = z
  .number({ error: "memory must be a number of megabytes" })
  .int("memory must be a whole number of megabytes")
  .min(16, "memory must be at least 16 MB")
  .max(MAX_MEMORY_MB, `memory must be at most ${MAX_MEMORY_MB} MB`);

export const vcpusSchema = z
  .number({ error: "vcpus must be a number" })
  .int("vcpus must be a whole number")
  .min(1, "vcpus must be at least 1")
  .max(MAX_VCPUS, `vcpus must be at most ${MAX_VCPUS}`);

export const diskSizeMbSchema = z
  .number({ error: "disk size must be a number of megabytes" })
  .int("disk size must be a whole number of megabytes")
  .min(1, "disk size must be at least 1 MB")
  .max(MAX_DISK_MB, `disk size must be at most ${MAX_DISK_MB} MB (64 TiB)`);

export const desiredStateSchema = z.enum(["started", "stopped"]);
export type DesiredState = z.infer<typeof desiredStateSchema>;

/** Policy fields a user may change later, without defaults so that a partial update cannot reset the rest. */
export const vmPolicyShape = {
  /** May move live between nodes (Pacemaker's allow-migrate); otherwise a move is stop, move, start. */
  allowMigrate: z.boolean(),
  /** Highly available: when its node fails, the guest is fenced and started on another node. */
  ha: z.boolean(),
  /** How often the controller restarts a crashed guest in place before moving it. */
  restartLimit: z.number().int().min(0).max(100),
  /** After the restart limit on one node, how often the guest is moved to another node before giving up. */
  relocateLimit: z.number().int().min(0).max(100),
  /**
   * Crashes older than this no longer count against the limits: a guest that has run this long since its last
   * restart starts over with a clean record (Pacemaker's failure-timeout). 0 keeps them forever.
   */
  failureTimeoutSeconds: z
    .number()
    .int()
    .min(0)
    .max(365 * 24 * 3600),
  /** When several guests need a node at once (a node failed), higher priority goes first. */
  priority: z.number().int().min(-1_000_000).max(1_000_000),
  /**
   * Added to the score of the node the guest runs on (Pacemaker's resource-stickiness): constraints move a
   * running guest to a better node only when they outweigh it. INFINITY keeps it where it is.
   */
  stickiness: z.number().int().min(-1_000_000).max(1_000_000),
  /** How long a stop waits for the guest to power down (ACPI) before QEMU is told to quit. */
  stopGraceSeconds: z.number().int().min(0).max(3600),
};

export const vmSpecSchema = z.object({
  name: vmNameSchema,
  state: desiredStateSchema,
  memoryMb: memoryMbSchema,
  vcpus: vcpusSchema,
  /** Direct kernel boot (the canary); without a kernel the guest boots from its first disk through firmware. */
  kernel: z.string().min(1).optional(),
  initrd: z.string().min(1).optional(),
  append: z.string().optional(),
  /** How a guest without a kernel boots; absent means bios (SeaBIOS). */
  firmware: firmwareSchema.optional(),
  /** QEMU CPU model; absent on VMs created before it was recorded (they keep QEMU's max, or host on KVM). */
  cpu: cpuModelSchema.optional(),
  /** Versioned machine type; absent on VMs created before it was recorded (q35 of the running QEMU). */
  machine: machineTypeSchema.optional(),
  /** The first disk boots. */
  disks: z.array(vmDiskSchema).max(32, "at most 32 disks"),
  /** A read-only CD-ROM (an installer ISO imported as a disk image). */
  cdrom: z.object({ image: imageNameSchema, pool: poolNameSchema.optional() }).optional(),
  nics: z.array(nicSchema).max(16, "at most 16 network cards").optional(),
  /** A NoCloud seed Haven generates and keeps with the VM on the cluster's storage. */
  cloudInit: cloudInitSchema.optional(),
  /** The canary guest: its disk can be verified with `haven canary verify`. */
  canary: z.boolean(),
  /** Highly available: when its node fails, the guest is fenced and started on another node. */
  ha: z.boolean().default(true),
  /** How often the controller restarts a crashed guest before giving up (state error). */
  restartLimit: z.number().int().min(0).max(100),
  /** After the restart limit on one node, how often the guest is moved to another node before giving up. */
  relocateLimit: z.number().int().min(0).max(100).default(1),
  /**
   * Crashes older than this no longer count against the limits: a guest that has run this long since its last
   * restart starts over with a clean record (Pacemaker's failure-timeout). 0 keeps them forever.
   */
  failureTimeoutSeconds: z
    .number()
    .int()
    .min(0)
    .max(365 * 24 * 3600)
    .default(600),
  /** When several guests need a node at once (a node failed), higher priority goes first. */
  priority: vmPolicyShape.priority.default(0),
  stickiness: vmPolicyShape.stickiness.default(0),
  allowMigrate: vmPolicyShape.allowMigrate.default(true),
  stopGraceSeconds: vmPolicyShape.stopGraceSeconds,
  createdAt: z.string(),
});
export type VmSpec = z.infer<typeof vmSpecSchema>;

export const migrationTransportSchema = z.enum(["tls", "tcp"]);

/** Settings of one migration, given per request or taken from the cluster's defaults. */
export const migrationSettingsSchema = z.object({
  /** TLS with the cluster CA and peer verification; plain TCP only when asked for. */
  transport: migrationTransportSchema,
  /** Longest pause QEMU may plan for the final switch-over. */
  downtimeLimitMs: z.number().int().min(1).max(600_000),
  /** MB/s; 0 = QEMU's default cap (128 MiB/s). */
  maxBandwidthMBps: z.number().int().min(0).max(1_000_000),
  /** A migration still running after this long is cancelled; the guest stays where it was. */
  timeoutSeconds: z
    .number()
    .int()
    .min(1)
    .max(24 * 3600),
});
export type MigrationSettings = z.infer<typeof migrationSettingsSchema>;

/** The cluster's defaults for migrations and how many may run at once (drain). */
export const migrationDefaultsSchema = migrationSettingsSchema.extend({
  maxPerNode: z.number().int().min(1).max(64),
  maxPerCluster: z.number().int().min(1).max(1024),
});
export type MigrationDefaults = z.infer<typeof migrationDefaultsSchema>;
/** The settings of one migration from the cluster's defaults (without the concurrency limits). */
export function migrationSettingsOf(defaults: MigrationDefaults): MigrationSettings {
  const { maxPerNode: _node, maxPerCluster: _cluster, ...settings } = defaults;
  return settings;
}

export const DEFAULT_MIGRATION: MigrationDefaults = {
  transport: "tls",
  downtimeLimitMs: 300,
  maxBandwidthMBps: 0,
  timeoutSeconds: 600,
  maxPerNode: 2,
  maxPerCluster: 4,
};

/** A node in maintenance takes no guests, and the controller moves its guests away (drain). */
export const maintenanceSchema = z.object({ since: z.string(), reason: z.string() });
export type Maintenance = z.infer<typeof maintenanceSchema>;

/**
 * What a deliberate stop of a node (host shutdown or reboot) does with its guests, cluster-wide, as Proxmox's
 * shutdown_policy: `migrate` them away first (the default), stop them and leave them to HA `failover` on
 * other nodes, or stop them and `freeze` them on the node, to start there again when it is back.
 */
export const SHUTDOWN_POLICIES = ["migrate", "failover", "freeze"] as const;
export const shutdownPolicySchema = z.enum(SHUTDOWN_POLICIES);
export type ShutdownPolicy = z.infer<typeof shutdownPolicySchema>;
export const DEFAULT_SHUTDOWN_POLICY: ShutdownPolicy = "migrate";

/** A node that shut down with the freeze policy: its guests wait for it instead of being recovered. */
export const frozenNodeSchema = z.object({ since: z.string(), reason: z.string() });
export type FrozenNode = z.infer<typeof frozenNodeSchema>;

/**
 * A node an administrator removed (`haven node remove`): while it runs it moves its guests away and stops, and
 * its havend does not register again until the name joins anew.
 */
export const removedNodeSchema = z.object({ since: z.string(), by: z.string() });
export type RemovedNode = z.infer<typeof removedNodeSchema>;

/** A user's (or a drain's) request to move a VM; the controller turns it into a placement's migration. */
export const migrationRequestSchema = z.object({
  id: z.string().min(1),
  /** Target node; absent: the controller picks one. */
  to: nodeNameSchema.optional(),
  settings: migrationSettingsSchema,
  /** Set to cancel the migration with this id. */
  cancel: z.boolean().default(false),
  reason: z.string(),
  time: z.string(),
});
export type MigrationRequest = z.infer<typeof migrationRequestSchema>;

/**
 * A move under way, part of the placement so that it changes atomically with it. `live`: the target starts
 * QEMU waiting for the guest's state while the source keeps running it; `cold`: the source stops the guest
 * first. Either way the placement's node flips to `to` in one compare-and-swap once the target has it.
 */
export const migrationSchema = z.object({
  id: z.string().min(1),
  kind: z.enum(["live", "cold"]),
  from: nodeNameSchema,
  to: nodeNameSchema,
  /** Generation of the target's QEMU. */
  generation: z.number().int().min(1),
  settings: migrationSettingsSchema,
  cancel: z.boolean().default(false),
  reason: z.string(),
  startedAt: z.string(),
});
export type Migration = z.infer<typeof migrationSchema>;

/**
 * Something a user asks of a running guest, done by the agent of the node that runs it: a reboot through the
 * guest agent, a hard reset, growing a disk (QMP block_resize). Aimed at one generation: a guest that was
 * restarted or moved meanwhile is not its target.
 */
export const vmActionSchema = z.object({
  id: z.string().min(1),
  type: z.enum(["reboot", "reset", "resize-disk"]),
  generation: z.number().int().min(1),
  /** resize-disk: which disk (its index) and its new size. */
  disk: z.number().int().min(0).optional(),
  sizeBytes: z.number().int().positive().optional(),
  time: z.string(),
});
export type VmAction = z.infer<typeof vmActionSchema>;

/** What the target node's agent reports about the QEMU it started for an incoming live migration. */
export const incomingSchema = z.object({
  id: z.string(),
  node: nodeNameSchema,
  generation: z.number().int().min(1),
  state: z.enum(["starting", "listening", "running", "failed"]),
  /** `tcp:HOST:PORT` the source connects to. */
  uri: z.string().optional(),
  message: z.string().optional(),
  updatedAt: z.string(),
});
export type Incoming = z.infer<typeof incomingSchema>;

/** The source's view of an outgoing live migration, from QEMU's query-migrate. */
export const outgoingSchema = z.object({
  id: z.string(),
  state: z.enum(["migrating", "completed", "failed"]),
  qemuStatus: z.string(),
  transferredBytes: z.number(),
  remainingBytes: z.number(),
  totalBytes: z.number(),
  mbps: z.number(),
  expectedDowntimeMs: z.number().optional(),
  downtimeMs: z.number().optional(),
  elapsedMs: z.number(),
  message: z.string().optional(),
});
export type Outgoing = z.infer<typeof outgoingSchema>;

/** Where a VM should run; written only by the controller, with compare-and-swap. */
export const placementSchema = z.object({
  node: nodeNameSchema,
  /** Increases on every (re)start decision; the agent tags its QEMU with it. */
  generation: z.number().int().min(1),
  /** Restarts after crashes on the current node since it was placed there. */
  restarts: z.number().int().min(0),
  /** Moves to another node after repeated crashes since the VM was last started by a user. */
  relocations: z.number().int().min(0).default(0),
  /**
   * Nodes the guest used up its restarts on, and when it left them: a relocation tries the others first
   * (Proxmox's failed_nodes). Forgotten after the failure timeout, with the rest of the failure record.
   */
  failedNodes: z.array(z.object({ node: nodeNameSchema, at: z.string() })).optional(),
  state: z.enum(["active", "error"]),
  reason: z.string(),
  /** A move to another node under way. */
  migration: migrationSchema.optional(),
  /** When the last move of the guest failed or was cancelled: rebalancing leaves it alone for a while. */
  moveEndedAt: z.string().optional(),
  updatedAt: z.string(),
});
export type Placement = z.infer<typeof placementSchema>;

/** `fenced`: killed by its own agent because the node lease ran out (invariant 2); not the guest's fault. */
export const guestStateSchema = z.enum([
  "starting",
  "running",
  "stopping",
  "stopped",
  "crashed",
  "failed",
  "fenced",
]);
export type GuestState = z.infer<typeof guestStateSchema>;

/** What the agent on the placed node observes; written under that node's lease. */
export const vmStatusSchema = z.object({
  node: nodeNameSchema,
  generation: z.number().int().min(0),
  state: guestStateSchema,
  pid: z.number().int().optional(),
  accel: z.enum(["kvm", "tcg"]).optional(),
  startedAt: z.string().optional(),
  message: z.string().optional(),
  /** Highest `ack N` seen on a canary guest's serial console. */
  lastAck: z.number().int().optional(),
  /** RBD client addresses (IP:port/nonce) of this QEMU: what fencing blocklists. */
  rbdClients: z.array(z.string()).optional(),
  /** An outgoing live migration of this guest. */
  outgoing: outgoingSchema.optional(),
  /** What the QEMU guest agent inside says, when the guest runs one. */
  guest: guestInfoSchema.optional(),
  updatedAt: z.string(),
});
export type VmStatus = z.infer<typeof vmStatusSchema>;

export const nodeInfoSchema = z.object({
  name: nodeNameSchema,
  api: z.string(),
  capacity: z.object({ vcpus: z.number().int().min(1), memoryMb: z.number().int().min(1) }),
  attributes: z.record(z.string(), z.string()),
  /** What this node does (see roles.ts); absent on nodes from before roles, which do everything. */
  roles: rolesSchema.optional(),
  accel: z.enum(["kvm", "tcg"]),
  accelReason: z.string(),
  /** Whether this node reaches the cluster's storage; nothing is placed on a node that does not. */
  storage: z.object({ ok: z.boolean(), summary: z.string() }),
  /** Bridges guests' network cards can plug into here; a guest needing one it lacks is not placed here. */
  bridges: z.array(z.string()).optional(),
  startedAt: z.string(),
  version: z.string(),
  /**
   * The guests whose QEMU this node's agent runs, by generation; absent until the agent has looked. The
   * controller lifts a storage fence of this node only once the fenced generation is no longer listed.
   */
  guests: z.array(z.object({ vm: vmNameSchema, generation: z.number().int().min(0) })).optional(),
});
export type NodeInfo = z.infer<typeof nodeInfoSchema>;

/**
 * A storage fence the controller put on a failed node's guest: the blocklisted client addresses of that
 * guest's QEMU, kept until the node is back and shows that this generation no longer runs there.
 */
export const storageFenceSchema = z.object({
  node: nodeNameSchema,
  vm: vmNameSchema,
  generation: z.number().int().min(0),
  addresses: z.array(z.string()),
  time: z.string(),
});
export type StorageFence = z.infer<typeof storageFenceSchema>;

/** A node's external fence agent (power off through IPMI and the like): argv run by the controller. */
export const fenceAgentSchema = z.object({
  command: z.array(z.string().min(1)).min(1, "a fence agent needs a command"),
  timeoutSeconds: z.number().int().min(1).max(3600).default(60),
});
export type FenceAgent = z.infer<typeof fenceAgentSchema>;

export const eventSchema = z.object({
  time: z.string(),
  type: z.string(),
  vm: z.string().optional(),
  node: z.string().optional(),
  reason: z.string(),
});
export type HavenEvent = z.infer<typeof eventSchema>;

/** What a user sees as a VM's state, combining spec, placement and status. */
export type VmView = {
  name: string;
  desired: DesiredState;
  state: string;
  node: string | null;
  generation: number | null;
  restarts: number;
  pid: number | null;
  accel: string | null;
  lastAck: number | null;
  /** RBD client addresses of the guest's QEMU. */
  rbdClients: string[];
  reason: string | null;
  memoryMb: number;
  vcpus: number;
  disks: string[];
  /** Network cards with the addresses the guest agent (or the guest network's DHCP server) reports. */
  nics: Array<Nic & { addresses: string[] }>;
  /** The guest's operating system, from its guest agent. */
  os: string | null;
  canary: boolean;
  /** A move under way, with the source's progress for a live one. */
  migration:
    | (Pick<Migration, "id" | "kind" | "from" | "to" | "startedAt" | "cancel"> & {
        progress: Outgoing | null;
      })
    | null;
};

export function viewVm(spec: VmSpec, placement: Placement | undefined, status: VmStatus | undefined): VmView {
  const current = status && placement && status.node === placement.node ? status : undefined;
  return {
    name: spec.name,
    desired: spec.state,
    state: userVisibleState(spec, placement, current),
    node: placement?.node ?? null,
    generation: placement?.generation ?? null,
    restarts: placement?.restarts ?? 0,
    pid: current?.pid ?? null,
    accel: current?.accel ?? null,
    lastAck: current?.lastAck ?? null,
    rbdClients: current?.rbdClients ?? [],
    reason: placement?.state === "error" ? placement.reason : (current?.message ?? null),
    memoryMb: spec.memoryMb,
    vcpus: spec.vcpus,
    disks: spec.disks.map((disk) => disk.image),
    nics: (spec.nics ?? []).map((nic) => ({ ...nic, addresses: current?.guest?.addresses?.[nic.mac] ?? [] })),
    os: current?.guest?.os ?? null,
    canary: spec.canary,
    migration: placement?.migration ? migrationView(placement.migration, current) : null,
  };
}

function migrationView(migration: Migration, status: VmStatus | undefined): NonNullable<VmView["migration"]> {
  const { id, kind, from, to, startedAt, cancel } = migration;
  const progress = status?.outgoing?.id === id ? status.outgoing : null;
  return { id, kind, from, to, startedAt, cancel, progress };
}

function userVisibleState(
  spec: VmSpec,
  placement: Placement | undefined,
  status: VmStatus | undefined,
): string {
  if (placement?.state === "error") return "error";
  if (!placement) return spec.state === "started" ? "pending" : "stopped";
  if (!status) return "unknown";
  if (placement.migration && status.state === "running") return "migrating";
  return status.state;
}
