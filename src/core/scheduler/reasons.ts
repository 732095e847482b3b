// Words for the scheduler's decisions: the action with its reason, why a guest cannot run anywhere, and
// the per-node score table of `explain`. Reasons come from a traced re-scoring of the guest at its turn,
// so the hot path never builds strings for guests that simply stay where they are.
import { freeMemory, freeRoom, type Round } from "./round.js";
import { scoreVm, type Scored } from "./scoring.js";
import { formatScore, MINUS_INFINITY } from "./scores.js";
import type { Contribution, Explanation, NodeScore, PlanAction, SchedVm, VmRuntime } from "./types.js";

/** One guest's turn in the round. */
export interface Turn {
  round: Round;
  vm: SchedVm;
  runtime: VmRuntime;
  /** The online node it runs on now, or -1. */
  current: number;
  /** Whether it was scored allowed to take room held by lower-priority guests. */
  displace: boolean;
}

export function traced(turn: Turn): Scored {
  return scoreVm(turn.round, turn.vm, turn.runtime, turn.current, { traced: true, displace: turn.displace });
}

export function stopAction(turn: Turn, reason: string): PlanAction {
  return { type: "stop", vm: turn.vm.name, from: turn.round.prepared.nodes[turn.current]!.name, reason };
}

export function placedAction(turn: Turn, best: number, scores: readonly number[]): PlanAction {
  const { nodes, nodeIndex } = turn.round.prepared;
  const { vm, runtime, current } = turn;
  const to = nodes[best]!.name;
  const score = `score ${formatScore(scores[best]!)}${turn.displace ? ", displacing lower-priority guests" : ""}`;
  if (current === best) return { type: "keep", vm: vm.name, to, reason: `stays on ${to} (${score})` };
  if (current >= 0) {
    const from = nodes[current]!.name;
    const why = whyNot(turn, current, best);
    return vm.allowMigrate
      ? { type: "migrate", vm: vm.name, from, to, reason: `${why}; live-migrate to ${to} (${score})` }
      : {
          type: "move",
          vm: vm.name,
          from,
          to,
          reason: `${why}; stop and start on ${to} (${score}; allow-migrate is off)`,
        };
  }
  if (runtime.node === null) {
    return { type: "start", vm: vm.name, to, reason: `start on ${to}, the best node (${score})` };
  }
  const placedOn = nodeIndex.get(runtime.node);
  if (placedOn === undefined || !nodes[placedOn]!.online) {
    const condition = placedOn === undefined ? "gone" : "offline";
    const reason = `recovery: node ${runtime.node} is ${condition}; start on ${to} (${score})`;
    return { type: "start", vm: vm.name, from: runtime.node, to, reason };
  }
  if (placedOn === best) {
    return { type: "start", vm: vm.name, to, reason: `start on ${to}, where it is placed (${score})` };
  }
  const reason = `${whyNot(turn, placedOn, best)}; start on ${to} (${score})`;
  return { type: "start", vm: vm.name, from: runtime.node, to, reason };
}

/** Why the guest leaves (or does not return to) `node` for `best`. */
function whyNot(turn: Turn, node: number, best: number): string {
  const { nodes } = turn.round.prepared;
  const scored = traced(turn);
  const name = nodes[node]!.name;
  const total = scored.scores[node]!;
  if (total < 0) return `${name}: ${decisive(scored.contributions![node]!, total)}`;
  const bestName = nodes[best]!.name;
  const bestTotal = scored.scores[best]!;
  if (bestTotal > total)
    return `${bestName} scores ${formatScore(bestTotal)}, more than ${formatScore(total)} on ${name}`;
  const roomier = freeMemory(turn.round, best) > freeMemory(turn.round, node);
  const tieBreak = roomier ? "more free memory" : "the earlier name";
  return `${bestName} and ${name} both score ${formatScore(total)}; ${bestName} has ${tieBreak}`;
}

/** What rules a node out: its first -INFINITY, or else the negative sum and its parts. */
function decisive(contributions: readonly Contribution[], total: number): string {
  const applied = contributions.filter((contribution) => !contribution.ignored);
  const ban = applied.find((contribution) => contribution.score <= MINUS_INFINITY);
  if (ban) return ban.detail;
  const parts = applied.map((contribution) => `${contribution.source} ${formatScore(contribution.score)}`);
  return `score ${formatScore(total)} is negative (${parts.join(", ")})`;
}

/** Every node's reason, grouped: "no node can take it (node1, node2: offline; node3: in standby)". */
export function nowhereReason(turn: Turn): string {
  const { nodes } = turn.round.prepared;
  if (nodes.length === 0) return "no nodes are known";
  const scored = traced(turn);
  const groups = new Map<string, string[]>();
  nodes.forEach((node, position) => {
    const reason = decisive(scored.contributions![position]!, scored.scores[position]!);
    groups.set(reason, [...(groups.get(reason) ?? []), node.name]);
  });
  const listed = [...groups].map(([reason, names]) => `${nodeList(names)}: ${reason}`);
  return `no node can take it (${listed.join("; ")})`;
}

function nodeList(names: readonly string[]): string {
  const shown = names.slice(0, 5).join(", ");
  return names.length > 5 ? `${shown} and ${names.length - 5} more` : shown;
}

export interface Outcome {
  scored: Scored | null;
  chosen: number;
  action: PlanAction | null;
  verdict: string;
  blockers: string[];
}

export function explanationOf(turn: Turn, outcome: Outcome): Explanation {
  const { round } = turn;
  const { scored, blockers } = outcome;
  const nodes = round.prepared.nodes;
  const table: NodeScore[] = scored
    ? nodes.map((node, position) => ({
        node: node.name,
        total: scored.scores[position]!,
        eligible: scored.scores[position]! >= 0 && blockers.length === 0,
        free: freeRoom(round, position, turn.vm.priority, turn.displace),
        contributions: scored.contributions?.[position] ?? [],
      }))
    : [];
  return {
    vm: turn.vm.name,
    chosen: outcome.chosen < 0 ? null : nodes[outcome.chosen]!.name,
    verdict: outcome.verdict,
    action: outcome.action,
    nodes: table,
    blockers,
  };
}
