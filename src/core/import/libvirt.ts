// Reads a libvirt domain XML (the file the seed's VirtualDomain resources point at) into what Haven can
// honour: name, memory, vCPUs, how it boots (firmware from its first disk, or a kernel file), Ceph RBD disks
// and CD-ROM, bridged network cards, CPU model and machine type. Everything else in the file becomes a
// warning that names the element and its line, so an import never drops a setting without a word.
import { own, type Diagnostic, type Located } from "./crm-syntax.js";
import { child, describe, parseXml, type XmlElement } from "./xml.js";
import { readCpu, readNic, readOsType, type DomainReport, type LibvirtNic } from "./libvirt-hardware.js";
import type { DiskBus, Firmware } from "../hardware.js";

export { parseXml, type XmlElement } from "./xml.js";
export type { LibvirtNic } from "./libvirt-hardware.js";

export interface LibvirtRbdDisk {
  pool: string;
  image: string;
  /** Ceph monitors named in <host>, as host:port ([v6]:port); 6789 when no port is given. */
  monitors: string[];
  targetDev: string;
  targetBus: string;
  /** Haven's bus for the target's: virtio → virtio-blk, scsi → virtio-scsi; others become virtio-blk. */
  bus: DiskBus;
  readonly: boolean;
  /** <boot order='N'/> inside the disk, when given. */
  bootOrder?: number;
  line: number;
}

export interface LibvirtDomain {
  name: string;
  /** The hypervisor of <domain type>: kvm or qemu. */
  type: string;
  memoryMb: number;
  /** <currentMemory>, when given: the balloon target, which Haven does not apply. */
  currentMemoryMb?: number;
  vcpus: number;
  /** RBD disks, the boot disk first. */
  disks: LibvirtRbdDisk[];
  /** The first RBD CD-ROM. */
  cdrom?: { pool: string; image: string; line: number };
  nics: LibvirtNic[];
  /** Direct kernel boot from <os>; without it the guest boots from its first disk through firmware. */
  kernel?: string;
  initrd?: string;
  cmdline?: string;
  /** uefi for <os firmware='efi'> or a pflash <loader>; absent means BIOS. */
  firmware?: Firmware;
  /** <os><type machine>, when Haven can run that machine type (an alias or a versioned q35/i440fx). */
  machine?: string;
  /** The CPU model from <cpu>: a QEMU model name, or "host" for host-passthrough. */
  cpu?: { model: string; line: number };
}

export interface LibvirtParseResult {
  domain?: LibvirtDomain;
  diagnostics: Diagnostic[];
}

const MIB = 1024n * 1024n;
const UNIT_BYTES: Record<string, bigint> = {
  b: 1n,
  bytes: 1n,
  kb: 1000n,
  k: 1024n,
  kib: 1024n,
  mb: 1000n ** 2n,
  m: MIB,
  mib: MIB,
  gb: 1000n ** 3n,
  g: 1024n ** 3n,
  gib: 1024n ** 3n,
  tb: 1000n ** 4n,
  t: 1024n ** 4n,
  tib: 1024n ** 4n,
  pb: 1000n ** 5n,
  p: 1024n ** 5n,
  pib: 1024n ** 5n,
  eb: 1000n ** 6n,
  e: 1024n ** 6n,
  eib: 1024n ** 6n,
};

/** libvirt's memory units (KiB when none is given) to whole MiB, rounded up; exact with bigints. */
export function memoryToMb(
  value: string,
  unit = "KiB",
): { mb: number; rounded: boolean } | { error: string } {
  const factor = own(UNIT_BYTES, unit.toLowerCase());
  if (factor === undefined) return { error: `unknown memory unit "${unit}"` };
  if (!/^\s*\d+\s*$/.test(value)) return { error: `memory "${value.trim()}" is not a whole number` };
  const bytes = BigInt(value.trim()) * factor;
  const mb = (bytes + MIB - 1n) / MIB;
  return { mb: Number(mb), rounded: bytes % MIB !== 0n };
}

/** Why Haven cannot honour a top-level element; anything not listed gets a generic reason. */
const UNHONOURED_DOMAIN_ELEMENTS: Record<string, string> = {
  uuid: "Haven identifies a VM by its name",
  title: "descriptive text is not kept",
  description: "descriptive text is not kept",
  metadata: "application metadata is not kept",
  clock: "Haven uses QEMU's default clock",
  on_poweroff: "Haven's HA policy decides what happens when a guest stops",
  on_reboot: "Haven's HA policy decides what happens when a guest stops",
  on_crash: "Haven's HA policy decides what happens when a guest crashes",
  pm: "guest power management is not supported",
  seclabel: "Haven does not apply libvirt security labels",
};

/** Why Haven cannot honour a device; the guest gets its disks, CD-ROM, cards and one serial console. */
const UNHONOURED_DEVICES: Record<string, string> = {
  emulator: "Haven runs its own QEMU binary",
  graphics: "Haven guests have no display; use the serial console (haven console)",
  video: "Haven guests have no display; use the serial console (haven console)",
  serial: "Haven gives every guest one serial console of its own",
  console: "Haven gives every guest one serial console of its own",
};

/** Parses a libvirt domain; `domain` is present only when the file has no error (warnings are fine). */
export function parseLibvirtDomain(text: string): LibvirtParseResult {
  const { root, diagnostics } = parseXml(text);
  if (!root) return { diagnostics };
  const report = reporter(diagnostics);
  if (root.name !== "domain") {
    report.error(root, `expected a <domain> element, found <${root.name}>`);
    return { diagnostics };
  }
  const domain = readDomain(root, report);
  diagnostics.sort((a, b) => a.line - b.line || a.column - b.column);
  const failed = diagnostics.some((diagnostic) => diagnostic.severity === "error");
  return failed ? { diagnostics } : { domain, diagnostics };
}

type Report = DomainReport;

function reporter(diagnostics: Diagnostic[]): Report {
  const add = (severity: Diagnostic["severity"]) => (at: Located, message: string) =>
    diagnostics.push({ line: at.line, column: at.column, severity, message });
  return { error: add("error"), warning: add("warning") };
}

/** The elements of <domain> that Haven reads; libvirt allows each once. */
const SINGLE_ELEMENTS = ["name", "memory", "currentMemory", "vcpu", "os", "devices"];

function readDomain(root: XmlElement, report: Report): LibvirtDomain {
  const type = root.attributes.type ?? "";
  if (type !== "kvm" && type !== "qemu")
    report.error(root, `<domain type='${type}'>: Haven runs QEMU/KVM guests only`);
  const name = textOf(root, "name");
  if (!name) report.error(root, "the domain has no <name>");
  const memoryMb = readMemory(root, "memory", report);
  if (memoryMb === undefined && !child(root, "memory")) report.error(root, "the domain has no <memory>");
  const domain: LibvirtDomain = {
    name: name ?? "",
    type,
    memoryMb: memoryMb ?? 0,
    vcpus: readVcpus(root, report),
    disks: [],
    nics: [],
  };
  const currentMemoryMb = readMemory(root, "currentMemory", report);
  if (currentMemoryMb !== undefined) domain.currentMemoryMb = currentMemoryMb;
  if (currentMemoryMb !== undefined && memoryMb !== undefined && currentMemoryMb !== memoryMb) {
    report.warning(
      child(root, "currentMemory")!,
      `<currentMemory> ${currentMemoryMb} MB is not applied: the guest gets all of <memory> (${memoryMb} MB), Haven does not balloon`,
    );
  }
  const seen = new Set<string>();
  for (const element of root.children) {
    if (SINGLE_ELEMENTS.includes(element.name) && seen.has(element.name)) {
      report.error(element, `<${element.name}> is given twice`);
    }
    seen.add(element.name);
    if (element.name === "os") readOs(element, domain, report);
    else if (element.name === "devices") readDevices(element, domain, report);
    else if (element.name === "features") readFeatures(element, report);
    else if (element.name === "cpu") {
      const model = readCpu(element, report);
      if (model) domain.cpu = { model, line: element.line };
    } else if (!SINGLE_ELEMENTS.includes(element.name)) {
      report.warning(
        element,
        `${describe(element)} is not honoured: ${own(UNHONOURED_DOMAIN_ELEMENTS, element.name) ?? "Haven has no equivalent"}`,
      );
    }
  }
  return domain; // incomplete when an error was reported; the caller then drops it
}

/** Machine features every Haven guest has (QEMU's defaults); the others are reported in one line. */
const DEFAULT_FEATURES = ["acpi", "apic", "pae"];

function readFeatures(features: XmlElement, report: Report): void {
  const others = features.children.filter((element) => !DEFAULT_FEATURES.includes(element.name));
  if (others.length > 0)
    report.warning(
      others[0]!,
      `<features>: ${others.map((element) => `<${element.name}>`).join(", ")} not honoured: Haven's guests have QEMU's default machine features (ACPI, APIC)`,
    );
}

function readMemory(root: XmlElement, elementName: string, report: Report): number | undefined {
  const element = child(root, elementName);
  if (!element) return undefined;
  const result = memoryToMb(element.text, element.attributes.unit);
  if ("error" in result) {
    report.error(element, `<${elementName}>: ${result.error}`);
    return undefined;
  }
  if (result.rounded)
    report.warning(
      element,
      `<${elementName}> ${element.text.trim()} ${element.attributes.unit ?? "KiB"} is not a whole number of MiB; rounded up to ${result.mb} MB`,
    );
  return result.mb;
}

function readVcpus(root: XmlElement, report: Report): number {
  const element = child(root, "vcpu");
  if (!element) {
    report.warning(root, "the domain has no <vcpu>; libvirt's default of 1 vCPU is used");
    return 1;
  }
  const text = element.text.trim();
  if (!/^\d+$/.test(text) || Number(text) < 1) {
    report.error(element, `<vcpu> "${text}" is not a positive whole number`);
    return 0;
  }
  const { current, placement, cpuset } = element.attributes;
  if (current !== undefined && current !== text) {
    report.warning(
      element,
      `<vcpu current='${current}'> is not honoured: Haven starts the guest with all ${text} vCPUs`,
    );
  }
  if (cpuset !== undefined || (placement !== undefined && placement !== "static")) {
    report.warning(element, "<vcpu> pinning (cpuset, placement) is not honoured");
  }
  return Number(text);
}

function readOs(os: XmlElement, domain: LibvirtDomain, report: Report): void {
  if (os.attributes.firmware === "efi") domain.firmware = "uefi";
  const boots: XmlElement[] = [];
  for (const element of os.children) {
    const value = element.text.trim();
    if (element.name === "kernel") domain.kernel = value;
    else if (element.name === "initrd") domain.initrd = value;
    else if (element.name === "cmdline") domain.cmdline = value;
    else if (element.name === "type") {
      const machine = readOsType(element, report);
      if (machine) domain.machine = machine;
    } else if (element.name === "loader") readLoader(element, domain, report);
    else if (element.name === "boot") boots.push(element);
    else if (element.name === "nvram")
      report.warning(
        element,
        "<nvram> is not imported: Haven gives a UEFI guest a fresh variable store on the cluster's storage (boot entries are found again through the removable-media path)",
      );
    else if (element.name === "bootmenu" || element.name === "smbios" || element.name === "bios")
      report.warning(element, `${describe(element)} is not honoured: Haven boots the first disk first`);
    else report.warning(element, `${describe(element)} in <os> is not honoured`);
  }
  const first = boots[0]?.attributes.dev;
  if (first !== undefined && first !== "hd")
    report.warning(
      boots[0]!,
      `<boot dev='${first}'> is not honoured: Haven boots the first disk (or the kernel file), then the CD-ROM`,
    );
}

/** A pflash loader is UEFI (OVMF); Haven uses its own copy of the firmware, from Debian's ovmf. */
function readLoader(loader: XmlElement, domain: LibvirtDomain, report: Report): void {
  const path = loader.text.trim();
  if (loader.attributes.type === "pflash" || /ovmf|edk2|\.fd$/i.test(path)) domain.firmware = "uefi";
  if (loader.attributes.secure === "yes")
    report.warning(
      loader,
      "<loader secure='yes'>: Secure Boot is not honoured: Haven's UEFI firmware is OVMF without enforced Secure Boot",
    );
}

function readDevices(devices: XmlElement, domain: LibvirtDomain, report: Report): void {
  for (const element of devices.children) {
    if (element.name === "disk") readDisk(element, domain, report);
    else if (element.name === "interface") {
      const nic = readNic(element, report);
      if (nic) domain.nics.push(nic);
    } else if (element.name === "controller" && element.attributes.type === "scsi") {
      const model = element.attributes.model;
      if (model !== undefined && model !== "virtio-scsi")
        report.warning(
          element,
          `<controller type='scsi' model='${model}'> is not honoured: Haven's SCSI disks are on virtio-scsi`,
        );
    } else {
      const reason = own(UNHONOURED_DEVICES, element.name) ?? "Haven creates no such device";
      report.warning(element, `${describe(element)} is not imported: ${reason}`);
    }
  }
  // libvirt boots the disk with the lowest <boot order>; Haven boots its first disk.
  if (domain.disks.some((disk) => disk.bootOrder !== undefined)) {
    const order = (disk: LibvirtRbdDisk) => disk.bootOrder ?? Number.MAX_SAFE_INTEGER;
    domain.disks.sort((a, b) => order(a) - order(b));
  }
}

// Disk children that are part of an RBD disk Haven imports; the rest of a disk's children are reported.
const DISK_CHILDREN_READ = ["source", "target", "readonly", "driver", "auth", "boot"];

/** An RBD disk goes to `domain.disks`, an RBD CD-ROM to `domain.cdrom`; anything else is reported. */
function readDisk(disk: XmlElement, domain: LibvirtDomain, report: Report): void {
  const target = child(disk, "target");
  const targetDev = target?.attributes.dev;
  const { type, device = "disk" } = disk.attributes;
  const source = child(disk, "source");
  const label = `${device === "cdrom" ? "CD-ROM" : "disk"} ${targetDev ?? "(no target)"}`;
  if (device !== "disk" && device !== "cdrom") {
    report.warning(
      disk,
      `${label} (<disk device='${device}'>) is not imported: Haven attaches RBD disks and a CD-ROM only`,
    );
    return;
  }
  if (type !== "network" || source?.attributes.protocol !== "rbd") {
    const where = source?.attributes.file ?? source?.attributes.dev ?? source?.attributes.protocol ?? "";
    const reason =
      device === "cdrom"
        ? "Haven's CD-ROM is an image on the cluster's storage ('haven disk import FILE', then 'haven vm set NAME --cdrom IMAGE')"
        : "Haven runs disks on Ceph RBD only";
    report.warning(disk, `${label} (${describe(disk)}${where && ` ${where}`}) is not imported: ${reason}`);
    return;
  }
  const name = rbdName(source, label, report);
  if (!name) return;
  reportDiskDetails(disk, source, label, report);
  const monitors = readMonitors(source, label, report);
  if (device === "cdrom") {
    if (domain.cdrom) report.warning(disk, `${label} is not imported: Haven gives a guest one CD-ROM`);
    else domain.cdrom = { ...name, line: disk.line };
    return;
  }
  if (!targetDev) return void report.error(disk, "an rbd disk has no <target dev=...>");
  const targetBus = target.attributes.bus ?? busFromDevice(targetDev);
  const bus = own(DISK_BUSES, targetBus);
  if (!bus)
    report.warning(
      target,
      `${label}: bus '${targetBus}' is not honoured: Haven attaches the disk as virtio-blk (the guest needs virtio drivers)`,
    );
  const readonly = child(disk, "readonly") !== undefined;
  const bootOrder = Number(child(disk, "boot")?.attributes.order);
  domain.disks.push({
    ...name,
    monitors,
    targetDev,
    targetBus,
    bus: bus ?? "virtio-blk",
    readonly,
    ...(Number.isInteger(bootOrder) && { bootOrder }),
    line: disk.line,
  });
}

/** libvirt's disk buses that Haven offers, as Haven names them. */
const DISK_BUSES: Record<string, DiskBus> = { virtio: "virtio-blk", scsi: "virtio-scsi" };

/** `<source protocol='rbd' name='POOL/IMAGE'>`; namespaces and snapshots are refused. */
function rbdName(source: XmlElement, label: string, report: Report) {
  const [pool = "", image = "", ...rest] = (source.attributes.name ?? "").split("/");
  if (!pool || !image || rest.length > 0 || image.includes("@")) {
    report.error(
      source,
      `${label}: rbd source name '${source.attributes.name ?? ""}' is not POOL/IMAGE (namespaces and snapshots are not supported)`,
    );
    return undefined;
  }
  return { pool, image };
}

/** libvirt infers the bus from the device name when <target> does not say. */
function busFromDevice(dev: string): string {
  if (dev.startsWith("vd")) return "virtio";
  if (dev.startsWith("sd")) return "scsi";
  if (dev.startsWith("hd")) return "ide";
  return "unknown";
}

function reportDiskDetails(disk: XmlElement, source: XmlElement, label: string, report: Report): void {
  for (const auth of [child(disk, "auth"), child(source, "auth")]) {
    if (auth)
      report.warning(
        auth,
        `${label}: <auth username='${auth.attributes.username ?? ""}'> secret is not imported: Haven reaches Ceph with its own identity`,
      );
  }
  const driver = child(disk, "driver");
  const driverType = driver?.attributes.type ?? "raw";
  if (driverType !== "raw")
    report.error(driver!, `${label}: format '${driverType}' is not supported on rbd: Haven disks are raw`);
  const tuning = Object.keys(driver?.attributes ?? {}).filter((name) => name !== "name" && name !== "type");
  if (tuning.length > 0) {
    report.warning(
      driver!,
      `${label}: driver ${tuning.join(", ")} not honoured: Haven opens RBD disks with O_DIRECT and honoured flushes`,
    );
  }
  const others = disk.children.filter((element) => !DISK_CHILDREN_READ.includes(element.name));
  if (others.length > 0) {
    report.warning(
      others[0]!,
      `${label}: ${others.map((element) => `<${element.name}>`).join(", ")} not honoured: Haven chooses device addresses and settings itself`,
    );
  }
}

function readMonitors(source: XmlElement, label: string, report: Report): string[] {
  const monitors: string[] = [];
  for (const host of source.children.filter((element) => element.name === "host")) {
    const { name, port = "6789", transport } = host.attributes;
    if (!name || (transport !== undefined && transport !== "tcp")) {
      report.warning(host, `${label}: ${describe(host)} is not a TCP monitor address; ignored`);
      continue;
    }
    monitors.push(name.includes(":") ? `[${name}]:${port}` : `${name}:${port}`);
  }
  const others = source.children.filter((element) => element.name !== "host" && element.name !== "auth");
  for (const element of others)
    report.warning(element, `${label}: ${describe(element)} in <source> is not honoured`);
  return monitors;
}

function textOf(element: XmlElement, name: string): string | undefined {
  const text = child(element, name)?.text.trim();
  return text ? text : undefined;
}
