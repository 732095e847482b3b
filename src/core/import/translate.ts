// Turns a parsed crm configuration into a neutral import plan: VirtualDomain resources become VMs (memory,
// vCPUs and RBD disks from the libvirt domain each config= names), and nodes, constraints and cluster
// properties come along. Everything Haven cannot honour is in `report`, line by line, with the file it is
// in. Pure: the caller reads the libvirt files, through `loadDomain`.
import { NAME_PATTERN } from "../model.js";
import { PLACEMENT_STRATEGIES, type PlacementStrategy } from "../scheduler/types.js";
import {
  parseDuration,
  type AttributeMap,
  type CrmItem,
  type CrmParseResult,
  type Diagnostic,
} from "./crm.js";
import { translateConstraints, type ImportedConstraint, type Place } from "./translate-constraints.js";
import { own } from "./crm-syntax.js";
import type { LibvirtParseResult } from "./libvirt.js";
import {
  domainResources,
  readMeta,
  translateVirtualDomain,
  type DomainLoader,
  type ImportDefaults,
  type ImportReporter,
  type ImportedVm,
} from "./translate-vm.js";

export type { ImportedConstraint } from "./translate-constraints.js";
export type { DomainLoader, ImportedPolicy, ImportedTimeouts, ImportedVm } from "./translate-vm.js";

export interface ImportPlan {
  vms: ImportedVm[];
  nodes: Array<{ name: string; attributes: AttributeMap }>;
  constraints: ImportedConstraint[];
  /** `property placement-strategy=…`, with the line it is on. */
  placementStrategy?: { strategy: PlacementStrategy; line: number };
  /** Resources of the configuration that are not imported (and not for an error), with why. */
  skipped: SkippedResource[];
  /** Cluster properties as written, all of them; the report says which Haven does not honour. */
  properties: AttributeMap;
  /** Parse and translation findings: the crm file's by line, then each libvirt file's (with `source`). */
  report: Diagnostic[];
}

export interface SkippedResource {
  id: string;
  line: number;
  reason: string;
}

export interface TranslateOptions {
  /**
   * Import the rest when a primitive's agent is not VirtualDomain (an IP address, a file system...): such
   * a primitive is skipped with a warning instead of refusing the import.
   */
  skipUnsupported?: boolean;
  /**
   * Nodes of the Haven cluster (name and attributes, as in NodeInfo), known in addition to the crm file's
   * `node` statements; a crm node of the same name wins.
   */
  knownNodes?: Array<{ name: string; attributes: AttributeMap }>;
}

/** Maps a parsed crm configuration to an import plan; a plan with errors in `report` should not be applied. */
export function translateCrm(
  parsed: CrmParseResult,
  loadDomain: DomainLoader,
  options: TranslateOptions = {},
): ImportPlan {
  const report = new Collector(parsed.diagnostics);
  const { items } = parsed;
  checkDuplicateIds(items, report);
  const nodes = translateNodes(items, report);
  const { properties, placementStrategy } = translateProperties(items, report);
  const defaults = translateDefaults(items, report);
  const vms: ImportedVm[] = [];
  const notImported = new Map<string, string>();
  const skipped: SkippedResource[] = [];
  const skip = (item: { id: string; line: number }, reason: string) => {
    notImported.set(item.id, reason);
    skipped.push({ id: item.id, line: item.line, reason });
  };
  for (const item of items) {
    if (item.kind === "unsupported" && item.id)
      skip({ id: item.id, line: item.line }, `${item.keyword} is not supported`);
    if (item.kind !== "primitive") continue;
    const { class: agentClass, provider, type } = item.agent;
    const agent = [agentClass, provider, type].filter(Boolean).join(":");
    if (agent === "ocf:heartbeat:VirtualDomain") {
      const vm = translateVirtualDomain(item, defaults, loadDomain, report);
      if (vm) vms.push(vm);
      else notImported.set(item.id, "it has errors");
    } else if (agentClass === "stonith") {
      report.warning(
        item,
        `${item.id} (${agent}) is not imported: Haven fences a failed node by blocklisting its Ceph clients; power fencing is a per-node fence agent in Haven's configuration`,
      );
      skip(item, "a fencing device");
    } else if (options.skipUnsupported) {
      report.warning(
        item,
        `${item.id} (${agent}) is skipped: Haven imports ocf:heartbeat:VirtualDomain guests only`,
      );
      skip(item, `agent ${agent}`);
    } else {
      report.error(
        item,
        `${item.id}: agent ${agent} is not supported: Haven imports ocf:heartbeat:VirtualDomain guests only (--skip-unsupported imports the rest)`,
      );
      notImported.set(item.id, `agent ${agent}`);
    }
  }
  checkSharedImages(vms, report);
  const scope = new Map(nodes.map((node) => [node.name, node.attributes]));
  for (const node of options.knownNodes ?? [])
    if (!scope.has(node.name)) scope.set(node.name, node.attributes);
  const vmNames = new Set(vms.map((vm) => vm.name));
  const constraints = translateConstraints(items, { vms: vmNames, notImported, nodes: scope }, report);
  if (scope.size === 0 && items.some((item) => item.kind.startsWith("location"))) {
    report.warning(
      { line: 1, column: 1 },
      "no nodes are known, so the nodes named in locations were not checked",
    );
  }
  return {
    vms,
    nodes,
    constraints,
    ...(placementStrategy && { placementStrategy }),
    skipped,
    properties,
    report: report.sorted(),
  };
}

/**
 * `haven vm create NAME --from-libvirt FILE`: one parsed domain to a VM with Pacemaker's defaults (no
 * migration, started, TLS). `vm` is absent when the report has an error.
 */
export function translateDomain(
  name: string,
  file: string,
  parsed: LibvirtParseResult,
): { vm?: ImportedVm; report: Diagnostic[] } {
  const report = new Collector([]);
  report.addFromFile(file, parsed.diagnostics);
  if (!NAME_PATTERN.test(name) || name.includes(".."))
    report.error({ line: 1, source: file }, `"${name}" is not a valid Haven VM name`);
  if (!parsed.domain) return { report: report.sorted() };
  const at = { line: 1, source: file };
  const vm: ImportedVm = {
    name,
    config: file,
    ...domainResources(name, at, file, parsed.domain, report),
    allowMigrate: false,
    targetRole: "started",
    migrationTransport: "tls",
    forceStop: false,
    timeouts: {},
    line: 1,
  };
  return report.errorCount > 0 ? { report: report.sorted() } : { vm, report: report.sorted() };
}

class Collector implements ImportReporter {
  errorCount = 0;
  private readonly diagnostics: Diagnostic[];
  private readonly files: string[] = [];

  constructor(initial: Diagnostic[]) {
    this.diagnostics = [...initial];
    this.errorCount = initial.filter((diagnostic) => diagnostic.severity === "error").length;
  }
  error(at: Place, message: string): void {
    this.add({ ...place(at), severity: "error", message });
  }
  warning(at: Place, message: string): void {
    this.add({ ...place(at), severity: "warning", message });
  }
  addFromFile(source: string, diagnostics: Diagnostic[]): void {
    diagnostics.forEach((diagnostic) => this.add({ ...diagnostic, source }));
  }
  /** The crm file's findings by position, then each other file's, in the order they were read. */
  sorted(): Diagnostic[] {
    const fileIndex = (diagnostic: Diagnostic) =>
      diagnostic.source === undefined ? -1 : this.files.indexOf(diagnostic.source);
    return [...this.diagnostics].sort(
      (a, b) => fileIndex(a) - fileIndex(b) || a.line - b.line || a.column - b.column,
    );
  }
  private add(diagnostic: Diagnostic): void {
    if (diagnostic.severity === "error") this.errorCount++;
    if (diagnostic.source !== undefined && !this.files.includes(diagnostic.source)) {
      this.files.push(diagnostic.source);
    }
    this.diagnostics.push(diagnostic);
  }
}

const place = ({ line, column = 1, source }: Place) =>
  source === undefined ? { line, column } : { line, column, source };

/** Pacemaker ids are unique across the whole configuration; a second use is almost always a copy-paste. */
function checkDuplicateIds(items: CrmItem[], report: Collector): void {
  const seen = new Map<string, number>();
  for (const item of items) {
    const id = "id" in item ? item.id : undefined;
    if (id === undefined) continue;
    const first = seen.get(id);
    if (first === undefined) seen.set(id, item.line);
    else report.error(item, `id "${id}" is already used on line ${first}`);
  }
}

function translateNodes(items: CrmItem[], report: Collector): ImportPlan["nodes"] {
  const nodes: ImportPlan["nodes"] = [];
  for (const item of items) {
    if (item.kind !== "node") continue;
    if (nodes.some((node) => node.name === item.name))
      report.error(item, `node ${item.name} is defined twice`);
    else if (!NAME_PATTERN.test(item.name))
      report.error(item, `"${item.name}" is not a valid Haven node name`);
    else nodes.push({ name: item.name, attributes: item.attributes });
    if (Object.keys(item.utilization).length > 0) {
      report.warning(
        item,
        `node ${item.name}: utilization is not honoured: each Haven node reports its own capacity`,
      );
    }
  }
  return nodes;
}

/** Properties that only describe the cluster; they are kept without comment. */
const INFORMATIONAL_PROPERTIES = [
  "dc-version",
  "cluster-infrastructure",
  "cluster-name",
  "have-watchdog",
  "last-lrm-refresh",
];

/** Why a property value is not honoured, or undefined when Haven behaves that way anyway. */
const PROPERTY_CHECKS: Record<string, (value: string) => string | undefined> = {
  "stonith-enabled": (value) =>
    /^(false|no|off|0|n)$/i.test(value)
      ? "Haven always fences a failed node (Ceph blocklisting) before it recovers its VMs"
      : undefined,
  "no-quorum-policy": (value) =>
    value === "stop"
      ? undefined
      : "a node that loses etcd loses its lease and stops its VMs, as no-quorum-policy=stop",
  "symmetric-cluster": (value) =>
    /^(false|no|off|0|n)$/i.test(value)
      ? "opt-in clusters are not supported: a VM may run on any node no constraint forbids"
      : undefined,
};

function translateProperties(items: CrmItem[], report: Collector) {
  const properties: AttributeMap = {};
  let placementStrategy: ImportPlan["placementStrategy"];
  for (const item of items) {
    if (item.kind !== "property") continue;
    for (const [name, value] of Object.entries(item.values)) {
      if (Object.hasOwn(properties, name))
        report.warning(item, `property ${name} is set again; the later value is used`);
      properties[name] = value;
      if (INFORMATIONAL_PROPERTIES.includes(name)) continue;
      if (name === "placement-strategy") {
        // Pacemaker reads the value without regard to case.
        const strategy = PLACEMENT_STRATEGIES.find((known) => known === value.toLowerCase());
        if (strategy) placementStrategy = { strategy, line: item.line };
        else
          report.error(
            item,
            `property placement-strategy=${value}: not a placement strategy (${PLACEMENT_STRATEGIES.join(", ")})`,
          );
        continue;
      }
      const check = own(PROPERTY_CHECKS, name);
      const reason = check ? check(value) : "Haven has no such setting";
      if (reason) report.warning(item, `property ${name}=${value} is not honoured: ${reason}`);
    }
  }
  return { properties, placementStrategy };
}

function translateDefaults(items: CrmItem[], report: Collector): ImportDefaults {
  const defaults: ImportDefaults = { policy: {} };
  for (const item of items) {
    if (item.kind === "rsc_defaults")
      Object.assign(defaults.policy, readMeta(item.values, item, "rsc_defaults", report));
    if (item.kind !== "op_defaults") continue;
    for (const [name, value] of Object.entries(item.values)) {
      const seconds = name === "timeout" ? parseDuration(value) : undefined;
      if (typeof seconds === "number") defaults.opTimeoutSeconds = Math.ceil(seconds);
      else if (seconds) report.error(item, `op_defaults timeout: ${seconds.error}`);
      else report.warning(item, `op_defaults ${name}=${value} is not honoured`);
    }
  }
  return defaults;
}

/** Two VMs on one image would both write it: the one-writer invariant forbids that outright. */
function checkSharedImages(vms: ImportedVm[], report: Collector): void {
  const owners = new Map<string, string>();
  for (const vm of vms) {
    for (const disk of vm.disks) {
      const key = `${disk.pool}/${disk.image}`;
      const owner = owners.get(key);
      if (owner !== undefined && owner !== vm.name)
        report.error(
          vm,
          `${vm.name}: disk ${key} is also a disk of ${owner}; two VMs must not share an image`,
        );
      else if (owner === vm.name) report.error(vm, `${vm.name}: disk ${key} is attached twice`);
      owners.set(key, vm.name);
    }
  }
}
