// bench:scheduler — how fast Haven's scheduler plans the recovery of a failed node, and at what memory.
// 1. 100 nodes and 10,000 VMs with location rules, anti-affinity groups, affinity pairs, colocation sets
//    and start orders, all running; one node fails; time `schedule` (targets: under 1 s, under 500 MB).
//    Measured in a fresh child process so the memory figure is the scheduler's, not this harness's.
// 2. When Debian's pacemaker-cli-utils are installed: the same kind of workload (16 nodes, 1,000 and
//    2,000 resources, one node offline) as a CIB for Pacemaker's crm_simulate, and for Haven; both times
//    and their ratio. crm_simulate runs as a process and reads XML, so a run on an empty CIB is shown too.
// 3. The controller's round on the same workloads (bench/controller-round.ts).
// Workloads are generated from a seeded PRNG, so every run schedules the same thing.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { schedule } from "../src/core/scheduler/scheduler.js";
import { measureRound, type RoundResult } from "./controller-round.js";
import { INFINITY } from "../src/core/scheduler/scores.js";
import { seededRandom } from "../test/seeded-random.js";
import type {
  Constraint,
  Plan,
  SchedConfig,
  SchedNode,
  SchedState,
  VmRuntime,
} from "../src/core/scheduler/types.js";

const TARGET_MS = 1000;
const TARGET_MB = 500;
const SEED = 20240601;

// ---- workload ------------------------------------------------------------------------------------

interface Workload {
  config: SchedConfig;
  nodes: SchedNode[];
}

interface Shape {
  nodes: number;
  vms: number;
  /** Colocation sets and order constraints, which the CIB for crm_simulate leaves out. */
  extras: boolean;
}

const pad = (n: number, width: number) => String(n).padStart(width, "0");
const RACKS = 8;

/**
 * One node in ten is a GPU node (hw=gpu), the rest hw=vm; nodes sit in 8 racks. One guest in twenty
 * needs a GPU node (-INFINITY elsewhere), the others must avoid them; every guest prefers a rack (+50).
 * Guests come in anti-affinity groups of four (pairwise -INFINITY); every fifth group's head prefers the
 * next group's head (+200). Capacity is sized for about 75 % use, so one node's guests fit elsewhere.
 */
export function buildWorkload(shape: Shape): Workload {
  const random = seededRandom(SEED + shape.nodes * 7 + shape.vms);
  const width = String(shape.vms).length;
  const vms = Array.from({ length: shape.vms }, (_, i) => ({
    name: `vm${pad(i, width)}`,
    state: "started" as const,
    vcpus: 1 + Math.floor(random() * 4),
    memoryMb: 1024 * (1 + Math.floor(random() * 8)),
    allowMigrate: random() < 0.9,
    stickiness: 100,
    priority: random() < 0.1 ? 10 : 0,
    migrationThreshold: 3,
    failureTimeoutS: 0,
  }));
  const gpu = (i: number) => i % 20 === 7;
  const constraints: Constraint[] = [];
  vms.forEach((vm, i) => {
    const rule = gpu(i) ? "hw ne gpu" : "hw eq gpu";
    constraints.push({ type: "location-rule", id: `hw-${vm.name}`, vm: vm.name, rule, score: -INFINITY });
    const rack = `rack eq r${Math.floor(random() * RACKS)}`;
    constraints.push({ type: "location-rule", id: `rack-${vm.name}`, vm: vm.name, rule: rack, score: 50 });
    const group = i - (i % 4);
    for (let other = group; other < i; other++) {
      constraints.push({
        type: "colocation",
        id: `anti-${vm.name}-${other}`,
        vm: vm.name,
        withVm: vms[other]!.name,
        score: -INFINITY,
      });
    }
    if (i % 20 === 0 && i + 4 < vms.length) {
      constraints.push({
        type: "colocation",
        id: `near-${vm.name}`,
        vm: vms[i + 4]!.name,
        withVm: vm.name,
        score: 200,
      });
    }
    if (shape.extras && i % 50 === 1 && i + 1 < vms.length) {
      constraints.push({
        type: "order",
        id: `order-${vm.name}`,
        first: vm.name,
        then: vms[i + 1]!.name,
        kind: "mandatory",
      });
    }
  });
  if (shape.extras) {
    // Spread sets of 20 guests each (soft): one per 200 guests, members taken from different groups.
    for (let start = 0; start + 200 <= vms.length; start += 200) {
      const members = Array.from({ length: 20 }, (_, k) => vms[start + k * 10 + 2]!.name);
      constraints.push({ type: "colocation-set", id: `spread-${start}`, vms: members, score: -500 });
    }
  }
  const demandVcpus = vms.reduce((sum, vm) => sum + vm.vcpus, 0);
  const demandMemory = vms.reduce((sum, vm) => sum + vm.memoryMb, 0);
  const capacity = {
    vcpus: Math.ceil(demandVcpus / shape.nodes / 0.75),
    memoryMb: Math.ceil(demandMemory / shape.nodes / 0.75 / 1024) * 1024,
  };
  const nodeWidth = String(shape.nodes).length;
  const nodes = Array.from({ length: shape.nodes }, (_, i) => ({
    name: `node${pad(i + 1, nodeWidth)}`,
    online: true,
    standby: false,
    attributes: { hw: (i + 1) % 10 === 0 ? "gpu" : "vm", rack: `r${i % RACKS}` },
    capacity,
  }));
  return { config: { vms, constraints }, nodes };
}

/** Settling takes a few rounds; a workload that needs more is reported as it is. */
const SETTLE_ROUNDS = 10;

/**
 * Everything placed by the scheduler itself from an empty cluster and settled (the plan applied again until
 * it keeps every guest where it runs, as the controller's rebalancing does), then running; one node fails.
 */
export function failedNodeState(workload: Workload): {
  before: SchedState;
  after: SchedState;
  failed: string;
} {
  let running = new Map<string, VmRuntime>();
  for (let round = 0; round < SETTLE_ROUNDS; round++) {
    const plan = schedule(workload.config, { nodes: workload.nodes, vms: running, nowMs: 0 });
    const next = new Map<string, VmRuntime>();
    for (const action of plan.actions) {
      if (action.type === "stop" || !action.to) continue;
      next.set(action.vm, { node: action.to, running: true, failures: [] });
    }
    const settled = round > 0 && plan.actions.every((action) => action.type === "keep");
    running = next;
    if (settled) break;
  }
  const perNode = new Map<string, number>();
  for (const runtime of running.values()) perNode.set(runtime.node!, (perNode.get(runtime.node!) ?? 0) + 1);
  // The busiest hw=vm node fails (the first such node on equal counts).
  const failed = workload.nodes
    .filter((node) => node.attributes.hw === "vm")
    .reduce((a, b) => ((perNode.get(b.name) ?? 0) > (perNode.get(a.name) ?? 0) ? b : a)).name;
  const nodes = workload.nodes.map((node) => (node.name === failed ? { ...node, online: false } : node));
  const empty: SchedState = { nodes: workload.nodes, vms: new Map(), nowMs: 0 };
  return { before: { ...empty, vms: running }, after: { nodes, vms: running, nowMs: 0 }, failed };
}

function countActions(plan: Plan): Record<string, number> {
  const counts: Record<string, number> = { start: 0, stop: 0, migrate: 0, move: 0, keep: 0 };
  for (const action of plan.actions) counts[action.type]!++;
  return counts;
}

function timeMs(work: () => void): number {
  const start = process.hrtime.bigint();
  work();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const mb = (bytes: number) => bytes / 1024 / 1024;

// ---- part 1: 100 nodes, 10,000 VMs, in a fresh child -----------------------------------------------

interface LargeResult {
  nodes: number;
  vms: number;
  constraints: number;
  failed: string;
  lost: number;
  coldMs: number;
  warmMs: number;
  counts: Record<string, number>;
  unplaceable: number;
  problems: number;
  heapGrowthMb: number;
  peakRssMb: number;
}

function measureLarge(): LargeResult {
  const workload = buildWorkload({ nodes: 100, vms: 10_000, extras: true });
  const { after, failed } = failedNodeState(workload);
  const lost = [...after.vms.values()].filter((runtime) => runtime.node === failed).length;
  globalThis.gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  let plan: Plan | undefined;
  let heapPeak = heapBefore;
  const coldMs = timeMs(() => (plan = schedule(workload.config, after)));
  heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed);
  const warm: number[] = [];
  for (let run = 0; run < 5; run++) {
    warm.push(timeMs(() => schedule(workload.config, after)));
    heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed);
  }
  return {
    nodes: workload.nodes.length,
    vms: workload.config.vms.length,
    constraints: workload.config.constraints.length,
    failed,
    lost,
    coldMs,
    warmMs: median(warm),
    counts: countActions(plan!),
    unplaceable: plan!.unplaceable.length,
    problems: plan!.problems.length,
    heapGrowthMb: mb(heapPeak - heapBefore),
    // maxRSS is in kilobytes: the whole child's peak, workload generation included.
    peakRssMb: process.resourceUsage().maxRSS / 1024,
  };
}

function runLargeInChild(): LargeResult {
  const child = spawnSync(process.execPath, ["--expose-gc", fileURLToPath(import.meta.url), "--large"], {
    encoding: "utf8",
    maxBuffer: 16 * 1024 * 1024,
  });
  if (child.status !== 0) throw new Error(`benchmark child failed: ${child.stderr}`);
  return JSON.parse(child.stdout) as LargeResult;
}

// ---- part 2: crm_simulate against Haven on the same workload ---------------------------------------

const xml = (text: string) =>
  text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/** A Pacemaker 2.1 CIB of the workload: the same nodes, rules, colocations, capacity and running guests. */
function cibOf(workload: Workload, state: SchedState): string {
  const out: string[] = [];
  out.push(
    '<cib crm_feature_set="3.16.1" validate-with="pacemaker-3.9" epoch="1" num_updates="0" admin_epoch="0" have-quorum="1" dc-uuid="1">',
    '<configuration><crm_config><cluster_property_set id="options">',
    '<nvpair id="o-stonith" name="stonith-enabled" value="false"/>',
    '<nvpair id="o-probes" name="enable-startup-probes" value="false"/>',
    '<nvpair id="o-placement" name="placement-strategy" value="balanced"/>',
    "</cluster_property_set></crm_config>",
    '<rsc_defaults><meta_attributes id="defaults"><nvpair id="d-stick" name="resource-stickiness" value="100"/>',
    '<nvpair id="d-threshold" name="migration-threshold" value="3"/></meta_attributes></rsc_defaults><nodes>',
  );
  workload.nodes.forEach((node, i) => {
    const attributes = Object.entries(node.attributes)
      .map(([name, value]) => `<nvpair id="${node.name}-${name}" name="${name}" value="${xml(value)}"/>`)
      .join("");
    out.push(
      `<node id="${i + 1}" uname="${node.name}"><instance_attributes id="${node.name}-attrs">${attributes}</instance_attributes>`,
      `<utilization id="${node.name}-util"><nvpair id="${node.name}-cpu" name="cpu" value="${node.capacity.vcpus}"/>`,
      `<nvpair id="${node.name}-mem" name="mem" value="${node.capacity.memoryMb}"/></utilization></node>`,
    );
  });
  out.push("</nodes><resources>");
  for (const vm of workload.config.vms) {
    out.push(
      `<primitive id="${vm.name}" class="ocf" provider="heartbeat" type="Dummy">`,
      `<meta_attributes id="${vm.name}-meta"><nvpair id="${vm.name}-prio" name="priority" value="${vm.priority}"/>`,
      `<nvpair id="${vm.name}-migrate" name="allow-migrate" value="${vm.allowMigrate}"/></meta_attributes>`,
      `<utilization id="${vm.name}-util"><nvpair id="${vm.name}-cpu" name="cpu" value="${vm.vcpus}"/>`,
      `<nvpair id="${vm.name}-mem" name="mem" value="${vm.memoryMb}"/></utilization></primitive>`,
    );
  }
  out.push("</resources><constraints>");
  for (const constraint of workload.config.constraints) out.push(cibConstraint(constraint));
  out.push("</constraints></configuration><status>");
  workload.nodes.forEach((node, i) => out.push(nodeStatus(node, i + 1, state)));
  out.push("</status></cib>");
  return out.join("\n");
}

const cibScore = (score: number) =>
  score >= INFINITY ? "INFINITY" : score <= -INFINITY ? "-INFINITY" : String(score);

function cibConstraint(constraint: Constraint): string {
  switch (constraint.type) {
    case "location-rule": {
      const [attribute, operation, value] = constraint.rule.split(" ");
      return (
        `<rsc_location id="${constraint.id}" rsc="${constraint.vm}"><rule id="${constraint.id}-rule" score="${cibScore(constraint.score)}">` +
        `<expression id="${constraint.id}-expr" attribute="${attribute}" operation="${operation}" value="${value}"/></rule></rsc_location>`
      );
    }
    case "colocation":
      return `<rsc_colocation id="${constraint.id}" rsc="${constraint.vm}" with-rsc="${constraint.withVm}" score="${cibScore(constraint.score)}"/>`;
    default:
      throw new Error(`the CIB workload has no ${constraint.type} constraints`);
  }
}

/** A node's status: online with the start of each guest that runs there, or cleanly down. */
function nodeStatus(node: SchedNode, id: number, state: SchedState): string {
  const membership = node.online
    ? 'in_ccm="true" crmd="online" join="member" expected="member"'
    : 'in_ccm="false" crmd="offline" join="down" expected="down"';
  const resources: string[] = [];
  for (const [vm, runtime] of state.vms) {
    if (runtime.node !== node.name || !runtime.running) continue;
    const key = "2:-1:0:00000000-0000-0000-0000-000000000000";
    resources.push(
      `<lrm_resource id="${vm}" type="Dummy" class="ocf" provider="heartbeat"><lrm_rsc_op id="${vm}_last_0" operation_key="${vm}_start_0" ` +
        `operation="start" crm-debug-origin="bench" crm_feature_set="3.16.1" transition-key="${key}" transition-magic="0:0;${key}" ` +
        'exit-reason="" call-id="2" rc-code="0" op-status="0" interval="0" last-rc-change="1700000000" exec-time="0" queue-time="0"/></lrm_resource>',
    );
  }
  return `<node_state id="${id}" uname="${node.name}" ${membership}><lrm id="${id}"><lrm_resources>${resources.join("")}</lrm_resources></lrm></node_state>`;
}

interface PacemakerRun {
  ms: number;
  starts: number;
  moves: number;
}

/** Runs `crm_simulate --run` (compute the transition, do not execute it); median of three. */
function crmSimulate(file: string): PacemakerRun {
  const times: number[] = [];
  let output = "";
  for (let run = 0; run < 3; run++) {
    const start = process.hrtime.bigint();
    output = execFileSync("crm_simulate", ["--xml-file", file, "--run"], {
      encoding: "utf8",
      maxBuffer: 64 * 1024 * 1024,
    });
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  const summary = output.slice(output.indexOf("Transition Summary:"));
  return {
    ms: median(times),
    starts: (summary.match(/^\s*\* Start\s/gm) ?? []).length,
    moves: (summary.match(/^\s*\* (Move|Migrate)\s/gm) ?? []).length,
  };
}

function hasCrmSimulate(): boolean {
  return spawnSync("crm_simulate", ["--version"], { encoding: "utf8" }).status === 0;
}

interface ComparisonRow {
  resources: number;
  lost: number;
  pacemaker: PacemakerRun;
  havenMs: number;
  haven: Record<string, number>;
}

function compareWithPacemaker(directory: string): { rows: ComparisonRow[]; baselineMs: number } {
  const rows: ComparisonRow[] = [];
  for (const resources of [1000, 2000]) {
    const workload = buildWorkload({ nodes: 16, vms: resources, extras: false });
    const { before, after, failed } = failedNodeState(workload);
    const file = join(directory, `cib-${resources}.xml`);
    // The CIB shows the node as down with its guests' history, as the status after it failed would.
    writeFileSync(file, cibOf({ ...workload, nodes: [...after.nodes] }, before));
    const pacemaker = crmSimulate(file);
    // Warm up, as a long-running controller is.
    for (let run = 0; run < 3; run++) schedule(workload.config, after);
    let plan: Plan | undefined;
    const runs = Array.from({ length: 9 }, () => timeMs(() => (plan = schedule(workload.config, after))));
    const havenMs = median(runs);
    const lost = [...after.vms.values()].filter((runtime) => runtime.node === failed).length;
    rows.push({ resources, lost, pacemaker, havenMs, haven: countActions(plan!) });
  }
  const empty = buildWorkload({ nodes: 16, vms: 0, extras: false });
  const emptyFile = join(directory, "cib-empty.xml");
  writeFileSync(emptyFile, cibOf(empty, { nodes: empty.nodes, vms: new Map(), nowMs: 0 }));
  return { rows, baselineMs: crmSimulate(emptyFile).ms };
}

// ---- report --------------------------------------------------------------------------------------

function table(header: string[], rows: string[][]): string {
  const widths = header.map((cell, column) =>
    Math.max(cell.length, ...rows.map((row) => row[column]!.length)),
  );
  const line = (row: string[]) =>
    row
      .map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!)))
      .join("  ");
  return [line(header), widths.map((width) => "-".repeat(width)).join("  "), ...rows.map(line)].join("\n");
}

function reportLarge(result: LargeResult): boolean {
  const fast = result.coldMs < TARGET_MS;
  const small = result.peakRssMb < TARGET_MB;
  console.log(
    `\nrecovery plan: ${result.nodes} nodes, ${result.vms} VMs, ${result.constraints} constraints; ` +
      `${result.failed} fails with ${result.lost} guests on it`,
  );
  console.log(
    table(
      ["measure", "value", "target"],
      [
        [
          "schedule(), first run",
          `${result.coldMs.toFixed(0)} ms`,
          `< ${TARGET_MS} ms ${fast ? "ok" : "MISSED"}`,
        ],
        ["schedule(), warm (median of 5)", `${result.warmMs.toFixed(0)} ms`, ""],
        [
          "peak RSS of the process",
          `${result.peakRssMb.toFixed(0)} MB`,
          `< ${TARGET_MB} MB ${small ? "ok" : "MISSED"}`,
        ],
        ["heap growth (sampled after runs)", `${result.heapGrowthMb.toFixed(0)} MB`, ""],
      ],
    ),
  );
  const c = result.counts;
  console.log(
    `plan: ${c.start} start, ${c.migrate} migrate, ${c.move} move, ${c.stop} stop, ${c.keep} keep; ` +
      `${result.unplaceable} unplaceable, ${result.problems} problems`,
  );
  return fast && small;
}

function reportComparison(rows: ComparisonRow[], baselineMs: number): void {
  console.log("\nPacemaker crm_simulate --run vs Haven schedule(): 16 nodes, one offline");
  console.log(
    table(
      ["resources", "lost", "crm_simulate", "Haven", "ratio", "net ratio", "Pacemaker plan", "Haven plan"],
      rows.map((row) => [
        String(row.resources),
        String(row.lost),
        `${row.pacemaker.ms.toFixed(0)} ms`,
        `${row.havenMs.toFixed(1)} ms`,
        `${(row.pacemaker.ms / row.havenMs).toFixed(0)}x`,
        `${((row.pacemaker.ms - baselineMs) / row.havenMs).toFixed(0)}x`,
        `${row.pacemaker.starts} start, ${row.pacemaker.moves} move`,
        `${row.haven.start} start, ${row.haven.migrate! + row.haven.move!} move`,
      ]),
    ),
  );
  console.log(
    `crm_simulate: median of 3 runs of \`crm_simulate --xml-file CIB --run\`; on the same 16 nodes with no ` +
      `resources it takes ${baselineMs.toFixed(0)} ms (process start, XML parsing), which the net ratio leaves ` +
      "out. Haven: schedule() alone in a warm process, median of 9.",
  );
}

function reportRounds(rounds: RoundResult[]): void {
  console.log("\ncontroller round (planController, the same workloads, everything running)");
  console.log(
    table(
      ["nodes", "VMs", "settled round", "failure round", "recovered"],
      rounds.map((round) => [
        String(round.nodes),
        String(round.vms),
        `${round.settledMs.toFixed(0)} ms`,
        `${round.failureMs.toFixed(0)} ms`,
        `${round.recovered} of ${round.lost}`,
      ]),
    ),
  );
  console.log(
    "settled: the round run on every change and every second (one scheduler run for rebalancing); " +
      "failure: the round that recovers the failed node's guests. Medians.",
  );
}

function main(): void {
  if (process.argv.includes("--large")) {
    process.stdout.write(JSON.stringify(measureLarge()));
    return;
  }
  process.stderr.write("bench:scheduler: 100 nodes, 10,000 VMs, one node fails…\n");
  const ok = reportLarge(runLargeInChild());
  if (!hasCrmSimulate()) {
    console.log(
      "\nPacemaker comparison skipped: install pacemaker-cli-utils (apt-get install pacemaker-cli-utils)",
    );
  } else {
    process.stderr.write("bench:scheduler: comparing with Pacemaker's crm_simulate…\n");
    const directory = mkdtempSync(join(tmpdir(), "haven-bench-scheduler-"));
    try {
      const { rows, baselineMs } = compareWithPacemaker(directory);
      reportComparison(rows, baselineMs);
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  }
  process.stderr.write("bench:scheduler: timing the controller's rounds…\n");
  reportRounds([measureRound({ nodes: 16, vms: 1000 }, 5), measureRound({ nodes: 100, vms: 10_000 }, 3)]);
  if (!ok) {
    console.log("\nbench:scheduler: a target was missed");
    process.exitCode = 1;
  }
}

// Run only when executed, so that the workload can be imported elsewhere (e.g. to inspect a plan).
if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) main();
