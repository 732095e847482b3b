// What this node's QEMU offers: its machine types (and what the `q35` alias means in this version), its CPU
// models, and whether UEFI firmware is installed. Asked once per process: the answers change only with an
// upgrade of QEMU or OVMF, which restarts havend anyway.
import { access } from "node:fs/promises";
import { run } from "../../lib/command.js";
import { OVMF_CODE, OVMF_VARS_TEMPLATE } from "./cmdline.js";

export interface QemuCapabilities {
  /** Versioned machine types, and what each alias (q35, pc) stands for. */
  machines: Set<string>;
  aliases: Map<string, string>;
  cpuModels: Set<string>;
  /** Debian's ovmf package is installed: UEFI guests can run. */
  uefi: boolean;
}

let cached: Promise<QemuCapabilities> | undefined;

export function qemuCapabilities(binary = "qemu-system-x86_64"): Promise<QemuCapabilities> {
  cached ??= readCapabilities(binary).catch((err: unknown) => {
    cached = undefined;
    throw err;
  });
  return cached;
}

async function readCapabilities(binary: string): Promise<QemuCapabilities> {
  const [machineHelp, cpuHelp, uefi] = await Promise.all([
    run(binary, ["-machine", "help"]),
    run(binary, ["-cpu", "help"]),
    Promise.all([access(OVMF_CODE), access(OVMF_VARS_TEMPLATE)]).then(
      () => true,
      () => false,
    ),
  ]);
  return { ...parseMachines(machineHelp), cpuModels: parseCpuModels(cpuHelp), uefi };
}

/** `-machine help`: "q35   Standard PC (Q35 + ICH9, 2009) (alias of pc-q35-7.2)", "pc-q35-7.2   Standard PC…". */
export function parseMachines(help: string): Pick<QemuCapabilities, "machines" | "aliases"> {
  const machines = new Set<string>();
  const aliases = new Map<string, string>();
  for (const line of help.split("\n")) {
    const name = /^(\S+)\s+\S/.exec(line)?.[1];
    if (name === undefined || name === "Supported") continue;
    const alias = /\(alias of (\S+)\)/.exec(line)?.[1];
    if (alias) aliases.set(name, alias);
    else machines.add(name);
  }
  return { machines, aliases };
}

/** `-cpu help`: "x86 Westmere-v1   Westmere E56xx/…"; the model names, without the architecture column. */
export function parseCpuModels(help: string): Set<string> {
  const models = new Set<string>();
  for (const line of help.split("\n")) {
    const name = /^x86\s+(\S+)/.exec(line)?.[1];
    if (name !== undefined) models.add(name);
  }
  models.add("host");
  return models;
}
