// How Pacemaker tells apart two nodes on which a guest scores the same, under each placement strategy:
// balanced prefers the node with more room left (one vote per resource: vCPUs, memory); default,
// utilization and balanced then prefer the node with fewer guests assigned, then the node the guest runs
// on; every strategy ends with the earlier name (minimal goes there at once). The scheduler (node-choice.ts)
// and Haven's placement of guests no constraint names (placement.ts) both break ties here.
import type { PlacementStrategy } from "./types.js";

/** What decided between two nodes, in the order the criteria apply. */
export const TIE_BREAKS = ["room", "count", "current", "name"] as const;
export type TieBreak = (typeof TIE_BREAKS)[number];

/** One vote per resource for the node with more of it left: negative when `a` has more. */
export function roomVote(freeVcpusA: number, freeVcpusB: number, freeMemoryA: number, freeMemoryB: number) {
  const vote = (x: number, y: number) => (x > y ? -1 : x < y ? 1 : 0);
  return vote(freeVcpusA, freeVcpusB) + vote(freeMemoryA, freeMemoryB);
}

export interface TieInputs {
  /** roomVote of a against b (only balanced looks at it). */
  vote: number;
  guestsA: number;
  guestsB: number;
  /** The node the guest runs on now is a (1), b (-1), or neither (0). */
  current: number;
  /** Name order: negative when a's name sorts first. */
  names: number;
}

/**
 * Negative when `a` wins, positive when `b` wins; the magnitude is the position in TIE_BREAKS (plus one) of
 * the criterion that decided, so callers can say why without a second pass.
 */
export function breakTie(strategy: PlacementStrategy, inputs: TieInputs): number {
  const decided = (order: number, criterion: TieBreak) =>
    Math.sign(order) * (TIE_BREAKS.indexOf(criterion) + 1);
  if (strategy !== "minimal") {
    if (strategy === "balanced" && inputs.vote !== 0) return decided(inputs.vote, "room");
    if (inputs.guestsA !== inputs.guestsB) return decided(inputs.guestsA - inputs.guestsB, "count");
    if (inputs.current !== 0) return decided(-inputs.current, "current");
  }
  return decided(inputs.names, "name");
}

/** The criterion a breakTie result names. */
export const tieBreakOf = (result: number): TieBreak => TIE_BREAKS[Math.abs(result) - 1]!;

/** The tie-break of a strategy in a few words, for events: "most free capacity", "fewest guests", … */
export function tieBreakWords(strategy: PlacementStrategy): string {
  switch (strategy) {
    case "balanced":
      return "most free capacity";
    case "default":
    case "utilization":
      return "fewest guests";
    case "minimal":
      return "first by name";
  }
}
