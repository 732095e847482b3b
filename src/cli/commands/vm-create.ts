// haven vm create and haven vm set: a VM's hardware (boot, disks, CD-ROM, network cards, cloud-init, CPU and
// machine type) and its HA policy.
import type { Command } from "commander";
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { HavenError } from "../../core/errors.js";
import type { VmSpec, VmView } from "../../core/model.js";
import type { CliContext } from "../context.js";
import { progress } from "../context.js";
import {
  collect,
  parseBlankDisk,
  parseClone,
  parseDisk,
  parseNic,
  type DiskOption,
  type NicOption,
} from "../hardware-options.js";
import { printJson } from "../output.js";
import { intOption, sizeOption } from "../parse.js";
import { createFromLibvirt } from "./import.js";
import { policyOf, waitForState, withPolicyOptions, type PolicyOptions } from "./vm-common.js";

interface CloudInitOptions {
  sshKey?: string[];
  user?: string;
  hostname?: string;
  userData?: string;
  networkConfig?: string;
}

interface CreateOptions extends PolicyOptions, CloudInitOptions {
  canary?: boolean;
  kernel?: string;
  initrd?: string;
  append?: string;
  memory?: number;
  vcpus?: number;
  diskSize?: number;
  clone?: { image: string; snapshot: string };
  disk?: DiskOption[];
  blankDisk?: Array<{ sizeMb: number; bus?: DiskOption["bus"] }>;
  cdrom?: string;
  firmware?: "bios" | "uefi";
  cpu?: string;
  machine?: string;
  nic?: NicOption[];
  ha: boolean;
  allowMigrate: boolean;
  start?: boolean;
  wait: boolean;
  json?: boolean;
  fromLibvirt?: string;
  dryRun?: boolean;
}

export function registerVmCreate(vm: Command, ctx: CliContext): void {
  const create = vm
    .command("create <name>")
    .description(
      "create a VM (stopped unless --start): booting from its first disk (--disk, --clone, --disk-size), the canary guest, or a kernel",
    )
    .option("--canary", "the canary guest: writes checksummed records and prints 'ack N' after each fsync")
    .option("--kernel <file>", "boot this kernel directly instead of from a disk")
    .option("--initrd <file>", "initramfs for the kernel")
    .option("--append <cmdline>", "kernel command line")
    .option("--memory <MB>", "memory in megabytes (canary: 128, else 512)", intOption("--memory"))
    .option("--vcpus <n>", "virtual CPUs (default 1)", intOption("--vcpus"))
    .option(
      "--disk-size <size>",
      "create a blank boot disk NAME-disk0 of this size (MB, or with G/T suffix; canary: 64); with --clone, grow the clone to it",
      sizeOption("--disk-size"),
    )
    .option(
      "--clone <disk@snapshot>",
      "the boot disk is a new clone of this snapshot (a golden image)",
      parseClone,
    )
    .option(
      "--disk <name[,bus=virtio-blk|virtio-scsi][,pool=P]>",
      "attach an existing disk (repeatable; the first disk boots)",
      parseDisk,
    )
    .option(
      "--blank-disk <size[,bus=virtio-scsi]>",
      "add a new blank disk after the others (repeatable)",
      parseBlankDisk,
    )
    .option("--cdrom <disk>", "a read-only CD-ROM: an installer ISO imported with 'haven disk import'")
    .option("--firmware <bios|uefi>", "bios (SeaBIOS, default) or uefi (OVMF, variables kept on the storage)")
    .option(
      "--cpu <model>",
      "QEMU CPU model (default Westmere-v1; 'host' ties live migration to identical hosts)",
    )
    .option(
      "--machine <type>",
      "machine type (default: q35 of the QEMU the VM is created on, recorded versioned)",
    )
    .option(
      "--nic <bridge=NAME[,mac=MAC][,model=virtio|e1000][,vlan=ID]>",
      "a network card on a bridge (repeatable; a MAC is chosen when none is given)",
      parseNic,
    )
    .option("--ssh-key <file>", "cloud-init: a public key file for the login user (repeatable)", collect)
    .option("--user <name>", "cloud-init: create this login user (default: the image's own, e.g. debian)")
    .option("--hostname <name>", "cloud-init: the guest's hostname (default: the VM's name)")
    .option("--user-data <file>", "cloud-init: your own user-data document instead of the generated one")
    .option(
      "--network-config <file>",
      "cloud-init: your own network-config (default: DHCP on the first card)",
    );
  withPolicyOptions(create, true)
    .option("--no-ha", "do not recover it on another node when its node fails")
    .option("--no-allow-migrate", "never migrate it live: moves stop it, move it and start it")
    .option("--start", "start it right away")
    .option("--no-wait", "with --start: return without waiting for the guest to run")
    .option("--json", "machine-readable output")
    .option(
      "--from-libvirt <file>",
      "import a libvirt domain: memory, vCPUs, boot, disks, network cards, CPU and machine type",
    )
    .option("--dry-run", "with --from-libvirt: show what would be created, without creating it")
    .action(async (name: string, options: CreateOptions) => {
      if (options.fromLibvirt !== undefined) {
        const imported = await createFromLibvirt(ctx, name, options.fromLibvirt, options);
        if (imported.dryRun || !options.start || !options.wait) return;
        const view = await waitForState(ctx, name, "running");
        if (!options.json) progress(`VM ${name} is ${view.state}${view.node ? ` on ${view.node}` : ""}`);
        return;
      }
      if (options.dryRun) throw new HavenError("INPUT", "--dry-run works with --from-libvirt only");
      if (options.cpu === "host")
        progress(
          "warning: --cpu host gives the guest this host's CPU: it can move live only to identical hosts",
        );
      const api = await ctx.api();
      const created = await api.post<VmView>("/v1/vms", {
        name,
        canary: options.canary ?? false,
        kernel: options.kernel === undefined ? undefined : resolve(options.kernel),
        initrd: options.initrd === undefined ? undefined : resolve(options.initrd),
        append: options.append,
        memoryMb: options.memory,
        vcpus: options.vcpus,
        diskSizeMb: options.diskSize,
        clone: options.clone,
        disks: options.disk,
        blankDisks: options.blankDisk,
        cdrom: options.cdrom === undefined ? undefined : { image: options.cdrom },
        firmware: options.firmware,
        cpu: options.cpu,
        machine: options.machine,
        nics: options.nic,
        cloudInit: await cloudInitOf(options),
        ...policyOf(options),
        start: options.start ?? false,
      });
      const view = options.start && options.wait ? await waitForState(ctx, name, "running") : created;
      if (options.json) printJson(view);
      else
        progress(
          `created VM ${name}${options.start ? `, ${view.state}${view.node ? ` on ${view.node}` : ""}` : " (stopped; 'haven vm start " + name + "' to run it)"}`,
        );
    });
}

interface SetOptions extends PolicyOptions, CloudInitOptions {
  memory?: number;
  vcpus?: number;
  addDisk?: DiskOption[];
  removeDisk?: string[];
  addNic?: NicOption[];
  removeNic?: string[];
  cdrom?: string | false;
  json?: boolean;
}

export function registerVmSet(vm: Command, ctx: CliContext): void {
  const set = vm
    .command("set <name>")
    .description(
      "change a VM's policy (applies from the controller's next decision) or, while it is stopped, its hardware and cloud-init",
    );
  withPolicyOptions(set, false)
    .option("--ha", "recover it on another node when its node fails")
    .option("--no-ha", "do not recover it on another node when its node fails")
    .option("--allow-migrate", "may migrate live")
    .option("--no-allow-migrate", "never migrate live: moves stop, move and start it")
    .option("--memory <MB>", "memory in megabytes (stopped VMs)", intOption("--memory"))
    .option("--vcpus <n>", "virtual CPUs (stopped VMs)", intOption("--vcpus"))
    .option(
      "--add-disk <name[,bus=…][,pool=P]>",
      "attach an existing disk at the end (repeatable)",
      parseDisk,
    )
    .option("--remove-disk <name>", "detach a disk (repeatable; the disk itself is kept)", collect)
    .option("--add-nic <bridge=NAME[,mac=…][,model=…][,vlan=…]>", "add a network card (repeatable)", parseNic)
    .option("--remove-nic <mac>", "remove the network card with this MAC (repeatable)", collect)
    .option("--cdrom <disk>", "insert this disk as the CD-ROM")
    .option("--no-cdrom", "remove the CD-ROM")
    .option("--ssh-key <file>", "cloud-init: replace the login keys with these files (repeatable)", collect)
    .option("--user <name>", "cloud-init: the login user")
    .option("--hostname <name>", "cloud-init: the guest's hostname")
    .option("--user-data <file>", "cloud-init: your own user-data document")
    .option("--network-config <file>", "cloud-init: your own network-config")
    .option("--json", "machine-readable output")
    .action(async (name: string, options: SetOptions) => {
      const api = await ctx.api();
      const path = `/v1/vms/${encodeURIComponent(name)}`;
      const hardware = await hardwareChange(options, () => api.get<VmView & { spec: VmSpec }>(path));
      const view = await api.patch<VmView>(path, { ...policyOf(options), ...hardware });
      if (options.json) printJson(view);
      else progress(`VM ${name} updated`);
    });
}

/** The hardware fields of a `vm set`, computed from the VM's current spec when lists change. */
async function hardwareChange(options: SetOptions, current: () => Promise<{ spec: VmSpec }>) {
  const change: Record<string, unknown> = { memoryMb: options.memory, vcpus: options.vcpus };
  const lists = options.addDisk || options.removeDisk || options.addNic || options.removeNic;
  const cloudInit = await cloudInitOf(options);
  if (!lists && options.cdrom === undefined && cloudInit === undefined) return change;
  const { spec } = await current();
  if (options.addDisk || options.removeDisk) {
    for (const image of options.removeDisk ?? [])
      if (!spec.disks.some((disk) => disk.image === image))
        throw new HavenError("INPUT", `--remove-disk: VM ${spec.name} has no disk ${image}`);
    change.disks = [
      ...spec.disks.filter((disk) => !(options.removeDisk ?? []).includes(disk.image)),
      ...(options.addDisk ?? []),
    ];
  }
  if (options.addNic || options.removeNic) {
    const remove = (options.removeNic ?? []).map((mac) => mac.toLowerCase());
    for (const mac of remove)
      if (!(spec.nics ?? []).some((nic) => nic.mac === mac))
        throw new HavenError("INPUT", `--remove-nic: VM ${spec.name} has no network card with MAC ${mac}`);
    change.nics = [
      ...(spec.nics ?? []).filter((nic) => !remove.includes(nic.mac)),
      ...(options.addNic ?? []),
    ];
  }
  if (options.cdrom !== undefined) change.cdrom = options.cdrom === false ? null : { image: options.cdrom };
  if (cloudInit !== undefined) change.cloudInit = { ...(spec.cloudInit ?? { sshKeys: [] }), ...cloudInit };
  return change;
}

/** The cloud-init settings given on the command line, with files read here (undefined: none given). */
async function cloudInitOf(options: CloudInitOptions) {
  const read = (file: string, what: string) =>
    readFile(file, "utf8").catch(() => {
      throw new HavenError("INPUT", `${what}: cannot read ${file}`);
    });
  const given = {
    ...(options.sshKey && {
      sshKeys: await Promise.all(options.sshKey.map((file) => read(file, "--ssh-key"))),
    }),
    ...(options.user !== undefined && { user: options.user }),
    ...(options.hostname !== undefined && { hostname: options.hostname }),
    ...(options.userData !== undefined && { userData: await read(options.userData, "--user-data") }),
    ...(options.networkConfig !== undefined && {
      networkConfig: await read(options.networkConfig, "--network-config"),
    }),
  };
  return Object.keys(given).length > 0 ? given : undefined;
}
