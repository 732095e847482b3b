// Whether Haven places a scenario's guests as Pacemaker does, up to tie-breaks. A guest agrees when it runs on
// the same node in both, or is stopped in both; or, when the two nodes differ, when Pacemaker's own
// allocation scores for the guest are equal on both nodes: Pacemaker scored Haven's node as high as its own
// choice. (Those scores leave capacity out, so under a capacity strategy Haven's placement must also fit
// every node — it always should; a plan that does not is a disagreement.) Anything else is a disagreement,
// with its likely cause: the first guest (in Pacemaker's order) whose scores differ from Haven's, or, when all
// scores agree, the node choice itself.
import type { PacemakerAnswer } from "./crm-simulate.js";
import type { HavenAnswer } from "./haven-side.js";
import type { Scenario } from "./scenario.js";

export interface Verdict {
  agree: boolean;
  /** Guests on different nodes of equal score (counted as agreeing). */
  ties: string[];
  /** "vm: Haven n1, Pacemaker n2", one per disagreeing guest. */
  differences: string[];
  cause: string | null;
}

type Placed = Extract<HavenAnswer, { placement: unknown }>;

export function compare(scenario: Scenario, pacemaker: PacemakerAnswer, haven: Placed): Verdict {
  const ties: string[] = [];
  const differences: string[] = [];
  for (const vm of scenario.vms) {
    const ours = haven.placement.get(vm.name) ?? null;
    const theirs = pacemaker.placement.get(vm.name) ?? null;
    if (ours === theirs) continue;
    const scores = pacemaker.scores.get(vm.name);
    if (ours !== null && theirs !== null && scores && scores.get(ours) === scores.get(theirs)) {
      ties.push(vm.name);
      continue;
    }
    differences.push(`${vm.name}: Haven ${ours ?? "stopped"}, Pacemaker ${theirs ?? "stopped"}`);
  }
  differences.push(...overcommitted(scenario, haven));
  const agree = differences.length === 0;
  return { agree, ties, differences, cause: agree ? null : causeOf(scenario, pacemaker, haven) };
}

/** Nodes where Haven's plan puts more than fits, under a strategy that counts capacity. */
function overcommitted(scenario: Scenario, haven: Placed): string[] {
  if (scenario.strategy === "default") return [];
  return scenario.nodes.flatMap((node) => {
    const guests = scenario.vms.filter((vm) => haven.placement.get(vm.name) === node.name);
    const vcpus = guests.reduce((sum, vm) => sum + vm.vcpus, 0);
    const memoryMb = guests.reduce((sum, vm) => sum + vm.memoryMb, 0);
    return vcpus > node.capacity.vcpus || memoryMb > node.capacity.memoryMb
      ? [`${node.name}: Haven's plan needs ${vcpus} vCPUs and ${memoryMb} MB there`]
      : [];
  });
}

/** The first guest whose scores (on nodes that can take guests) differ, or the choice among equal scores. */
function causeOf(scenario: Scenario, pacemaker: PacemakerAnswer, haven: Placed): string {
  const usable = scenario.nodes.filter((node) => node.online && !node.standby).map((node) => node.name);
  const ours = haven.scores();
  for (const [vm, theirs] of pacemaker.scores) {
    const mine = ours.get(vm);
    if (!mine || mine.size === 0) continue; // a stopped guest: Haven does not score it
    const differing = usable.filter((node) => mine.get(node) !== theirs.get(node));
    if (differing.length === 0) continue;
    const show = (scores: Map<string, number>) =>
      usable.map((node) => `${node} ${scores.get(node)}`).join(", ");
    return `scores of ${vm} differ: Haven ${show(mine)}; Pacemaker ${show(theirs)}`;
  }
  return "same scores, another node or another run state";
}
