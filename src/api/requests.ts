// Request bodies of the HTTP API, validated at the boundary.
import { z } from "zod";
import {
  colocationSchema,
  locationRuleSchema,
  locationSchema,
  orderSchema,
  PLACEMENT_STRATEGIES,
} from "../core/scheduler/types.js";
import {
  diskSizeMbSchema,
  imageNameSchema,
  memoryMbSchema,
  nameSchema,
  poolNameSchema,
  vcpusSchema,
  vmPolicyShape,
  migrationDefaultsSchema,
  migrationSettingsSchema,
  shutdownPolicySchema,
  vmNameSchema,
} from "../core/model.js";
import {
  cloudInitSchema,
  cpuModelSchema,
  diskBusSchema,
  firmwareSchema,
  machineTypeSchema,
  nicSchema,
  vmDiskSchema,
} from "../core/hardware.js";

/** A network card asked for: Haven chooses the MAC when none is given. */
export const nicRequest = nicSchema.extend({ mac: nicSchema.shape.mac.optional() }).strict();
export type NicRequest = z.infer<typeof nicRequest>;

/** Hardware a user may change while the VM is stopped (`haven vm set`); lists replace the whole list. */
export const hardwareShape = {
  memoryMb: memoryMbSchema,
  vcpus: vcpusSchema,
  disks: z.array(vmDiskSchema.strict()).max(32, "at most 32 disks"),
  nics: z.array(nicRequest).max(16, "at most 16 network cards"),
  cdrom: z.object({ image: imageNameSchema, pool: poolNameSchema.optional() }).strict().nullable(),
  cloudInit: cloudInitSchema.strict(),
};

/** The policy and hardware a user may change later (`haven vm set`): only the fields named. */
export const updateVmRequest = z
  .object({ ...vmPolicyShape, ...hardwareShape })
  .partial()
  .strict()
  .refine((body) => Object.values(body).some((value) => value !== undefined), {
    message: "nothing to change",
  });
export type UpdateVmRequest = z.infer<typeof updateVmRequest>;

export const createVmRequest = z
  .object({
    name: vmNameSchema,
    canary: z.boolean().default(false),
    kernel: z.string().min(1, "kernel path is empty").optional(),
    initrd: z.string().min(1, "initrd path is empty").optional(),
    append: z.string().optional(),
    memoryMb: memoryMbSchema.optional(),
    vcpus: vcpusSchema.optional(),
    /** A blank first disk of this size; with `clone`, the size the clone is grown to. */
    diskSizeMb: diskSizeMbSchema.optional(),
    /** The boot disk as a new clone of a snapshot (a golden image). */
    clone: z
      .object({ image: imageNameSchema, snapshot: nameSchema("snapshot") })
      .strict()
      .optional(),
    /** Existing disks to attach, after the created or cloned one; the first disk boots. */
    disks: z.array(vmDiskSchema.strict()).max(32).default([]),
    /** Further blank disks, created as NAME-disk1, NAME-disk2, … */
    blankDisks: z
      .array(z.object({ sizeMb: diskSizeMbSchema, bus: diskBusSchema.optional() }).strict())
      .max(32)
      .default([]),
    cdrom: z.object({ image: imageNameSchema, pool: poolNameSchema.optional() }).strict().optional(),
    firmware: firmwareSchema.optional(),
    cpu: cpuModelSchema.optional(),
    machine: machineTypeSchema.optional(),
    nics: z.array(nicRequest).max(16, "at most 16 network cards").default([]),
    cloudInit: cloudInitSchema.strict().optional(),
    ha: vmPolicyShape.ha.default(true),
    allowMigrate: vmPolicyShape.allowMigrate.default(true),
    restartLimit: vmPolicyShape.restartLimit.default(3),
    relocateLimit: vmPolicyShape.relocateLimit.default(1),
    failureTimeoutSeconds: vmPolicyShape.failureTimeoutSeconds.default(600),
    priority: vmPolicyShape.priority.default(0),
    stickiness: vmPolicyShape.stickiness.default(0),
    stopGraceSeconds: z.number().int().min(0).max(3600).optional(),
    start: z.boolean().default(false),
  })
  .strict()
  .refine((body) => !(body.canary && body.kernel !== undefined), {
    message: "give either canary or kernel (with optional initrd and append), not both",
  });
export type CreateVmRequest = z.infer<typeof createVmRequest>;

export const createDiskRequest = z.object({ name: imageNameSchema, sizeMb: diskSizeMbSchema }).strict();
export const resizeDiskRequest = z
  .object({ sizeMb: diskSizeMbSchema, allowShrink: z.boolean().default(false) })
  .strict();

export const snapshotNameSchema = nameSchema("snapshot");
export const snapshotRequest = z.object({ snapshot: snapshotNameSchema }).strict();
export const cloneRequest = z.object({ snapshot: snapshotNameSchema, target: imageNameSchema }).strict();

/** `haven vm migrate`: where to (or let the controller pick) and this migration's settings. */
export const migrateRequest = z
  .object({
    to: z.string().optional(),
    settings: migrationSettingsSchema.partial().strict().default({}),
  })
  .strict();
export type MigrateRequest = z.infer<typeof migrateRequest>;

export const migrationDefaultsChange = migrationDefaultsSchema
  .partial()
  .strict()
  .refine((body) => Object.keys(body).length > 0, { message: "nothing to change" });

export const maintenanceRequest = z.object({ on: z.boolean() }).strict();

/** `haven node add NAME`: how long the token may wait for its server (default one hour). */
export const joinTokenRequest = z.object({ ttlSeconds: z.number().int().optional() }).strict();

/** `haven import crm FILE`: the crm text, its path (for messages) and every libvirt file its config= names. */
const importConfiguration = {
  file: z.string().min(1, "file is empty"),
  /** libvirt domain XML by the config= value that names it, as written in the configuration. */
  domains: z.record(z.string(), z.string()).default({}),
  /** config= values the CLI could not read, with the reason (reported on the primitive's line). */
  unreadable: z.record(z.string(), z.string()).default({}),
  dryRun: z.boolean().default(false),
  /** Import the rest when a primitive's agent is not VirtualDomain, listing what was skipped. */
  skipUnsupported: z.boolean().default(false),
};

/** `haven import crm FILE`: crm shell configuration text and the domains it names. */
export const importCrmRequest = z.object({ crm: z.string(), ...importConfiguration }).strict();
export type ImportCrmRequest = z.infer<typeof importCrmRequest>;

/** `haven import cib FILE`: Pacemaker's CIB XML and the domains it names. */
export const importCibRequest = z.object({ cib: z.string(), ...importConfiguration }).strict();
export type ImportCibRequest = z.infer<typeof importCibRequest>;

/** `haven vm create NAME --from-libvirt FILE`: one libvirt domain as a VM. */
export const importLibvirtRequest = z
  .object({
    name: vmNameSchema,
    xml: z.string(),
    file: z.string().min(1, "file is empty"),
    dryRun: z.boolean().default(false),
    start: z.boolean().default(false),
  })
  .strict();
export type ImportLibvirtRequest = z.infer<typeof importLibvirtRequest>;

/** `haven cluster shutdown-policy POLICY`. */
export const shutdownPolicyRequest = z.object({ policy: shutdownPolicySchema }).strict();

/** `haven cluster placement-strategy STRATEGY|--reset`: null goes back to Haven's default. */
export const placementStrategyRequest = z
  .object({ strategy: z.enum(PLACEMENT_STRATEGIES).nullable() })
  .strict();

/** `haven constraint location|rule|colocation|order`: the scheduler's shapes, scores as numbers or ±INFINITY. */
export const manualConstraintRequest = z.discriminatedUnion("type", [
  locationSchema,
  locationRuleSchema,
  colocationSchema,
  orderSchema,
]);
export type ManualConstraint = z.infer<typeof manualConstraintRequest>;
