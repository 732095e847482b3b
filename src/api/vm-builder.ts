// Creating a VM, all or nothing: every check first (disks exist and belong to no other VM, bridges exist,
// MACs are unique, the firmware and CPU model are there), then the images it owns (a blank or cloned boot
// disk, more blank disks, its UEFI variables, its cloud-init seed) with a rollback stack, then its spec.
import { access, constants } from "node:fs/promises";
import { join } from "node:path";
import type { ClusterStore } from "../adapters/etcd/cluster-store.js";
import { OVMF_VARS_TEMPLATE } from "../adapters/qemu/cmdline.js";
import type { QemuCapabilities } from "../adapters/qemu/capabilities.js";
import type { StorageBackend } from "../adapters/storage/port.js";
import { seedFiles, type SeedFiles } from "../core/cloud-init.js";
import { conflict, inputError, notFound } from "../core/errors.js";
import {
  allocateMac,
  DEFAULT_CPU_MODEL,
  nvramImageOf,
  ownerOf,
  seedImageOf,
  type CloudInit,
  type Nic,
  type VmDisk,
} from "../core/hardware.js";
import type { NodeInfo, VmSpec } from "../core/model.js";
import { isoNow } from "../lib/clock.js";
import { Rollback } from "../lib/rollback.js";
import type { CreateVmRequest, NicRequest } from "./requests.js";

export const CANARY_DEFAULTS = { memoryMb: 128, vcpus: 1, diskSizeMb: 64, stopGraceSeconds: 0 };
const MB = 1024 * 1024;

export interface VmBuilderDeps {
  store: ClusterStore;
  /** The backend of `pool`, or of the cluster's default pool. */
  storageFor: (pool?: string) => Promise<StorageBackend>;
  guestDir: string;
  capabilities: () => Promise<QemuCapabilities>;
  writeSeed: (storage: StorageBackend, image: string, files: SeedFiles) => Promise<void>;
  random: (bytes: number) => Uint8Array;
}

export async function buildVm(deps: VmBuilderDeps, request: CreateVmRequest): Promise<VmSpec> {
  if (await deps.store.getSpec(request.name)) throw conflict(`VM ${request.name} already exists`);
  const [specs, nodes] = await Promise.all([deps.store.listSpecs(), deps.store.listNodes()]);
  const boot = await bootOf(deps, request);
  const hardware = await hardwareOf(deps, request, nodes);
  const attached = await checkAttached(deps, request.name, request.disks, specs);
  const nics = checkNics(request.name, request.nics, specs, nodes, deps.random);
  if (request.cdrom) await requireImage(deps, request.cdrom.image, request.cdrom.pool);

  const rollback = new Rollback();
  try {
    const created = await createImages(deps, request, rollback);
    const spec: VmSpec = {
      name: request.name,
      state: request.start ? "started" : "stopped",
      memoryMb: request.memoryMb ?? (request.canary ? CANARY_DEFAULTS.memoryMb : 512),
      vcpus: request.vcpus ?? 1,
      ...boot,
      ...hardware,
      disks: [...created.boot, ...attached, ...created.extra],
      ...(request.cdrom && { cdrom: request.cdrom }),
      ...(nics.length > 0 && { nics }),
      ...(request.cloudInit && { cloudInit: request.cloudInit }),
      canary: request.canary,
      restartLimit: request.restartLimit,
      relocateLimit: request.relocateLimit,
      failureTimeoutSeconds: request.failureTimeoutSeconds,
      priority: request.priority,
      stickiness: request.stickiness,
      ha: request.ha,
      allowMigrate: request.allowMigrate,
      stopGraceSeconds: request.stopGraceSeconds ?? (request.canary ? CANARY_DEFAULTS.stopGraceSeconds : 30),
      createdAt: isoNow(deps.store.clock),
    };
    if (spec.disks.length === 0 && spec.kernel === undefined && !spec.cdrom)
      throw inputError(
        "a VM needs something to boot: --canary, --kernel, a disk (--disk, --clone, --disk-size) or --cdrom",
      );
    if (spec.cloudInit) {
      const storage = await deps.storageFor();
      await deps.writeSeed(storage, seedImageOf(spec.name), seedFiles(spec.name, spec.cloudInit, nics));
      rollback.push(() => storage.delete(seedImageOf(spec.name)));
    }
    await deps.store.createSpec(spec);
    rollback.clear();
    return spec;
  } catch (err) {
    const failures = await rollback.run();
    if (failures.length > 0)
      throw new Error(`${(err as Error).message}; rollback also failed: ${failures.map(String).join("; ")}`);
    throw err;
  }
}

/** Direct kernel boot (the canary, or --kernel), or firmware from the first disk. */
async function bootOf(deps: VmBuilderDeps, request: CreateVmRequest): Promise<Partial<VmSpec>> {
  if (request.canary) {
    const kernel = join(deps.guestDir, "vmlinuz");
    const initrd = join(deps.guestDir, "initramfs.img");
    await requireFile(kernel, "canary kernel (run the setup to build the guest)");
    await requireFile(initrd, "canary initramfs");
    return { kernel, initrd, append: "console=ttyS0 quiet cryptomgr.notests" };
  }
  if (request.kernel !== undefined) {
    await requireFile(request.kernel, "kernel");
    if (request.initrd !== undefined) await requireFile(request.initrd, "initrd");
    return {
      kernel: request.kernel,
      ...(request.initrd !== undefined && { initrd: request.initrd }),
      ...(request.append !== undefined && { append: request.append }),
    };
  }
  if (request.initrd !== undefined || request.append !== undefined)
    throw inputError("--initrd and --append need --kernel");
  return { firmware: request.firmware ?? "bios" };
}

/** The CPU model and versioned machine type, fixed now so that the guest's hardware never changes. */
async function hardwareOf(
  deps: VmBuilderDeps,
  request: CreateVmRequest,
  nodes: NodeInfo[],
): Promise<Pick<VmSpec, "cpu" | "machine">> {
  const qemu = await deps.capabilities();
  if (request.firmware === "uefi" && !qemu.uefi)
    throw inputError(
      `--firmware uefi needs UEFI firmware, which is not installed (${OVMF_VARS_TEMPLATE} is missing; apt install ovmf)`,
    );
  const cpu = request.cpu ?? DEFAULT_CPU_MODEL;
  if (!qemu.cpuModels.has(cpu))
    throw inputError(`QEMU has no CPU model ${cpu} ('qemu-system-x86_64 -cpu help')`);
  if (cpu === "host" && nodes.length > 0 && nodes.every((node) => node.accel !== "kvm"))
    throw inputError("--cpu host needs KVM, and every node runs guests under TCG");
  const wanted = request.machine ?? "q35";
  const machine = qemu.aliases.get(wanted) ?? wanted;
  if (!qemu.machines.has(machine))
    throw inputError(`QEMU has no machine type ${wanted} ('qemu-system-x86_64 -machine help')`);
  return { cpu, machine };
}

/**
 * Disks to attach to `vm`: they exist, none is given twice, and no other VM owns them (invariant 1: one
 * writer per disk).
 */
async function checkAttached(
  deps: VmBuilderDeps,
  vm: string,
  disks: readonly VmDisk[],
  specs: readonly VmSpec[],
): Promise<VmDisk[]> {
  const seen = new Set<string>();
  const others = specs.filter((spec) => spec.name !== vm);
  for (const disk of disks) {
    const key = `${disk.pool ?? ""}/${disk.image}`;
    if (seen.has(key)) throw inputError(`disk ${disk.image} is given twice`);
    seen.add(key);
    await requireImage(deps, disk.image, disk.pool);
    const owner = ownerOf(others, disk.image, disk.pool);
    if (owner) throw conflict(`disk ${disk.image} is attached to VM ${owner}; a disk belongs to one VM`);
  }
  return [...disks];
}

export type HardwareChange = Partial<{
  memoryMb: number;
  vcpus: number;
  disks: VmDisk[];
  nics: NicRequest[];
  cdrom: { image: string; pool?: string } | null;
  cloudInit: CloudInit;
}>;

/**
 * A stopped VM's new hardware or cloud-init: the same checks as at creation, and a new seed when what it
 * says changed. Returns the spec to write.
 */
export async function changeHardware(
  deps: VmBuilderDeps,
  spec: VmSpec,
  change: HardwareChange,
): Promise<VmSpec> {
  const [specs, nodes] = await Promise.all([deps.store.listSpecs(), deps.store.listNodes()]);
  const next: VmSpec = { ...spec };
  if (change.memoryMb !== undefined) next.memoryMb = change.memoryMb;
  if (change.vcpus !== undefined) next.vcpus = change.vcpus;
  if (change.disks !== undefined) next.disks = await checkAttached(deps, spec.name, change.disks, specs);
  if (change.nics !== undefined) next.nics = checkNics(spec.name, change.nics, specs, nodes, deps.random);
  if (change.cdrom === null) delete next.cdrom;
  else if (change.cdrom !== undefined) {
    await requireImage(deps, change.cdrom.image, change.cdrom.pool);
    next.cdrom = change.cdrom;
  }
  if (change.cloudInit !== undefined) next.cloudInit = change.cloudInit;
  if (next.cloudInit) {
    const files = seedFiles(next.name, next.cloudInit, next.nics ?? []);
    const before = spec.cloudInit && seedFiles(spec.name, spec.cloudInit, spec.nics ?? []);
    if (JSON.stringify(files) !== JSON.stringify(before))
      await deps.writeSeed(await deps.storageFor(), seedImageOf(spec.name), files);
  }
  return next;
}

/**
 * Network cards: each bridge exists on some online node, each MAC is a valid unicast address used by no other
 * card in the cluster; a card without one gets a new locally administered MAC.
 */
export function checkNics(
  vm: string,
  requested: readonly NicRequest[],
  specs: readonly VmSpec[],
  nodes: readonly NodeInfo[],
  random: (bytes: number) => Uint8Array,
): Nic[] {
  const bridges = new Set(nodes.flatMap((node) => node.bridges ?? []));
  const taken = new Map<string, string>();
  for (const spec of specs)
    if (spec.name !== vm) for (const nic of spec.nics ?? []) taken.set(nic.mac, spec.name);
  for (const nic of requested) {
    if (!bridges.has(nic.bridge))
      throw inputError(`no online node has bridge ${nic.bridge} ('haven network list' shows the bridges)`);
    if (nic.mac === undefined) continue;
    const owner = taken.get(nic.mac);
    if (owner !== undefined)
      throw conflict(
        `MAC ${nic.mac} is taken by ${owner === vm ? "another card of this VM" : `VM ${owner}`}`,
      );
    taken.set(nic.mac, vm);
  }
  return requested.map((nic) => {
    const mac = nic.mac ?? allocateMac(new Set(taken.keys()), () => random(3));
    taken.set(mac, vm);
    return { bridge: nic.bridge, mac, model: nic.model, ...(nic.vlan !== undefined && { vlan: nic.vlan }) };
  });
}

/**
 * The images the VM gets new: a boot disk (blank or cloned) that goes before the attached disks, further
 * blank disks that go after them, and the UEFI variables.
 */
async function createImages(
  deps: VmBuilderDeps,
  request: CreateVmRequest,
  rollback: Rollback,
): Promise<{ boot: VmDisk[]; extra: VmDisk[] }> {
  const storage = await deps.storageFor();
  const disks: VmDisk[] = [];
  const diskSizeMb = request.diskSizeMb ?? (request.canary ? CANARY_DEFAULTS.diskSizeMb : undefined);
  const track = (image: string) => rollback.push(() => storage.delete(image));
  if (request.clone) {
    const image = `${request.name}-disk0`;
    await storage.clone(request.clone.image, request.clone.snapshot, image);
    track(image);
    if (diskSizeMb !== undefined) await storage.resize(image, diskSizeMb * MB);
    disks.push({ image });
  } else if (diskSizeMb !== undefined) {
    const image = `${request.name}-disk0`;
    await storage.create(image, diskSizeMb * MB);
    track(image);
    disks.push({ image });
  }
  const extra: VmDisk[] = [];
  for (const blank of request.blankDisks) {
    const image = `${request.name}-disk${disks.length + extra.length}`;
    await storage.create(image, blank.sizeMb * MB);
    track(image);
    extra.push({ image, ...(blank.bus !== undefined && { bus: blank.bus }) });
  }
  if (request.firmware === "uefi" && request.kernel === undefined && !request.canary) {
    // The variable store (boot entries, Secure Boot keys) lives on the cluster's storage: it follows the guest.
    await storage.importFile(OVMF_VARS_TEMPLATE, nvramImageOf(request.name));
    track(nvramImageOf(request.name));
  }
  return { boot: disks, extra };
}

async function requireImage(deps: VmBuilderDeps, image: string, pool?: string): Promise<void> {
  const storage = await deps.storageFor(pool);
  await storage.info(image).catch((err: unknown) => {
    if ((err as { code?: string }).code === "NOT_FOUND")
      throw notFound(`disk ${image}${pool ? ` in pool ${pool}` : ""} does not exist`);
    throw err;
  });
}

async function requireFile(path: string, what: string): Promise<void> {
  if (!path.startsWith("/")) throw inputError(`${what} path must be absolute: ${path}`);
  await access(path, constants.R_OK).catch(() => {
    throw inputError(`${what} file ${path} does not exist or is not readable`);
  });
}
