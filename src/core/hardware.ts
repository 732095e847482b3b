// A guest's virtual hardware, fixed when the VM is created so that it never changes under the guest across
// restarts, migrations, failovers or a QEMU upgrade: firmware, CPU model, versioned machine type, disks,
// CD-ROM, network cards with their MACs, and the cloud-init seed. Pure: schemas and small decisions.
import { z } from "zod";
import { imageNameSchema, poolNameSchema } from "./names.js";

/**
 * A named, versioned CPU model rather than the host's CPU, so a guest can move between hosts of different
 * generations: Westmere (x86-64-v2 with AES) runs on every x86-64 server of the last fifteen years, and
 * QEMU's TCG emulates all of it. `host` is allowed and ties live migration to identical hosts.
 */
export const DEFAULT_CPU_MODEL = "Westmere-v1";
export const HOST_CPU_MODEL = "host";

export const cpuModelSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, "CPU model must be a QEMU CPU model name such as Westmere-v1");

/** A versioned machine type (pc-q35-7.2), never the moving alias `q35`. */
export const machineTypeSchema = z
  .string()
  .regex(/^pc-(q35|i440fx)-\d+\.\d+$/, "machine type must be a versioned type such as pc-q35-7.2");

export const firmwareSchema = z.enum(["bios", "uefi"]);
export type Firmware = z.infer<typeof firmwareSchema>;

/** virtio-blk: one PCI device per disk, fastest; virtio-scsi: one controller for many disks, with discard. */
export const diskBusSchema = z.enum(["virtio-blk", "virtio-scsi"]);
export type DiskBus = z.infer<typeof diskBusSchema>;

export const vmDiskSchema = z.object({
  image: imageNameSchema,
  /** The storage pool, when not the cluster's default. */
  pool: poolNameSchema.optional(),
  /** Absent means virtio-blk. */
  bus: diskBusSchema.optional(),
});
export type VmDisk = z.infer<typeof vmDiskSchema>;

/** Linux interface names: at most 15 bytes, no '/', no whitespace. */
export const bridgeNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9_.-]{1,15}$/, "bridge name must be 1-15 letters, digits, '.', '_' or '-'");

/** A unicast MAC in lower case: the low bit of the first octet (multicast) must be clear. */
export const macSchema = z
  .string()
  .transform((mac) => mac.toLowerCase())
  .pipe(
    z
      .string()
      .regex(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/, "MAC address must be six hex pairs such as 52:54:00:12:34:56")
      .refine((mac) => (parseInt(mac.slice(0, 2), 16) & 1) === 0, "MAC address must be unicast"),
  );

export const nicModelSchema = z.enum(["virtio", "e1000"]);

export const nicSchema = z.object({
  bridge: bridgeNameSchema,
  mac: macSchema,
  model: nicModelSchema.default("virtio"),
  /** 802.1Q tag: the node puts the guest's port on this VLAN of a VLAN-filtering bridge. */
  vlan: z.number().int().min(1, "VLAN must be 1-4094").max(4094, "VLAN must be 1-4094").optional(),
});
export type Nic = z.infer<typeof nicSchema>;

/** What a NoCloud seed says; Haven builds meta-data, user-data and network-config from it. */
export const cloudInitSchema = z.object({
  user: z
    .string()
    .regex(/^[a-z_][a-z0-9_-]{0,31}$/, "user must be a Linux user name")
    .optional(),
  sshKeys: z.array(z.string().min(1)).default([]),
  hostname: z
    .string()
    .regex(/^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/, "hostname must be a DNS label")
    .optional(),
  /** A whole user-data document; replaces the one built from user and sshKeys. */
  userData: z
    .string()
    .max(64 * 1024)
    .optional(),
  /** A whole network-config document; the default brings the first NIC up with DHCP. */
  networkConfig: z
    .string()
    .max(64 * 1024)
    .optional(),
});
export type CloudInit = z.infer<typeof cloudInitSchema>;

/** What a running guest's QEMU guest agent reports: its OS, and the addresses on each card (by MAC). */
export const guestInfoSchema = z.object({
  os: z.string().optional(),
  addresses: z.record(z.string(), z.array(z.string())).optional(),
});
export type GuestInfo = z.infer<typeof guestInfoSchema>;

/** Locally administered MACs Haven chooses: 52:54:00 (as libvirt and Proxmox-style tools use) + 3 random bytes. */
export const MAC_PREFIX = "52:54:00";

/**
 * A MAC not in `taken`, from `random` (three bytes). The space holds 16 million addresses, so a handful of
 * retries always succeed in practice; the bound keeps a broken random source from looping forever.
 */
export function allocateMac(taken: ReadonlySet<string>, random: () => Uint8Array): string {
  for (let attempt = 0; attempt < 64; attempt++) {
    const bytes = [...random().slice(0, 3)];
    if (bytes.length < 3) break;
    const mac = [MAC_PREFIX, ...bytes.map((b) => b.toString(16).padStart(2, "0"))].join(":");
    if (!taken.has(mac)) return mac;
  }
  throw new Error("could not find a free MAC address");
}

/** Names of the images Haven keeps for a VM besides its disks: the cloud-init seed and the UEFI variables. */
export const seedImageOf = (vm: string) => `${vm}-seed`;
export const nvramImageOf = (vm: string) => `${vm}-efivars`;

/**
 * The tap device of a guest's NIC on the node running it. Linux allows 15 bytes; the name carries a hash of
 * the VM, the generation (so that the source's and the target's QEMU of a migration on one host never
 * collide) and the NIC's index.
 */
export function tapName(vm: string, generation: number, index: number): string {
  return `hv${fnv1a(vm).toString(16).padStart(8, "0").slice(0, 7)}${(generation % 256).toString(16).padStart(2, "0")}${index.toString(16)}`;
}

function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return hash;
}

/**
 * The images a VM owns and writes: its disks, its UEFI variable store and its cloud-init seed (invariant 1:
 * none of them is ever attached to a second VM). A CD-ROM is read-only and may be shared.
 */
export function ownedImages(spec: {
  name: string;
  disks: readonly VmDisk[];
  firmware?: Firmware;
  kernel?: string;
  cloudInit?: unknown;
}): Array<{ image: string; pool?: string }> {
  return [
    ...spec.disks.map(({ image, pool }) => (pool === undefined ? { image } : { image, pool })),
    ...(spec.kernel === undefined && spec.firmware === "uefi" ? [{ image: nvramImageOf(spec.name) }] : []),
    ...(spec.cloudInit !== undefined ? [{ image: seedImageOf(spec.name) }] : []),
  ];
}

/** The VM among `specs` that owns `image` in `pool` (undefined: the default pool). */
export function ownerOf(
  specs: ReadonlyArray<Parameters<typeof ownedImages>[0]>,
  image: string,
  pool?: string,
): string | undefined {
  return specs.find((spec) => ownedImages(spec).some((owned) => owned.image === image && owned.pool === pool))
    ?.name;
}
