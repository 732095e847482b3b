// Which node a guest gets, once its scores are final: the highest score, then the placement strategy's
// tie-breaks as Pacemaker breaks them (balanced: more room left; default, utilization and balanced: fewer
// guests assigned in this run, then the node the guest runs on; all: the earlier name). Two exceptions keep
// running guests where they are (docs/placement.md): a running guest stays on its node whenever that node
// scores as high as the best — Pacemaker does this only above 0, and otherwise moves a guest to a node with
// fewer guests — and before the node Pacemaker prefers when a group of +INFINITY partners has no room.
import { weightOn, type Allocation } from "./allocation-state.js";
import { capacityVote } from "./capacity.js";
import { breakTie, tieBreakOf, type TieBreak, type TieInputs } from "./tie-breaks.js";

/** Why the chosen node won over another one with the same score. */
export type TieReason = TieBreak | "roomiest";

// Filled for each comparison rather than allocated: comparisons run for every node of every guest.
const tie: TieInputs = { vote: 0, guestsA: 0, guestsB: 0, current: 0, names: 0 };

/** Negative when node `a` is the better choice for the guest, positive when `b` is (never 0); the
 * magnitude of a tie says which tie-break decided (tie-breaks.ts), 0 stands for the score. */
export function compareNodes(allocation: Allocation, vm: number, a: number, b: number): number {
  const weightA = weightOn(allocation, vm, a);
  const weightB = weightOn(allocation, vm, b);
  if (weightA !== weightB) return weightA > weightB ? -0.5 : 0.5;
  const { strategy } = allocation;
  const current = allocation.current[vm];
  tie.vote =
    strategy === "balanced" ? capacityVote(allocation, a, b, allocation.prepared.vms[vm]!.priority) : 0;
  tie.guestsA = allocation.counts[a]!;
  tie.guestsB = allocation.counts[b]!;
  tie.current = current === a ? 1 : current === b ? -1 : 0;
  tie.names = a - b;
  return breakTie(strategy, tie);
}

/**
 * The node for the guest, or -1 when no node with a score of at least 0 can take it. `prefer` is a node
 * to take when it scores as high as the best (the roomiest, see capacity.ts), or -1.
 */
export function chooseNode(allocation: Allocation, vm: number, prefer: number): number {
  const { available } = allocation;
  const table = allocation.tables[vm]!;
  // The highest score first; the tie-breaks only among the nodes that have it (the hot path: most guests
  // have one best node).
  let top = Number.NEGATIVE_INFINITY;
  for (let node = 0; node < table.length; node++) top = Math.max(top, weightOn(allocation, vm, node));
  let best = -1;
  for (let node = 0; node < table.length; node++) {
    if (weightOn(allocation, vm, node) !== top) continue;
    if (best < 0 || compareNodes(allocation, vm, node, best) < 0) best = node;
  }
  if (best < 0) return -1;
  const bestWeight = weightOn(allocation, vm, best);
  const usable = (node: number) => node >= 0 && available[node] === 1 && table[node]! >= 0;
  const current = allocation.current[vm]!;
  let chosen = best;
  // Pacemaker keeps a running guest on its node at an equal score above 0 only, and after `prefer`.
  const stays = usable(current) && table[current] === bestWeight;
  if (stays && allocation.keepOnTies) chosen = current;
  else if (usable(prefer) && table[prefer]! >= bestWeight) chosen = prefer;
  else if (stays && bestWeight > 0) chosen = current;
  return usable(chosen) ? chosen : -1;
}

/** Why `chosen` won over `other` for the guest: the score, or which tie-break. */
export function whyChosen(
  allocation: Allocation,
  vm: number,
  chosen: number,
  other: number,
  prefer: number,
): TieReason | "score" {
  const order = compareNodes(allocation, vm, chosen, other);
  if (Math.abs(order) < 1) return "score";
  return chosen === prefer ? "roomiest" : tieBreakOf(order);
}
