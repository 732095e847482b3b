// Parsers of the hardware options of `haven vm create` and `vm set`: comma-separated key=value lists as
// QEMU and virt-install write them. Bad values become one line naming the option and what is wrong; the
// API checks the rest (bridges, MACs in use, disks that exist).
import { InvalidArgumentError } from "commander";
import { parseSizeMb } from "../core/units.js";

export interface NicOption {
  bridge: string;
  mac?: string;
  model?: "virtio" | "e1000";
  vlan?: number;
}

export interface DiskOption {
  image: string;
  pool?: string;
  bus?: "virtio-blk" | "virtio-scsi";
}

/** `--nic bridge=NAME[,mac=MAC][,model=virtio|e1000][,vlan=ID]` */
export function parseNic(value: string, previous: NicOption[] = []): NicOption[] {
  const fields = keyValues("--nic", value, ["bridge", "mac", "model", "vlan"]);
  const bridge = fields.get("bridge");
  if (!bridge) throw new InvalidArgumentError(`--nic needs bridge=NAME, got "${value}"`);
  const nic: NicOption = { bridge };
  const mac = fields.get("mac");
  if (mac !== undefined) {
    if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(mac))
      throw new InvalidArgumentError(
        `--nic: mac must be six hex pairs such as 52:54:00:12:34:56, got "${mac}"`,
      );
    nic.mac = mac.toLowerCase();
  }
  const model = fields.get("model");
  if (model !== undefined) {
    if (model !== "virtio" && model !== "e1000")
      throw new InvalidArgumentError(`--nic: model must be virtio or e1000, got "${model}"`);
    nic.model = model;
  }
  const vlan = fields.get("vlan");
  if (vlan !== undefined) {
    if (!/^\d+$/.test(vlan) || Number(vlan) < 1 || Number(vlan) > 4094)
      throw new InvalidArgumentError(`--nic: vlan must be 1-4094, got "${vlan}"`);
    nic.vlan = Number(vlan);
  }
  return [...previous, nic];
}

/** `--disk NAME[,bus=virtio-blk|virtio-scsi][,pool=POOL]` */
export function parseDisk(value: string, previous: DiskOption[] = []): DiskOption[] {
  const [image, ...rest] = value.split(",");
  if (!image || image.includes("="))
    throw new InvalidArgumentError(`--disk needs a disk name first, got "${value}"`);
  const fields = keyValues("--disk", rest.join(","), ["bus", "pool"]);
  return [...previous, { image, ...busAndPool("--disk", fields) }];
}

/** `--blank-disk SIZE[,bus=virtio-blk|virtio-scsi]` */
export function parseBlankDisk(
  value: string,
  previous: Array<{ sizeMb: number; bus?: DiskOption["bus"] }> = [],
): Array<{ sizeMb: number; bus?: DiskOption["bus"] }> {
  const [size = "", ...rest] = value.split(",");
  const sizeMb = parseSizeMb(size);
  if (typeof sizeMb !== "number") throw new InvalidArgumentError(`--blank-disk: ${sizeMb.error}`);
  const { bus } = busAndPool("--blank-disk", keyValues("--blank-disk", rest.join(","), ["bus"]));
  return [...previous, { sizeMb, ...(bus && { bus }) }];
}

/** `--clone DISK@SNAPSHOT` */
export function parseClone(value: string): { image: string; snapshot: string } {
  const match = /^([^@]+)@([^@]+)$/.exec(value);
  if (!match) throw new InvalidArgumentError(`--clone must be DISK@SNAPSHOT, got "${value}"`);
  return { image: match[1]!, snapshot: match[2]! };
}

/** Repeatable options collect into a list. */
export const collect = (value: string, previous: string[] = []) => [...previous, value];

function busAndPool(option: string, fields: Map<string, string>): Pick<DiskOption, "bus" | "pool"> {
  const bus = fields.get("bus");
  if (bus !== undefined && bus !== "virtio-blk" && bus !== "virtio-scsi")
    throw new InvalidArgumentError(`${option}: bus must be virtio-blk or virtio-scsi, got "${bus}"`);
  const pool = fields.get("pool");
  return { ...(bus !== undefined && { bus }), ...(pool !== undefined && { pool }) };
}

function keyValues(option: string, value: string, keys: string[]): Map<string, string> {
  const fields = new Map<string, string>();
  for (const part of value.split(",").filter((p) => p !== "")) {
    const eq = part.indexOf("=");
    const key = eq < 0 ? part : part.slice(0, eq);
    if (eq < 0 || !keys.includes(key))
      throw new InvalidArgumentError(`${option}: unknown setting "${part}" (known: ${keys.join(", ")})`);
    if (fields.has(key)) throw new InvalidArgumentError(`${option}: ${key} is given twice`);
    fields.set(key, part.slice(eq + 1));
  }
  return fields;
}
