// Imports the seed's Pacemaker configuration (crm shell text plus the libvirt domains its VirtualDomain
// resources name), or one libvirt domain, as Haven VMs on the RBD images the domains already use. The parsing
// and translation are pure (core/import/); this is the part that checks the plan against the cluster (images in
// any pool, kernel files, bridges, MACs, what this QEMU offers, names in use) with the same checks as `vm
// create`, applies it all or nothing, and reports every finding with file:line:column.
import { access, constants } from "node:fs/promises";
import type { ClusterStore } from "../adapters/etcd/cluster-store.js";
import {
  ConstraintStore,
  type StoredConstraint,
  type StoredNodeAttributes,
  type StoredPlacementStrategy,
} from "../adapters/etcd/constraint-store.js";
import type { QemuCapabilities } from "../adapters/qemu/capabilities.js";
import type { StorageBackend } from "../adapters/storage/port.js";
import { conflict, HavenError, inputError, notFound } from "../core/errors.js";
import { parseCib } from "../core/import/cib.js";
import { parseCrm, type CrmParseResult, type Diagnostic } from "../core/import/crm.js";
import { parseLibvirtDomain } from "../core/import/libvirt.js";
import {
  translateCrm,
  translateDomain,
  type DomainLoader,
  type ImportedVm,
} from "../core/import/translate.js";
import { DEFAULT_CPU_MODEL, ownerOf, type VmDisk } from "../core/hardware.js";
import { vmSpecSchema, type NodeInfo, type VmSpec } from "../core/model.js";
import { Rollback } from "../lib/rollback.js";
import type { ImportCibRequest, ImportCrmRequest, ImportLibvirtRequest } from "./requests.js";
import { checkNics, createVariableStore, resolveHardware } from "./vm-builder.js";

export interface ReportLine {
  file: string;
  line: number;
  column: number;
  severity: "error" | "warning";
  message: string;
}

export interface ImportedVmResult {
  name: string;
  /** Where the VM comes from: the crm primitive's line, or line 1 of the libvirt file. */
  file: string;
  line: number;
  /** The libvirt domain file. */
  config: string;
  /** The RBD images it runs on, as POOL/IMAGE. */
  disks: string[];
  spec: VmSpec;
}

export interface ImportResult {
  dryRun: boolean;
  vms: ImportedVmResult[];
  constraints: StoredConstraint[];
  nodes: StoredNodeAttributes[];
  /** The cluster's placement-strategy from the configuration's `placement-strategy` property. */
  placementStrategy?: StoredPlacementStrategy;
  notes: string[];
  /** Resources of the configuration that are not imported (groups, fencing, --skip-unsupported primitives). */
  skipped: Array<{ id: string; file: string; line: number; reason: string }>;
  /** Warnings (an import with errors is refused with the whole report as the error message). */
  report: ReportLine[];
}

export interface ImportOptions {
  /** The cluster's RBD pool (its storage backend's), or null when the cluster's storage is not RBD. */
  pool: string | null;
  /** The backend of another RBD pool; rejects with NOT_FOUND for a pool that does not exist. */
  storageForPool?: (pool: string) => Promise<StorageBackend>;
  /** What this node's QEMU offers (machine types, CPU models, UEFI). */
  capabilities: () => Promise<QemuCapabilities>;
  /** Random bytes, for the MAC of a card the domain gives none. */
  random: (bytes: number) => Uint8Array;
}

export const CONSTRAINTS_NOTE =
  "constraints and node attributes are recorded (etcd config/constraints/, config/node-attributes/); placement applies location rules, colocation scores and start order from now on, to running VMs too (haven vm explain NAME shows them)";

export function formatReportLine(line: ReportLine): string {
  return `${line.file}:${line.line}:${line.column}: ${line.severity}: ${line.message}`;
}

/** Pacemaker's INFINITY migration-threshold (restart in place forever) becomes Haven's largest limit. */
const MAX_RESTART_LIMIT = 100;
const MAX_FAILURE_TIMEOUT_S = 365 * 24 * 3600;
const MAX_STOP_GRACE_S = 3600;
const MAX_PRIORITY = 1_000_000;
/** createVm's defaults, used by `vm create --from-libvirt` (a Haven command, so Haven's defaults). */
const HAVEN_DEFAULTS = {
  allowMigrate: true,
  restartLimit: 3,
  relocateLimit: 1,
  failureTimeoutSeconds: 600,
  priority: 0,
  stickiness: 0,
  stopGraceSeconds: 30,
};

type At = { file: string; line: number; column?: number };

export class ImportService {
  private readonly constraintStore: ConstraintStore;

  constructor(
    private readonly store: ClusterStore,
    private readonly storage: StorageBackend,
    private readonly options: ImportOptions,
  ) {
    this.constraintStore = ConstraintStore.of(store);
  }

  /** `POST /v1/import/crm`: every VirtualDomain with its constraints, all or nothing. */
  importCrm(request: ImportCrmRequest): Promise<ImportResult> {
    return this.importConfiguration(parseCrm(request.crm), request);
  }

  /** `POST /v1/import/cib`: the same from Pacemaker's CIB XML. */
  importCib(request: ImportCibRequest): Promise<ImportResult> {
    return this.importConfiguration(parseCib(request.cib), request);
  }

  private async importConfiguration(
    parsed: CrmParseResult,
    request: Omit<ImportCrmRequest, "crm">,
  ): Promise<ImportResult> {
    const loadDomain: DomainLoader = (path) => {
      if (Object.hasOwn(request.unreadable, path)) return { error: request.unreadable[path]! };
      if (!Object.hasOwn(request.domains, path)) return { error: "the file was not sent with the import" };
      return parseLibvirtDomain(request.domains[path]!);
    };
    const knownNodes = (await this.store.listNodes()).map(({ name, attributes }) => ({ name, attributes }));
    const plan = translateCrm(parsed, loadDomain, { knownNodes, skipUnsupported: request.skipUnsupported });
    const report = new Report(request.file, plan.report);
    const now = new Date().toISOString();
    const vms: ImportedVmResult[] = [];
    const cluster = await this.clusterView();
    for (const vm of plan.vms) {
      const at = { file: request.file, line: vm.line };
      const spec = await this.buildSpec(vm, crmPolicy(vm, at, report), at, report, cluster, vms);
      if (spec) vms.push(result(vm, at, spec));
    }
    await this.checkImagesUnused(vms, report);
    const origin = (line: number) => ({ source: { file: request.file, line }, importedAt: now });
    const constraints: StoredConstraint[] = plan.constraints.map(({ line, ...c }) => ({
      ...c,
      ...origin(line),
    }));
    const nodes = plan.nodes.map((node) => ({ node: node.name, attributes: node.attributes, ...origin(1) }));
    const placementStrategy = plan.placementStrategy && {
      strategy: plan.placementStrategy.strategy,
      ...origin(plan.placementStrategy.line),
    };
    await this.noteReplacedConstraints(constraints, report);
    if (placementStrategy) await this.noteReplacedStrategy(placementStrategy, report);
    report.refuseOnErrors(`import of ${request.file}`);
    await this.refuseExistingNames(vms);
    const outcome: ImportResult = {
      dryRun: request.dryRun,
      vms,
      constraints,
      nodes,
      ...(placementStrategy && { placementStrategy }),
      notes: constraints.length + nodes.length > 0 || placementStrategy ? [CONSTRAINTS_NOTE] : [],
      skipped: plan.skipped.map((skipped) => ({ ...skipped, file: request.file })),
      report: report.sorted(),
    };
    if (!request.dryRun) await this.apply(outcome, `imported from ${request.file}`);
    return outcome;
  }

  /** `POST /v1/import/libvirt`: one domain as a VM with Haven's defaults (`haven vm create --from-libvirt`). */
  async importLibvirt(request: ImportLibvirtRequest): Promise<ImportResult> {
    const translated = translateDomain(request.name, request.file, parseLibvirtDomain(request.xml));
    const report = new Report(request.file, translated.report);
    const vms: ImportedVmResult[] = [];
    const at = { file: request.file, line: 1 };
    if (translated.vm) {
      const policy = {
        ...HAVEN_DEFAULTS,
        state: request.start ? ("started" as const) : ("stopped" as const),
      };
      const spec = await this.buildSpec(translated.vm, policy, at, report, await this.clusterView(), []);
      if (spec) vms.push(result(translated.vm, at, spec));
    }
    await this.checkImagesUnused(vms, report);
    report.refuseOnErrors(`import of VM ${request.name} from ${request.file}`);
    await this.refuseExistingNames(vms);
    const outcome: ImportResult = {
      dryRun: request.dryRun,
      vms,
      constraints: [],
      nodes: [],
      notes: [],
      skipped: [],
      report: report.sorted(),
    };
    if (!request.dryRun) await this.apply(outcome, `created from ${request.file}`);
    return outcome;
  }

  private async clusterView(): Promise<ClusterView> {
    const [specs, nodes, qemu] = await Promise.all([
      this.store.listSpecs(),
      this.store.listNodes(),
      this.options.capabilities(),
    ]);
    return { specs, nodes, qemu };
  }

  /**
   * The VM spec of an imported VM, or undefined with errors reported (boot files, disks, cards, firmware).
   * `earlier` are the VMs of this import built before it: their cards' MACs are taken too.
   */
  private async buildSpec(
    vm: ImportedVm,
    policy: SpecPolicy,
    at: At,
    report: Report,
    cluster: ClusterView,
    earlier: readonly ImportedVmResult[],
  ): Promise<VmSpec | undefined> {
    const errorsBefore = report.errorCount;
    await this.checkBootFiles(vm, at, report);
    for (const disk of vm.disks) await this.checkImage(vm.name, "disk", disk, at, report);
    if (vm.cdrom) await this.checkImage(vm.name, "CD-ROM", vm.cdrom, at, report);
    const hardware = hardwareOf(vm, at, report, cluster);
    const nics = nicsOf(vm, at, report, cluster, earlier, this.options.random);
    if (report.errorCount > errorsBefore || !hardware || !nics) return undefined;
    const boot =
      vm.kernel === undefined
        ? { firmware: vm.firmware ?? ("bios" as const) }
        : {
            kernel: vm.kernel,
            ...(vm.initrd !== undefined && { initrd: vm.initrd }),
            ...(vm.cmdline !== undefined && { append: vm.cmdline }),
          };
    const spec: VmSpec = {
      name: vm.name,
      state: policy.state,
      memoryMb: vm.memoryMb,
      vcpus: vm.vcpus,
      ...boot,
      ...hardware,
      disks: vm.disks.map((disk) => this.vmDisk(disk)),
      ...(vm.cdrom && { cdrom: this.inPool(vm.cdrom) }),
      ...(nics.length > 0 && { nics }),
      canary: false,
      ha: true,
      restartLimit: policy.restartLimit,
      relocateLimit: policy.relocateLimit,
      failureTimeoutSeconds: policy.failureTimeoutSeconds,
      priority: policy.priority,
      stickiness: policy.stickiness,
      allowMigrate: policy.allowMigrate,
      stopGraceSeconds: policy.stopGraceSeconds,
      createdAt: new Date().toISOString(),
    };
    const checked = vmSpecSchema.safeParse(spec);
    if (!checked.success) {
      report.error(at, `${vm.name}: ${checked.error.issues.map((issue) => issue.message).join("; ")}`);
      return undefined;
    }
    return spec;
  }

  /** An image as a VM spec names it: the pool only when it is not the cluster's default. */
  private inPool(image: { pool: string; image: string }): { image: string; pool?: string } {
    return image.pool === this.options.pool
      ? { image: image.image }
      : { image: image.image, pool: image.pool };
  }

  private vmDisk(disk: ImportedVm["disks"][number]): VmDisk {
    // virtio-blk is what a disk without a bus gets.
    return { ...this.inPool(disk), ...(disk.bus === "virtio-scsi" && { bus: disk.bus }) };
  }

  /** A kernel file (and optional initrd) for direct boot must exist on the nodes; without one, firmware boots the first disk. */
  private async checkBootFiles(vm: ImportedVm, at: At, report: Report): Promise<void> {
    for (const [what, path] of [
      ["kernel", vm.kernel],
      ["initrd", vm.initrd],
    ] as const) {
      if (path === undefined) continue;
      if (!path.startsWith("/")) report.error(at, `${vm.name}: ${what} path must be absolute: ${path}`);
      else if (!(await readable(path)))
        report.error(
          at,
          `${vm.name}: ${what} file ${path} does not exist or is not readable on this node (it must exist on every node)`,
        );
    }
  }

  /** Imported disks and CD-ROMs are existing RBD images, in any pool; nothing is created or copied. */
  private async checkImage(
    vm: string,
    what: "disk" | "CD-ROM",
    image: { pool: string; image: string },
    at: At,
    report: Report,
  ): Promise<void> {
    const name = `${image.pool}/${image.image}`;
    if (this.options.pool === null) {
      report.error(
        at,
        `${vm}: ${what} ${name} is an RBD image, but this cluster's storage is ${this.storage.kind}; import needs a cluster on Ceph RBD`,
      );
      return;
    }
    try {
      const storage = await this.storageOf(image.pool);
      await storage.info(image.image);
    } catch (err) {
      if (!(err instanceof HavenError && err.code === "NOT_FOUND")) throw err;
      report.error(at, `${vm}: ${what === "disk" ? "" : `${what} `}RBD image ${name} does not exist`);
    }
  }

  private async storageOf(pool: string): Promise<StorageBackend> {
    if (pool === this.options.pool) return this.storage;
    if (!this.options.storageForPool) throw notFound(`pool ${pool} is not reachable from this node`);
    return this.options.storageForPool(pool);
  }

  /** One writer per disk: an image that is already a Haven VM's disk cannot become another's. */
  private async checkImagesUnused(vms: ImportedVmResult[], report: Report): Promise<void> {
    if (vms.length === 0) return;
    const specs = await this.store.listSpecs();
    for (const vm of vms) {
      const others = specs.filter((spec) => spec.name !== vm.name);
      for (const disk of vm.spec.disks) {
        const owner = ownerOf(others, disk.image, disk.pool);
        if (owner !== undefined)
          report.error(vm, `${vm.name}: disk ${disk.image} is already a disk of VM ${owner}`);
      }
    }
  }

  private async noteReplacedConstraints(constraints: StoredConstraint[], report: Report): Promise<void> {
    if (constraints.length === 0) return;
    const existing = new Map((await this.constraintStore.listConstraints()).map((c) => [c.id, c]));
    for (const constraint of constraints) {
      const old = existing.get(constraint.id);
      if (old)
        report.warning(
          { file: constraint.source?.file ?? "", line: constraint.source?.line ?? 0 },
          `constraint ${constraint.id} replaces the one ${old.source ? `imported from ${old.source.file}:${old.source.line}` : "added by a user"} at ${old.importedAt}`,
        );
    }
  }

  private async noteReplacedStrategy(strategy: StoredPlacementStrategy, report: Report): Promise<void> {
    const old = await this.constraintStore.getPlacementStrategy();
    if (!old || old.strategy === strategy.strategy) return;
    const from = old.source ? `imported from ${old.source.file}:${old.source.line}` : "set by a user";
    report.warning(
      { file: strategy.source?.file ?? "", line: strategy.source?.line ?? 0 },
      `placement-strategy ${strategy.strategy} replaces ${old.strategy} (${from})`,
    );
  }

  /** Every name is checked before anything is written: an import is all or nothing. */
  private async refuseExistingNames(vms: ImportedVmResult[]): Promise<void> {
    const taken: string[] = [];
    for (const vm of vms) if (await this.store.getSpec(vm.name)) taken.push(vm.name);
    if (taken.length === 1) throw conflict(`VM ${taken[0]} already exists; nothing was imported`);
    if (taken.length > 1) throw conflict(`VMs ${taken.join(", ")} already exist; nothing was imported`);
  }

  /** Node attributes, the strategy, constraints, then the VMs; a failure midway undoes what was written. */
  private async apply(outcome: ImportResult, reason: string): Promise<void> {
    const rollback = new Rollback();
    const constraints = this.constraintStore;
    try {
      if (outcome.placementStrategy) {
        const previous = await constraints.getPlacementStrategy();
        await constraints.putPlacementStrategy(outcome.placementStrategy);
        rollback.push(() =>
          previous ? constraints.putPlacementStrategy(previous) : constraints.deletePlacementStrategy(),
        );
      }
      for (const node of outcome.nodes) {
        const previous = await constraints.getNodeAttributes(node.node);
        await constraints.putNodeAttributes(node);
        rollback.push(() =>
          previous ? constraints.putNodeAttributes(previous) : constraints.deleteNodeAttributes(node.node),
        );
      }
      for (const constraint of outcome.constraints) {
        const previous = await constraints.getConstraint(constraint.id);
        await constraints.putConstraint(constraint);
        rollback.push(() =>
          previous ? constraints.putConstraint(previous) : constraints.deleteConstraint(constraint.id),
        );
      }
      for (const vm of outcome.vms) {
        if (vm.spec.firmware === "uefi" && vm.spec.kernel === undefined)
          await createVariableStore(this.storage, vm.name, rollback);
        await this.store.createSpec(vm.spec);
        rollback.push(() => this.store.etcd.delete(`${this.store.vmsPrefix}${vm.name}/`, { prefix: true }));
      }
      rollback.clear();
    } catch (err) {
      const failures = await rollback.run();
      if (failures.length > 0)
        throw new Error(
          `${(err as Error).message}; rollback also failed: ${failures.map(String).join("; ")}`,
        );
      throw err;
    }
    for (const vm of outcome.vms)
      await this.store.appendEvent({ type: "created", vm: vm.name, reason: `${reason}:${vm.line}` });
    if (outcome.constraints.length > 0)
      await this.store.appendEvent({
        type: "constraints-imported",
        reason: `${reason}: ${outcome.constraints.map((c) => c.id).join(", ")} (applied to placement and start order)`,
      });
    if (outcome.placementStrategy)
      await this.store.appendEvent({
        type: "placement-strategy-changed",
        reason: `${reason}: ${outcome.placementStrategy.strategy}`,
      });
  }
}

interface ClusterView {
  specs: VmSpec[];
  nodes: NodeInfo[];
  qemu: QemuCapabilities;
}

/**
 * The CPU model and machine type as `vm create` fixes them: the domain's where this QEMU has them, else
 * Haven's defaults with a warning. UEFI without firmware installed refuses the VM.
 */
function hardwareOf(
  vm: ImportedVm,
  at: At,
  report: Report,
  { qemu, nodes }: ClusterView,
): Pick<VmSpec, "cpu" | "machine"> | undefined {
  const wanted = {
    firmware: vm.kernel === undefined ? vm.firmware : undefined,
    cpu: vm.cpu,
    machine: vm.machine,
  };
  const first = resolveHardware(qemu, wanted, nodes);
  if (first.problems.firmware)
    return void report.error(
      at,
      `${vm.name}: ${first.problems.firmware.replace("--firmware uefi", "UEFI boot")}`,
    );
  const { cpu, machine, problems } = resolveHardware(
    qemu,
    {
      ...(!first.problems.cpu && { cpu: vm.cpu }),
      ...(!first.problems.machine && { machine: vm.machine }),
    },
    nodes,
  );
  if (first.problems.cpu)
    report.warning(
      at,
      `${vm.name}: ${first.problems.cpu.replace("--cpu host", "CPU model host")}; the VM gets ${DEFAULT_CPU_MODEL}`,
    );
  if (first.problems.machine)
    report.warning(at, `${vm.name}: ${first.problems.machine}; the VM gets ${machine}`);
  const left = problems.cpu ?? problems.machine;
  if (left) return void report.error(at, `${vm.name}: ${left}`);
  return { cpu, machine };
}

/** The domain's cards with `vm create`'s checks: the bridge exists, the MAC is free (one is chosen when none is given). */
function nicsOf(
  vm: ImportedVm,
  at: At,
  report: Report,
  { specs, nodes }: ClusterView,
  earlier: readonly ImportedVmResult[],
  random: (bytes: number) => Uint8Array,
): VmSpec["nics"] | undefined {
  try {
    return checkNics(vm.name, vm.nics, [...specs, ...earlier.map((each) => each.spec)], nodes, random);
  } catch (err) {
    if (!(err instanceof HavenError)) throw err;
    report.error(at, `${vm.name}: ${err.message}`);
    return undefined;
  }
}

interface SpecPolicy {
  state: "started" | "stopped";
  allowMigrate: boolean;
  restartLimit: number;
  relocateLimit: number;
  failureTimeoutSeconds: number;
  priority: number;
  stickiness: number;
  stopGraceSeconds: number;
}

/**
 * Pacemaker's meaning, in Haven's fields: migration-threshold N moves the VM away at the Nth failure, so
 * N - 1 restarts in place; failure-timeout and force_stop map directly; the stop timeout bounds a graceful
 * shutdown. Whatever has no field in the VM spec is reported on the primitive's line.
 */
function crmPolicy(vm: ImportedVm, at: At, report: Report): SpecPolicy {
  const warn = (message: string) => report.warning(at, `${vm.name}: ${message}`);
  let restartLimit = MAX_RESTART_LIMIT;
  if (vm.migrationThreshold === undefined)
    warn(
      `migration-threshold is INFINITY (Pacemaker's default): Haven restarts it at most ${MAX_RESTART_LIMIT} times on one node`,
    );
  else if (vm.migrationThreshold - 1 > MAX_RESTART_LIMIT)
    warn(
      `migration-threshold=${vm.migrationThreshold} is above Haven's limit: it restarts at most ${MAX_RESTART_LIMIT} times on one node`,
    );
  else restartLimit = Math.max(0, vm.migrationThreshold - 1);
  let failureTimeoutSeconds = vm.failureTimeoutSeconds ?? 0;
  if (failureTimeoutSeconds > MAX_FAILURE_TIMEOUT_S) {
    warn(`failure-timeout of ${failureTimeoutSeconds} s is above Haven's limit; 365 days is used`);
    failureTimeoutSeconds = MAX_FAILURE_TIMEOUT_S;
  }
  const priority = Math.max(-MAX_PRIORITY, Math.min(MAX_PRIORITY, vm.priority ?? 0));
  const { timeouts } = vm;
  let stopGraceSeconds = timeouts.stopSeconds ?? HAVEN_DEFAULTS.stopGraceSeconds;
  if (stopGraceSeconds > MAX_STOP_GRACE_S) {
    warn(`op stop timeout=${stopGraceSeconds}s is above Haven's limit; ${MAX_STOP_GRACE_S} s is used`);
    stopGraceSeconds = MAX_STOP_GRACE_S;
  }
  if (vm.forceStop) stopGraceSeconds = 0;
  if (timeouts.startSeconds !== undefined)
    warn(`op start timeout=${timeouts.startSeconds}s is not honoured: Haven has no per-VM start timeout`);
  if (timeouts.monitorIntervalSeconds !== undefined || timeouts.monitorTimeoutSeconds !== undefined)
    warn("op monitor is not honoured: Haven watches every guest through QMP all the time");
  if (timeouts.migrateSeconds !== undefined)
    warn(
      `op migrate timeout=${timeouts.migrateSeconds}s is not honoured per VM: the migration timeout is the cluster's (haven cluster migration-defaults --timeout) or a migration's (haven vm migrate --timeout)`,
    );
  if (vm.migrationTransport === "tcp")
    warn(
      "migration_transport=tcp is not kept per VM: migrations use the cluster's default transport (TLS unless changed) or 'haven vm migrate --transport tcp'",
    );
  return {
    state: vm.targetRole,
    allowMigrate: vm.allowMigrate,
    restartLimit,
    relocateLimit: HAVEN_DEFAULTS.relocateLimit,
    failureTimeoutSeconds,
    priority,
    // Pacemaker's default is 0, and its INFINITY is the same 1,000,000 as Haven's.
    stickiness: vm.stickiness ?? 0,
    stopGraceSeconds,
  };
}

function result(vm: ImportedVm, at: At, spec: VmSpec): ImportedVmResult {
  const disks = vm.disks.map((disk) => `${disk.pool}/${disk.image}`);
  return { name: vm.name, file: at.file, line: at.line, config: vm.config, disks, spec };
}

async function readable(path: string): Promise<boolean> {
  return access(path, constants.R_OK).then(
    () => true,
    () => false,
  );
}

/** The findings of one import, each with its file; the main file first, then the others as they appear. */
class Report {
  private readonly lines: ReportLine[] = [];

  constructor(
    private readonly file: string,
    diagnostics: Diagnostic[],
  ) {
    for (const { source, line, column, severity, message } of diagnostics)
      this.lines.push({ file: source ?? file, line, column, severity, message });
  }

  get errorCount(): number {
    return this.lines.filter((line) => line.severity === "error").length;
  }
  error(at: At, message: string): void {
    this.lines.push({ file: at.file, line: at.line, column: at.column ?? 1, severity: "error", message });
  }
  warning(at: At, message: string): void {
    this.lines.push({ file: at.file, line: at.line, column: at.column ?? 1, severity: "warning", message });
  }

  sorted(): ReportLine[] {
    const files = [this.file, ...new Set(this.lines.map((line) => line.file))];
    const rank = (line: ReportLine) => files.indexOf(line.file);
    return [...this.lines].sort((a, b) => rank(a) - rank(b) || a.line - b.line || a.column - b.column);
  }

  /** Errors refuse the whole import (HTTP 400), with every finding on its own line. */
  refuseOnErrors(what: string): void {
    const errors = this.errorCount;
    if (errors === 0) return;
    const lines = this.sorted().map(formatReportLine);
    throw inputError(
      `${what} refused: ${errors} error${errors === 1 ? "" : "s"}, nothing was imported\n${lines.join("\n")}`,
    );
  }
}
