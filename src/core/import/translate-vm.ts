// One VirtualDomain primitive to one VM: its params, meta attributes (over rsc_defaults), op timeouts (over
// op_defaults) and the libvirt domain its config= names. Whatever Haven honours is mapped; the rest is
// reported on the primitive's line (or the libvirt file's), never silently dropped.
import { memoryMbSchema, NAME_PATTERN, vcpusSchema } from "../model.js";
import {
  INFINITY_SCORE,
  parseBoolean,
  parseDuration,
  parseScore,
  type AttributeMap,
  type CrmItem,
  type CrmOp,
  type Diagnostic,
  type Located,
} from "./crm.js";
import { own } from "./crm-syntax.js";
import type { DiskBus, Firmware } from "../hardware.js";
import type { LibvirtDomain, LibvirtParseResult } from "./libvirt.js";
import type { Place, Reporter } from "./translate-constraints.js";

/** Reads and parses the libvirt file a VirtualDomain's config= names; an error string when unreadable. */
export type DomainLoader = (configPath: string) => LibvirtParseResult | { error: string };

export interface ImportReporter extends Reporter {
  /** Errors reported so far, so a VM with errors is left out of the plan. */
  readonly errorCount: number;
  /** Adds the findings of another file (a libvirt domain), tagged with its path. */
  addFromFile(source: string, diagnostics: Diagnostic[]): void;
}

export interface ImportedTimeouts {
  startSeconds?: number;
  stopSeconds?: number;
  monitorIntervalSeconds?: number;
  monitorTimeoutSeconds?: number;
  migrateSeconds?: number;
}

/** The policy side of a VM, from meta attributes and rsc_defaults. */
export interface ImportedPolicy {
  /** Pacemaker's allow-migrate (default false): move by live migration instead of stop and start. */
  allowMigrate: boolean;
  targetRole: "started" | "stopped";
  stickiness?: number;
  priority?: number;
  /** Failures on one node before the VM leaves it; absent when unlimited (Pacemaker's INFINITY or 0). */
  migrationThreshold?: number;
  /** Seconds after which failures are forgotten; 0 = never, as Pacemaker's failure-timeout=0. */
  failureTimeoutSeconds?: number;
}

export interface ImportedVm extends ImportedPolicy {
  name: string;
  /** The libvirt domain file (VirtualDomain's config=). */
  config: string;
  memoryMb: number;
  vcpus: number;
  /** The boot disk first. */
  disks: Array<{ pool: string; image: string; bus: DiskBus }>;
  cdrom?: { pool: string; image: string };
  nics: Array<{ bridge: string; mac?: string; model: "virtio" | "e1000"; vlan?: number }>;
  /** Direct kernel boot from the domain's <os>; without it the guest boots from its first disk. */
  kernel?: string;
  initrd?: string;
  cmdline?: string;
  firmware?: Firmware;
  /** As the domain names it (an alias such as q35, or a versioned type); resolved when the VM is created. */
  machine?: string;
  cpu?: string;
  migrationTransport: "tls" | "tcp";
  /** VirtualDomain's force_stop: power off at once instead of a graceful shutdown. */
  forceStop: boolean;
  timeouts: ImportedTimeouts;
  /** The primitive's line in the crm file (1 for a VM from --from-libvirt). */
  line: number;
}

export interface ImportDefaults {
  policy: Partial<ImportedPolicy>;
  opTimeoutSeconds?: number;
}

type Primitive = Extract<CrmItem, { kind: "primitive" }>;

/** The VirtualDomain parameters Haven knows; null when honoured, else why not. */
const VIRTUAL_DOMAIN_PARAMS: Record<string, string | null> = {
  config: null,
  hypervisor: null,
  migration_transport: null,
  force_stop: null,
  autoset_utilization_cpu: null,
  autoset_utilization_hv_memory: null,
  autoset_utilization_host_memory: null,
  migration_user: "Haven migrates between its own agents",
  migration_downtime: "Haven leaves the downtime to QEMU",
  migration_speed: "Haven does not limit migration bandwidth",
  migration_network_suffix: "Haven chooses the migration address itself",
  migrateuri: "Haven chooses the migration address itself",
  migrateport: "Haven chooses the migration port itself",
  remoteuri: "Haven chooses the migration address itself",
  migrate_options: "Haven has no extra migration options",
  monitor_scripts: "Haven monitors guests through QMP only",
  unset_utilization_cpu: "Haven always counts a VM's vCPUs and memory",
  unset_utilization_hv_memory: "Haven always counts a VM's vCPUs and memory",
  unset_utilization_host_memory: "Haven always counts a VM's vCPUs and memory",
  save_config_on_stop: "Haven keeps the VM's configuration in etcd",
  sync_config_on_stop: "Haven keeps the VM's configuration in etcd",
  snapshot: "Haven does not save guest memory on stop",
  backingfile: "Haven runs guests from their RBD disks only",
  stateless: "Haven runs guests from their RBD disks only",
  copyindirs: "Haven runs guests from their RBD disks only",
  shutdown_mode: "Haven stops guests through QMP",
  start_resources: "Haven manages no libvirt networks or storage pools",
};

const TARGET_ROLES: Record<string, "started" | "stopped"> = {
  started: "started",
  stopped: "stopped",
  promoted: "started",
  unpromoted: "started",
  master: "started",
  slave: "started",
};

/** Meta attributes Pacemaker knows that Haven does not honour, with the reason. */
const META_NOT_HONOURED: Record<string, string> = {
  "is-managed": "Haven manages every VM it imports",
  maintenance: "Haven manages every VM it imports",
  "multiple-active": "a Haven VM never runs on two nodes",
  requires: "Haven always fences before it recovers a VM",
  "remote-node": "Pacemaker remote nodes are not supported",
  critical: "Haven has no groups",
};

/** Maps a VirtualDomain primitive; undefined (and errors reported) when it cannot become a VM. */
export function translateVirtualDomain(
  item: Primitive,
  defaults: ImportDefaults,
  loadDomain: DomainLoader,
  report: ImportReporter,
): ImportedVm | undefined {
  const errorsBefore = report.errorCount;
  const fail = (message: string) => report.error(item, `${item.id}: ${message}`);
  if (!NAME_PATTERN.test(item.id) || item.id.includes("..")) fail("is not a valid Haven VM name");
  const params = readParams(item, report);
  const policy: ImportedPolicy = { allowMigrate: false, targetRole: "started", ...defaults.policy };
  Object.assign(policy, readMeta(item.meta, item, `${item.id}: meta`, report));
  const timeouts = readOps(item, defaults.opTimeoutSeconds, report);
  if (Object.keys(item.utilization).length > 0) {
    report.warning(item, `${item.id}: utilization is not honoured: Haven counts the VM's vCPUs and memory`);
  }
  if (params.config === undefined) return void fail("has no config= (the libvirt domain file)");
  const domain = loadVmDomain(item, params.config, loadDomain, report);
  if (!domain || report.errorCount > errorsBefore) return undefined;
  const vm: ImportedVm = {
    name: item.id,
    config: params.config,
    ...domainResources(item.id, item, params.config, domain, report),
    ...withoutUndefined(policy),
    migrationTransport: params.migrationTransport,
    forceStop: params.forceStop,
    timeouts,
    line: item.line,
  };
  return report.errorCount > errorsBefore ? undefined : vm;
}

function readParams(item: Primitive, report: Reporter) {
  const result = { config: item.params.config, migrationTransport: "tls" as "tls" | "tcp", forceStop: false };
  for (const [name, value] of Object.entries(item.params)) {
    const reason = own(VIRTUAL_DOMAIN_PARAMS, name);
    if (reason === undefined) report.error(item, `${item.id}: unknown VirtualDomain parameter "${name}"`);
    else if (reason !== null) report.warning(item, `${item.id}: ${name}=${value} is not honoured: ${reason}`);
    else if (name.startsWith("autoset_utilization") && parseBoolean(value) === false) {
      report.warning(
        item,
        `${item.id}: ${name}=${value} is not honoured: Haven always counts a VM's vCPUs and memory`,
      );
    }
  }
  const { hypervisor, migration_transport: transport, force_stop: forceStop } = item.params;
  if (hypervisor !== undefined && hypervisor !== "qemu:///system") {
    report.warning(
      item,
      `${item.id}: hypervisor ${hypervisor} is not honoured: Haven runs the guest under its own QEMU, as qemu:///system`,
    );
  }
  if (transport === "tcp") result.migrationTransport = "tcp";
  else if (transport === "ssh")
    report.warning(item, `${item.id}: migration over ssh is not supported; Haven migrates over TLS`);
  else if (transport !== undefined && transport !== "tls")
    report.error(item, `${item.id}: unknown migration_transport "${transport}"`);
  if (forceStop !== undefined) {
    const value = parseBoolean(forceStop);
    if (value === null) report.error(item, `${item.id}: force_stop "${forceStop}" is not a boolean`);
    result.forceStop = value ?? false;
  }
  return result;
}

/** Reads meta attributes (of a primitive, or rsc_defaults) into policy fields; reports the rest at `at`. */
export function readMeta(
  meta: AttributeMap,
  at: Located,
  context: string,
  report: Reporter,
): Partial<ImportedPolicy> {
  const policy: Partial<ImportedPolicy> = {};
  const fail = (message: string) => report.error(at, `${context}: ${message}`);
  for (const [name, value] of Object.entries(meta)) {
    const score = () => {
      const parsed = parseScore(value);
      return typeof parsed === "number" ? parsed : void fail(`${name}: ${parsed.error}`);
    };
    if (name === "allow-migrate") {
      const allow = parseBoolean(value);
      if (allow === null) fail(`allow-migrate "${value}" is not a boolean`);
      else policy.allowMigrate = allow;
    } else if (name === "target-role") {
      const role = own(TARGET_ROLES, value.toLowerCase());
      if (role === undefined) fail(`unknown target-role "${value}"`);
      else policy.targetRole = role;
      if (role && !["started", "stopped"].includes(value.toLowerCase())) {
        report.warning(
          at,
          `${context}: target-role ${value} is imported as started: Haven VMs have no roles`,
        );
      }
    } else if (name === "resource-stickiness") policy.stickiness = score();
    else if (name === "priority") policy.priority = score();
    else if (name === "migration-threshold") {
      const threshold = score();
      if (threshold !== undefined && threshold < 0) fail(`migration-threshold ${value} is negative`);
      // Pacemaker: INFINITY is the default, and 0 turns the threshold off; both mean "never move away".
      policy.migrationThreshold = threshold === 0 || threshold === INFINITY_SCORE ? undefined : threshold;
    } else if (name === "failure-timeout") {
      const seconds = parseDuration(value);
      if (typeof seconds === "number") policy.failureTimeoutSeconds = Math.ceil(seconds);
      else fail(`failure-timeout: ${seconds.error}`);
    } else {
      const reason = own(META_NOT_HONOURED, name) ?? "unknown meta attribute";
      report.warning(at, `${context}: ${name}=${value} is not honoured: ${reason}`);
    }
  }
  return policy;
}

const OPS_HONOURED = ["start", "stop", "monitor", "migrate_to", "migrate_from"];

function readOps(item: Primitive, defaultTimeout: number | undefined, report: Reporter): ImportedTimeouts {
  const timeouts: ImportedTimeouts = {};
  let monitorSeen = false;
  for (const op of item.ops) {
    const context = `${item.id}: op ${op.name}`;
    if (!OPS_HONOURED.includes(op.name)) {
      report.warning(op, `${context} is not honoured: Haven runs start, stop, monitor and migrate only`);
      continue;
    }
    if (op.name === "monitor" && monitorSeen) {
      report.warning(op, `${context}: only the first monitor is honoured`);
      continue;
    }
    monitorSeen ||= op.name === "monitor";
    readOpAttributes(op, context, timeouts, report);
  }
  if (defaultTimeout !== undefined) {
    timeouts.startSeconds ??= defaultTimeout;
    timeouts.stopSeconds ??= defaultTimeout;
    timeouts.monitorTimeoutSeconds ??= defaultTimeout;
    timeouts.migrateSeconds ??= defaultTimeout;
  }
  return timeouts;
}

function readOpAttributes(op: CrmOp, context: string, timeouts: ImportedTimeouts, report: Reporter): void {
  for (const [name, value] of Object.entries(op.attrs)) {
    const seconds = () => {
      const parsed = parseDuration(value);
      if (typeof parsed === "number") return Math.ceil(parsed);
      report.error(op, `${context}: ${name}: ${parsed.error}`);
      return undefined;
    };
    if (name === "timeout") {
      const timeout = seconds();
      if (op.name === "start") timeouts.startSeconds = timeout;
      else if (op.name === "stop") timeouts.stopSeconds = timeout;
      else if (op.name === "monitor") timeouts.monitorTimeoutSeconds = timeout;
      else if (timeout !== undefined)
        timeouts.migrateSeconds = Math.max(timeouts.migrateSeconds ?? 0, timeout);
    } else if (name === "interval") {
      const interval = seconds();
      if (op.name === "monitor") timeouts.monitorIntervalSeconds = interval;
      else if (interval)
        report.warning(op, `${context}: interval=${value} is not honoured: only monitors repeat`);
    } else if ((name === "depth" || name === "OCF_CHECK_LEVEL") && value === "0") continue;
    else if (name === "on-fail" && value === "restart")
      continue; // Pacemaker's default, and Haven's
    else report.warning(op, `${context}: ${name}=${value} is not honoured`);
  }
}

function loadVmDomain(item: Primitive, config: string, loadDomain: DomainLoader, report: ImportReporter) {
  const loaded = loadDomain(config);
  if ("error" in loaded) return void report.error(item, `${item.id}: cannot read ${config}: ${loaded.error}`);
  report.addFromFile(config, loaded.diagnostics);
  if (!loaded.domain) report.error(item, `${item.id}: ${config} does not describe a domain Haven can run`);
  return loaded.domain;
}

/**
 * What a VM takes from its libvirt domain, checked against Haven's limits. `at` is where findings about the
 * whole domain go: the primitive's line for a crm import, the domain file itself for --from-libvirt.
 */
export function domainResources(
  name: string,
  at: Place,
  config: string,
  domain: LibvirtDomain,
  report: Reporter,
) {
  if (domain.name !== name) {
    report.warning(
      at,
      `${name}: the domain in ${config} is named "${domain.name}"; the VM is named "${name}"`,
    );
  }
  for (const [what, result] of [
    ["memory", memoryMbSchema.safeParse(domain.memoryMb)],
    ["vcpus", vcpusSchema.safeParse(domain.vcpus)],
  ] as const) {
    if (!result.success)
      report.error(at, `${name}: ${result.error.issues[0]?.message ?? `bad ${what}`} (${config})`);
  }
  for (const disk of domain.disks) {
    if (!NAME_PATTERN.test(disk.image)) {
      report.error(at, `${name}: disk image "${disk.image}" is not a valid Haven disk name (${config})`);
    }
    if (disk.readonly) {
      report.warning(
        at,
        `${name}: disk ${disk.targetDev} is read-only in ${config}; Haven attaches it read-write`,
      );
    }
  }
  const monitors = [...new Set(domain.disks.flatMap((disk) => disk.monitors))];
  if (monitors.length > 0) {
    report.warning(
      at,
      `${name}: Ceph monitors ${monitors.join(", ")} are not used: Haven reaches Ceph through its own cluster configuration, which must be the same cluster`,
    );
  }
  if (domain.kernel === undefined && domain.disks.length === 0 && !domain.cdrom)
    report.error(
      at,
      `${name}: nothing to boot: the domain has no RBD disk, no RBD CD-ROM and no <kernel> (${config})`,
    );
  else if (domain.disks.length === 0) report.warning(at, `${name}: the domain has no RBD disk (${config})`);
  const hardware = {
    kernel: domain.kernel,
    initrd: domain.initrd,
    cmdline: domain.cmdline,
    // A kernel file boots the guest directly; firmware only matters without one.
    firmware: domain.kernel === undefined ? domain.firmware : undefined,
    machine: domain.machine,
    cpu: domain.cpu?.model,
    cdrom: domain.cdrom && { pool: domain.cdrom.pool, image: domain.cdrom.image },
  };
  return {
    memoryMb: domain.memoryMb,
    vcpus: domain.vcpus,
    disks: domain.disks.map(({ pool, image, bus }) => ({ pool, image, bus })),
    nics: domain.nics.map(({ line: _line, ...nic }) => nic),
    ...withoutUndefined(hardware),
  };
}

/** Drops keys whose value is undefined, so plans compare and serialise cleanly. */
export function withoutUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, field]) => field !== undefined)) as T;
}
