// Words for the scheduler's decisions: the action with its reason, why a guest cannot run anywhere, and
// the per-node score table of `explain`, all read from each guest's recorded steps (trace.ts).
import type { Allocated } from "./allocate.js";
import { referenceNode } from "./allocate.js";
import { weightOn } from "./allocation-state.js";
import { freeRoom } from "./capacity.js";
import { formatScore, MINUS_INFINITY } from "./scores.js";
import { contributionsOn } from "./trace.js";
import type { Contribution, Explanation, NodeScore, PlanAction } from "./types.js";

/** Every contribution on a node, a node that cannot take guests first. */
export function contributionsFor(allocation: Allocated, vm: number, node: number): Contribution[] {
  const own = contributionsOn(allocation.steps[vm]!, node);
  const { online, standby } = allocation.prepared.nodes[node]!;
  if (!online) return [{ source: "offline", score: MINUS_INFINITY, detail: "offline" }, ...own];
  if (standby) return [{ source: "standby", score: MINUS_INFINITY, detail: "in standby" }, ...own];
  return own;
}

export function stopAction(allocation: Allocated, vm: number, reason: string): PlanAction {
  const from = allocation.prepared.nodes[allocation.current[vm]!]!.name;
  return { type: "stop", vm: allocation.prepared.vms[vm]!.name, from, reason };
}

export function placedAction(allocation: Allocated, vm: number, best: number): PlanAction {
  const { nodes } = allocation.prepared;
  const guest = allocation.prepared.vms[vm]!;
  const runtime = allocation.runtimes[vm]!;
  const current = allocation.current[vm]!;
  const to = nodes[best]!.name;
  const score = `score ${formatScore(weightOn(allocation, vm, best))}`;
  if (current === best) return { type: "keep", vm: guest.name, to, reason: `stays on ${to} (${score})` };
  if (current >= 0) {
    const from = nodes[current]!.name;
    const why = whyNot(allocation, vm, current, best);
    return guest.allowMigrate
      ? { type: "migrate", vm: guest.name, from, to, reason: `${why}; live-migrate to ${to} (${score})` }
      : {
          type: "move",
          vm: guest.name,
          from,
          to,
          reason: `${why}; stop and start on ${to} (${score}; allow-migrate is off)`,
        };
  }
  if (runtime.node === null) {
    return { type: "start", vm: guest.name, to, reason: `start on ${to}, the best node (${score})` };
  }
  const placedOn = referenceNode(allocation, vm);
  if (placedOn < 0) {
    const condition = allocation.prepared.nodeIndex.has(runtime.node) ? "offline" : "gone";
    const reason = `recovery: node ${runtime.node} is ${condition}; start on ${to} (${score})`;
    return { type: "start", vm: guest.name, from: runtime.node, to, reason };
  }
  if (placedOn === best) {
    return { type: "start", vm: guest.name, to, reason: `start on ${to}, where it is placed (${score})` };
  }
  const reason = `${whyNot(allocation, vm, placedOn, best)}; start on ${to} (${score})`;
  return { type: "start", vm: guest.name, from: runtime.node, to, reason };
}

const TIE_BREAK_WORDS = {
  room: "more free capacity",
  count: "fewer guests",
  current: "the guest on it now",
  name: "the earlier name",
  roomiest: "the most room for the guests that must run with it",
} as const;

/** Why the guest leaves (or does not return to) `node` for `best`. */
function whyNot(allocation: Allocated, vm: number, node: number, best: number): string {
  const { nodes } = allocation.prepared;
  const name = nodes[node]!.name;
  const total = weightOn(allocation, vm, node);
  if (total < 0) return `${name}: ${decisive(contributionsFor(allocation, vm, node), total)}`;
  const bestName = nodes[best]!.name;
  const bestTotal = weightOn(allocation, vm, best);
  if (bestTotal > total)
    return `${bestName} scores ${formatScore(bestTotal)}, more than ${formatScore(total)} on ${name}`;
  const tieBreak = allocation.tieBreaks.get(vm);
  const words = tieBreak && tieBreak !== "score" ? TIE_BREAK_WORDS[tieBreak] : "the earlier name";
  return `${bestName} and ${name} both score ${formatScore(total)}; ${bestName} has ${words}`;
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
export function nowhereReason(allocation: Allocated, vm: number): string {
  const { nodes } = allocation.prepared;
  if (nodes.length === 0) return "no nodes are known";
  const groups = new Map<string, string[]>();
  nodes.forEach((node, position) => {
    const reason = decisive(contributionsFor(allocation, vm, position), weightOn(allocation, vm, position));
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
  chosen: number;
  action: PlanAction | null;
  verdict: string;
  blockers: string[];
}

export function explanationOf(allocation: Allocated, vm: number, outcome: Outcome): Explanation {
  const { nodes, vms } = allocation.prepared;
  const guest = vms[vm]!;
  const scored = guest.state === "started";
  const table: NodeScore[] = scored
    ? nodes.map((node, position) => {
        const total = weightOn(allocation, vm, position);
        return {
          node: node.name,
          total,
          eligible: total >= 0 && outcome.blockers.length === 0,
          free: allocation.tracedRoom?.[position] ?? freeRoom(allocation, position, guest.priority),
          contributions: contributionsFor(allocation, vm, position),
        };
      })
    : [];
  return {
    vm: guest.name,
    chosen: outcome.chosen < 0 ? null : nodes[outcome.chosen]!.name,
    verdict: outcome.verdict,
    action: outcome.action,
    nodes: table,
    blockers: outcome.blockers,
  };
}
