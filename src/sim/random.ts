// Random fault schedules (`haven simulate --random N`): a seed becomes a scenario — nodes, canary guests and
// their policies, then a minute or two of faults and requests at random times (power, network, freezes,
// havend crashes, shutdowns, etcd members and quorum, guest crashes and failed starts, failing stops and
// migrations, migrations, drains, constraint changes, fence agents) — after which everything is healed at
// once. The schedule is scenario text, so a failing seed prints as a file to keep as a regression test, and
// a seed always makes the same schedule.
import { viewVm } from "../core/model.js";
import { runScenario } from "./run.js";
import { parseScenario, type Scenario } from "./scenario.js";
import type { World } from "./world.js";

/** How long after the faults stop every started guest that can run must run again. */
export const RECOVERY_BOUND_MS = 60_000;

/** A small, fast, seedable generator (mulberry32). */
export class Random {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** A whole number from `min` to `max`, both included. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)]!;
  }

  chance(p: number): boolean {
    return this.next() < p;
  }
}

interface Step {
  at: number;
  text: string;
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(2).replace(/\.?0+$/, "")}s`;

/** The scenario a seed makes, and when its faults stop. */
export function randomScenario(seed: number): { source: string; healAt: number } {
  const r = new Random(seed);
  const nodeCount = r.int(3, 5);
  const nodes = Array.from({ length: nodeCount }, (_, i) => `node${i + 1}`);
  const vms = Array.from({ length: r.int(2, 5) }, (_, i) => `vm${i + 1}`);
  const lines = [
    `# random schedule, seed ${seed}: faults until the heal, then every started guest must run again`,
    `cluster nodes=${nodeCount} ttl=5 etcd=3`,
  ];
  for (const vm of vms) {
    const options = [
      `memory=${r.pick([256, 512, 1024])}`,
      `restart-limit=${r.int(1, 3)}`,
      `relocate-limit=${r.int(1, 3)}`,
      `failure-timeout=${r.pick([30, 60, 300])}s`,
      `priority=${r.int(0, 3)}`,
      `migrate=${r.chance(0.8) ? "live" : "cold"}`,
      "canary=on",
    ];
    if (r.chance(0.2)) options.push(`state=running on=${r.pick(nodes)}`);
    lines.push(`vm ${vm} ${options.join(" ")}`);
  }
  if (vms.length >= 2 && r.chance(0.3))
    lines.push(`constraint order1 order vm1 vm2 ${r.pick(["mandatory", "optional"])}`);
  const steps: Step[] = [];
  const at = (time: number, text: string) => steps.push({ at: time, text });
  for (const vm of vms) at(0, `start ${vm}`);
  for (const node of nodes)
    if (r.chance(0.2))
      at(
        0,
        `fence-agent ${node} ${r.pick(["ok", "ok", "fail", "hang"])} time=${r.int(1, 5)}s timeout=${r.int(5, 20)}s`,
      );
  const healAt = r.int(40, 100) * 1000;
  const faults = r.int(4, 14);
  const bans: string[] = [];
  for (let i = 0; i < faults; i++) {
    const start = r.int(5_000, healAt - 2_000);
    const end = Math.min(start + r.int(500, 40_000), healAt);
    const node = r.chance(0.15) ? "leader" : r.pick(nodes);
    const vm = r.pick(vms);
    const other = r.pick(nodes);
    switch (r.int(0, 19)) {
      case 0:
      case 1:
        at(start, `power-off ${node}`);
        if (node !== "leader") at(end, `power-on ${node}`);
        break;
      case 2:
      case 3:
        at(start, `net-cut ${node}`);
        if (node !== "leader") at(end, `net-restore ${node}`);
        break;
      case 4:
        at(start, `freeze ${node}`);
        if (node !== "leader") at(end, `thaw ${node}`);
        break;
      case 5:
        at(start, `havend-kill ${node}`);
        if (node !== "leader") at(Math.min(start + r.int(500, 20_000), healAt), `havend-start ${node}`);
        break;
      case 6:
        at(start, r.chance(0.5) ? `shutdown ${node}` : `reboot ${node} down=${r.int(5, 40)}s`);
        break;
      case 7: {
        const member = `etcd${r.int(1, 3)}`;
        at(start, `etcd-kill ${member}`);
        at(end, `etcd-start ${member}`);
        break;
      }
      case 8:
        at(start, "quorum-loss");
        at(Math.min(start + r.int(500, 15_000), healAt), "quorum-back");
        break;
      case 9:
      case 10:
        at(start, `crash ${vm}`);
        break;
      case 11:
        at(start, `fail-start ${vm} times=${r.int(1, 3)}${r.chance(0.5) ? ` on=${other}` : ""}`);
        break;
      case 12:
        at(start, `fail-stop ${vm} times=${r.int(1, 2)}`);
        at(start + r.int(0, 3_000), `stop ${vm}`);
        at(end, `start ${vm}`);
        break;
      case 13:
      case 14:
        at(start, r.chance(0.6) ? `migrate ${vm} to ${other}` : `migrate ${vm}`);
        if (r.chance(0.3)) at(start + r.int(100, 3_000), `migration-fail ${vm} times=${r.int(1, 3)}`);
        break;
      case 15:
        at(start, `maintenance on ${other}`);
        at(end, `maintenance off ${other}`);
        break;
      case 16: {
        const id = `c${i}`;
        const score = r.pick(["100", "500", "-100", "-INFINITY", "INFINITY"]);
        at(start, `constraint ${id} location ${vm} ${other} ${score}`);
        if (r.chance(0.5)) at(end, `constraint-delete ${id}`);
        else bans.push(id);
        break;
      }
      case 17:
        at(start, `etcd-slow ${r.pick(nodes)} ${r.pick([300, 800, 1500])}ms`);
        at(end, "etcd-slow all 0");
        break;
      case 18:
        at(start, "storage-fence fail");
        at(end, "storage-fence ok");
        break;
      case 19:
        at(start, `fence-result ${other} ${r.pick(["fail", "hang"])}`);
        at(end, `fence-result ${other} ok`);
        break;
    }
  }
  // The heal: every fault ends at once; only the guests' own limits may keep one from running.
  at(healAt, "quorum-back");
  for (let m = 1; m <= 3; m++) at(healAt, `etcd-start etcd${m}`);
  at(healAt, "etcd-slow all 0");
  at(healAt, "storage-fence ok");
  for (const node of nodes) {
    for (const verb of ["power-on", "net-restore", "thaw", "havend-start"]) at(healAt, `${verb} ${node}`);
    at(healAt, `maintenance off ${node}`);
    at(healAt, `fence-result ${node} ok`);
  }
  for (const id of bans) at(healAt, `constraint-delete ${id}`);
  steps.sort((a, b) => a.at - b.at);
  for (const step of steps) lines.push(`at ${seconds(step.at)} ${step.text}`);
  lines.push(`run until ${seconds(healAt + RECOVERY_BOUND_MS)}`);
  return { source: lines.join("\n") + "\n", healAt };
}

/** What a random run is judged by: the invariants, and whether the guests run again after the heal. */
export interface RandomOutcome {
  seed: number;
  source: string;
  violations: Array<{ at: number; invariant: string; message: string }>;
}

/** Runs the schedule of one seed and checks it. */
export async function runRandomSeed(seed: number): Promise<RandomOutcome> {
  const { source, healAt } = randomScenario(seed);
  const scenario = parseScenario(source);
  const result = await runScenario(scenario);
  const recovery = notRecovered(result.world, scenario).map((message) => ({
    at: healAt + RECOVERY_BOUND_MS,
    invariant: "running again after the faults",
    message,
  }));
  return { seed, source, violations: [...result.violations, ...recovery] };
}

/**
 * Every guest that should run and can, does, when the run ends (the recovery bound after the heal): its
 * status says running, for its placement's node and generation, and that QEMU is alive and can write. Not
 * expected to run: a guest in error whose schedule crashed it or failed its starts (its limits), and one
 * that waits for a mandatory start order whose first guest does not run.
 */
export function notRecovered(world: World, scenario: Scenario): string[] {
  const vms = world.vmMaps();
  const failed = new Set(
    scenario.steps.flatMap(({ command }) =>
      command.type === "crash" || command.type === "fail-start" ? [command.vm] : [],
    ),
  );
  const runs = (vm: string): boolean => {
    const placement = vms.placements.get(vm);
    const status = vms.statuses.get(vm);
    if (!placement || placement.state !== "active" || status?.state !== "running") return false;
    if (status.node !== placement.node || status.generation !== placement.generation) return false;
    const proc = world.machines.proc(placement.node, vm);
    return proc?.generation === placement.generation && world.machines.isWriter(proc);
  };
  const problems: string[] = [];
  for (const spec of vms.specs.values()) {
    if (spec.state !== "started" || runs(spec.name)) continue;
    const placement = vms.placements.get(spec.name);
    if (placement?.state === "error" && failed.has(spec.name)) continue;
    const waitsFor = scenario.rules.constraints.find(
      (c) => c.type === "order" && c.kind === "mandatory" && c.then === spec.name && !runs(c.first),
    );
    if (waitsFor) continue;
    const view = viewVm(spec, placement, vms.statuses.get(spec.name));
    const where = placement ? ` on ${placement.node}, generation ${placement.generation}` : "";
    const why = placement?.state === "error" ? `: ${placement.reason}` : "";
    problems.push(
      `${spec.name} is ${view.state}${where}${why} ${RECOVERY_BOUND_MS / 1000} s after the faults stopped`,
    );
  }
  return problems;
}
