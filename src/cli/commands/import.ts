// haven import crm FILE, and the --from-libvirt branch of haven vm create: read the files here, send them to
// the API (which checks them against the cluster and creates everything or nothing), print what is (or would
// be) created and every finding as FILE:LINE:COL: severity: message.
import type { Command } from "commander";
import { readFile } from "node:fs/promises";
import { dirname, isAbsolute, resolve } from "node:path";
import { describeConstraint } from "../../adapters/etcd/constraint-store.js";
import type { ImportResult, ReportLine } from "../../api/import-service.js";
import { inputError } from "../../core/errors.js";
import { parseCib } from "../../core/import/cib.js";
import { parseCrm, type CrmItem } from "../../core/import/crm.js";
import { formatScore } from "../../core/scheduler/scores.js";
import type { CliContext } from "../context.js";
import { progress } from "../context.js";
import { printJson, printTable } from "../output.js";

interface ImportOptions {
  dryRun?: boolean;
  json?: boolean;
  skipUnsupported?: boolean;
}

export function registerImport(program: Command, ctx: CliContext): void {
  const command = program
    .command("import")
    .description("import configuration from other cluster managers (see docs/import.md)");
  const formats = [
    {
      name: "crm",
      what: "a Pacemaker crm configuration (crm configure show, or the file you wrote)",
      parse: parseCrm,
    },
    {
      name: "cib",
      what: "Pacemaker's CIB XML (cibadmin --query, pcs cluster cib)",
      parse: parseCib,
    },
  ] as const;
  for (const format of formats) {
    command
      .command(`${format.name} <file>`)
      .description(
        `create VMs from ${format.what}: every ocf:heartbeat:VirtualDomain with its libvirt domain (config=) — its RBD disks and CD-ROM, bridged cards, CPU model and machine type; records its constraints, node attributes and placement-strategy`,
      )
      .option("--dry-run", "show what would be created, and the report, without creating anything")
      .option(
        "--skip-unsupported",
        "import the rest when a primitive is not a VirtualDomain (an IP address, a file system...), and list what was skipped",
      )
      .option("--json", "machine-readable output")
      .action(async (file: string, options: ImportOptions) => {
        const text = await readInput(file);
        const { domains, unreadable } = await readDomains(file, format.parse(text).items);
        const api = await ctx.api();
        const result = await api.post<ImportResult>(`/v1/import/${format.name}`, {
          [format.name]: text,
          file,
          domains,
          unreadable,
          dryRun: options.dryRun ?? false,
          skipUnsupported: options.skipUnsupported ?? false,
        });
        if (options.json) printJson(result);
        else printResult(result);
      });
  }
}

/** Options of `haven vm create` that --from-libvirt looks at. */
export interface FromLibvirtOptions extends ImportOptions {
  fromLibvirt?: string;
  start?: boolean;
  ha?: boolean;
  allowMigrate?: boolean;
}

/** Options of `vm create` that the domain decides (or that `haven vm set` changes afterwards). */
const NOT_WITH_LIBVIRT = [
  ["canary", "--canary"],
  ["kernel", "--kernel"],
  ["initrd", "--initrd"],
  ["append", "--append"],
  ["memory", "--memory"],
  ["vcpus", "--vcpus"],
  ["diskSize", "--disk-size"],
  ["clone", "--clone"],
  ["disk", "--disk"],
  ["blankDisk", "--blank-disk"],
  ["cdrom", "--cdrom"],
  ["firmware", "--firmware"],
  ["cpu", "--cpu"],
  ["machine", "--machine"],
  ["nic", "--nic"],
  ["sshKey", "--ssh-key"],
  ["user", "--user"],
  ["hostname", "--hostname"],
  ["userData", "--user-data"],
  ["networkConfig", "--network-config"],
  ["restartLimit", "--restart-limit"],
  ["relocateLimit", "--relocate-limit"],
  ["failureTimeout", "--failure-timeout"],
  ["priority", "--priority"],
  ["stickiness", "--stickiness"],
] as const;

/** `haven vm create NAME --from-libvirt FILE [--dry-run] [--start] [--json]`. */
export async function createFromLibvirt(
  ctx: CliContext,
  name: string,
  file: string,
  options: FromLibvirtOptions,
): Promise<ImportResult> {
  const given = options as unknown as Record<string, unknown>;
  const clash = NOT_WITH_LIBVIRT.find(([key]) => given[key] !== undefined);
  if (clash)
    throw inputError(
      `${clash[1]} cannot be combined with --from-libvirt: the domain gives the VM's hardware and boot (change them, its policy or cloud-init afterwards with 'haven vm set')`,
    );
  if (options.ha === false || options.allowMigrate === false)
    throw inputError(
      "--no-ha and --no-allow-migrate cannot be combined with --from-libvirt; use 'haven vm set' afterwards",
    );
  const xml = await readInput(file);
  const api = await ctx.api();
  const result = await api.post<ImportResult>("/v1/import/libvirt", {
    name,
    xml,
    file,
    dryRun: options.dryRun ?? false,
    start: options.start ?? false,
  });
  if (options.json) printJson(result);
  else printResult(result);
  return result;
}

async function readInput(file: string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (err) {
    throw inputError(`cannot read ${file}: ${describeReadError(err)}`);
  }
}

/**
 * Every libvirt file a primitive's config= names, keyed as written; a relative path is relative to the
 * configuration file's directory. Unreadable ones go to the API with the reason, which reports them on the
 * primitive's line.
 */
async function readDomains(file: string, items: readonly CrmItem[]) {
  const domains: Record<string, string> = {};
  const unreadable: Record<string, string> = {};
  for (const item of items) {
    if (item.kind !== "primitive" || !Object.hasOwn(item.params, "config")) continue;
    const config = item.params.config!;
    if (Object.hasOwn(domains, config) || Object.hasOwn(unreadable, config)) continue;
    const path = isAbsolute(config) ? config : resolve(dirname(file), config);
    try {
      domains[config] = await readFile(path, "utf8");
    } catch (err) {
      unreadable[config] = `${path}: ${describeReadError(err)}`;
    }
  }
  return { domains, unreadable };
}

function describeReadError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return "no such file";
  if (code === "EACCES") return "permission denied";
  if (code === "EISDIR") return "is a directory";
  return (err as Error).message;
}

export function formatReportLine(line: ReportLine): string {
  return `${line.file}:${line.line}:${line.column}: ${line.severity}: ${line.message}`;
}

function printResult(result: ImportResult): void {
  const out = (line: string) => process.stdout.write(line + "\n");
  const verb = result.dryRun ? "would create" : "created";
  if (result.vms.length === 0) out(`${verb} no VMs`);
  else {
    out(
      `${verb} ${result.vms.length} VM${result.vms.length === 1 ? "" : "s"}${result.dryRun ? " (dry run)" : ""}:`,
    );
    printTable(
      ["NAME", "STATE", "MEMORY", "VCPUS", "DISKS", "NICS", "BOOT", "HA", "FROM"],
      result.vms.map(({ spec, disks, file, line }) => [
        spec.name,
        spec.state,
        `${spec.memoryMb} MB`,
        spec.vcpus,
        disks.join(",") || "-",
        (spec.nics ?? []).map((nic) => `${nic.bridge}/${nic.mac}`).join(",") || "-",
        spec.kernel ?? spec.firmware ?? "bios",
        `restart ${spec.restartLimit}x, migrate ${spec.allowMigrate ? "live" : "cold"}, priority ${spec.priority}, stickiness ${formatScore(spec.stickiness)}`,
        `${file}:${line}`,
      ]),
    );
  }
  if (result.constraints.length > 0) {
    out("");
    out(
      `constraints ${result.dryRun ? "that would be recorded" : "recorded"} (placement and start order follow them):`,
    );
    printTable(
      ["ID", "TYPE", "CONSTRAINT", "FROM"],
      result.constraints.map((c) => [
        c.id,
        c.type,
        describeConstraint(c),
        c.source ? `${c.source.file}:${c.source.line}` : "-",
      ]),
    );
  }
  if (result.placementStrategy) {
    out("");
    out(
      `placement-strategy ${result.placementStrategy.strategy} ${result.dryRun ? "would be set" : "set"} for the cluster`,
    );
  }
  if (result.nodes.length > 0) {
    out("");
    out(
      `node attributes ${result.dryRun ? "that would be recorded" : "recorded"} (location rules match them):`,
    );
    printTable(
      ["NODE", "ATTRIBUTES"],
      result.nodes.map((n) => [
        n.node,
        Object.entries(n.attributes)
          .map(([key, value]) => `${key}=${value}`)
          .join(" ") || "-",
      ]),
    );
  }
  if (result.skipped.length > 0) {
    out("");
    out(`${result.dryRun ? "would skip" : "skipped"} (not imported):`);
    printTable(
      ["ID", "WHY", "FROM"],
      result.skipped.map((skipped) => [skipped.id, skipped.reason, `${skipped.file}:${skipped.line}`]),
    );
  }
  if (result.report.length > 0) {
    out("");
    for (const line of result.report) out(formatReportLine(line));
  }
  for (const note of result.notes) progress(`note: ${note}`);
}
