// The parts of a libvirt domain that describe the guest's hardware: the machine type of <os><type>, the CPU
// model of <cpu> and the bridged network cards of <interface>. Each is taken where Haven can run it as
// written (src/core/hardware.ts says what is valid) and reported, with its line, where it cannot.
import {
  HOST_CPU_MODEL,
  cpuModelSchema,
  macSchema,
  machineTypeSchema,
  nicModelSchema,
  type Nic,
} from "../hardware.js";
import type { Located } from "./crm-syntax.js";
import { child, describe, type XmlElement } from "./xml.js";

export interface DomainReport {
  error(at: Located, message: string): void;
  warning(at: Located, message: string): void;
}

export interface LibvirtNic {
  bridge: string;
  /** As written; absent when the domain has none (Haven then chooses one). */
  mac?: string;
  model: Nic["model"];
  vlan?: number;
  line: number;
}

/** QEMU's moving aliases; Haven records the versioned type they stand for when the VM is created. */
const MACHINE_ALIASES = ["q35", "pc"];

/** `<type arch machine>hvm</type>`: the machine type when Haven can run it, else undefined (reported). */
export function readOsType(type: XmlElement, report: DomainReport): string | undefined {
  const value = type.text.trim();
  if (value !== "hvm") report.error(type, `<os><type>${value}</type>: Haven runs full (hvm) guests only`);
  const arch = type.attributes.arch;
  if (arch && arch !== "x86_64")
    report.warning(type, `arch '${arch}' is not honoured: Haven runs QEMU for the host's architecture`);
  const machine = type.attributes.machine;
  if (machine === undefined) return undefined;
  if (MACHINE_ALIASES.includes(machine) || machineTypeSchema.safeParse(machine).success) return machine;
  report.warning(
    type,
    `machine type '${machine}' is not honoured: Haven runs a versioned pc-q35 or pc-i440fx machine; the VM gets this QEMU's q35`,
  );
  return undefined;
}

/**
 * `<cpu>`: a named model (mode='custom', libvirt's default) is kept; host-passthrough becomes "host", which
 * ties live migration to identical hosts; anything else gets Haven's migration-safe default model.
 */
export function readCpu(cpu: XmlElement, report: DomainReport): string | undefined {
  const mode = cpu.attributes.mode ?? "custom";
  const extras = cpu.children.filter((element) => element.name !== "model");
  if (extras.length > 0)
    report.warning(
      extras[0]!,
      `<cpu>: ${[...new Set(extras.map((element) => `<${element.name}>`))].join(", ")} not honoured: the guest gets the model's own features and a plain count of vCPUs`,
    );
  if (mode === "host-passthrough") {
    report.warning(
      cpu,
      "<cpu mode='host-passthrough'> is imported as CPU model host: the guest sees this host's CPU and can move live only to identical hosts",
    );
    return HOST_CPU_MODEL;
  }
  if (mode !== "custom") {
    report.warning(
      cpu,
      `<cpu mode='${mode}'> is not honoured: the VM gets Haven's migration-safe default CPU model`,
    );
    return undefined;
  }
  const model = child(cpu, "model")?.text.trim();
  if (!model) return undefined;
  if (!cpuModelSchema.safeParse(model).success) {
    report.warning(cpu, `<cpu> model '${model}' is not a QEMU CPU model name; the VM gets Haven's default`);
    return undefined;
  }
  return model;
}

/** Children of a bridged <interface> that Haven reads; the others are reported in one line. */
const NIC_CHILDREN_READ = ["source", "mac", "model", "vlan"];

/** `<interface type='bridge'>` to a card on that bridge; other kinds of interface are reported. */
export function readNic(element: XmlElement, report: DomainReport): LibvirtNic | undefined {
  const type = element.attributes.type;
  const bridge = child(element, "source")?.attributes.bridge;
  if (type !== "bridge" || !bridge) {
    report.warning(
      element,
      `${describe(element)} is not imported: Haven plugs cards into a bridge (<interface type='bridge'> with <source bridge=...>); add one with 'haven vm set NAME --add-nic bridge=BRIDGE'`,
    );
    return undefined;
  }
  const label = `card on ${bridge}`;
  const nic: LibvirtNic = { bridge, model: readNicModel(element, label, report), line: element.line };
  const macElement = child(element, "mac");
  const address = macElement?.attributes.address;
  if (address !== undefined) {
    const mac = macSchema.safeParse(address);
    if (mac.success) nic.mac = mac.data;
    else
      report.error(
        macElement!,
        `${label}: ${mac.error.issues[0]?.message ?? "bad MAC address"}, got '${address}'`,
      );
  }
  const vlan = readVlan(element, label, report);
  if (vlan !== undefined) nic.vlan = vlan;
  const others = element.children.filter((each) => !NIC_CHILDREN_READ.includes(each.name));
  if (others.length > 0)
    report.warning(
      others[0]!,
      `${label}: ${others.map((each) => `<${each.name}>`).join(", ")} not honoured: Haven plugs the card into the bridge through a tap device of its own and chooses device addresses itself`,
    );
  return nic;
}

function readNicModel(element: XmlElement, label: string, report: DomainReport): Nic["model"] {
  const modelElement = child(element, "model");
  const type = modelElement?.attributes.type;
  const model = nicModelSchema.safeParse(type);
  if (model.success) return model.data;
  report.warning(
    modelElement ?? element,
    type === undefined
      ? `${label}: no <model>: the card is virtio (libvirt would choose the machine's default card)`
      : `${label}: model '${type}' is not offered: the card is virtio (Haven offers virtio and e1000)`,
  );
  return "virtio";
}

/** One `<vlan><tag id='N'/></vlan>`: the card's 802.1Q tag. Trunks of several tags are not supported. */
function readVlan(element: XmlElement, label: string, report: DomainReport): number | undefined {
  const vlan = child(element, "vlan");
  if (!vlan) return undefined;
  const tags = vlan.children.filter((each) => each.name === "tag");
  const id = Number(tags[0]?.attributes.id);
  if (tags.length !== 1 || vlan.attributes.trunk === "yes") {
    report.warning(vlan, `${label}: a VLAN trunk is not honoured: Haven puts a card on one VLAN`);
    return undefined;
  }
  if (!Number.isInteger(id) || id < 1 || id > 4094)
    return void report.error(tags[0]!, `${label}: VLAN tag '${tags[0]!.attributes.id ?? ""}' is not 1-4094`);
  return id;
}
