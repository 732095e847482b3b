// What changed a guest's scores, step by step, in the order Pacemaker applies them: locations and rules,
// stickiness, failures, colocations with the guests it follows, the preferences of the guests that follow
// it, a stop, capacity. Steps are cheap records (details are written only when asked for), so every guest
// keeps its own and reasons and `explain` read them instead of scoring again.
import type { Score } from "./scores.js";
import type { Contribution } from "./types.js";

export type Step =
  /** `score` on one node. */
  | { kind: "node"; source: string; node: number; score: Score; detail: () => string; ignored?: boolean }
  /** `score` on each of `nodes` (where a rule holds, say), or on every node when `nodes` is null. */
  | {
      kind: "nodes";
      source: string;
      nodes: Int32Array | null;
      score: Score;
      detail: (node: number) => string;
      ignored?: boolean;
    }
  /** A different amount on each of some nodes (colocations, capacity). */
  | {
      kind: "amounts";
      source: string;
      nodes: readonly number[];
      amounts: readonly number[];
      detail: (node: number, amount: Score) => string;
      ignored?: boolean;
    };

/** What `step` added on `node`, or null when it did not touch the node. */
export function amountOn(step: Step, node: number): Score | null {
  switch (step.kind) {
    case "node":
      return step.node === node ? step.score : null;
    case "nodes":
      return step.nodes === null || step.nodes.includes(node) ? step.score : null;
    case "amounts": {
      const position = step.nodes.indexOf(node);
      return position < 0 ? null : step.amounts[position]!;
    }
  }
}

/** The contributions of a guest's steps on one node, in the order they were applied. */
export function contributionsOn(steps: readonly Step[], node: number): Contribution[] {
  const contributions: Contribution[] = [];
  for (const step of steps) {
    const score = amountOn(step, node);
    if (score === null) continue;
    const detail =
      step.kind === "node"
        ? step.detail()
        : step.kind === "nodes"
          ? step.detail(node)
          : step.detail(node, score);
    contributions.push({ source: step.source, score, detail, ...(step.ignored ? { ignored: true } : {}) });
  }
  return contributions;
}

/** What changed between two score tables, node by node (only the nodes that changed), or null. */
export function difference(after: Int32Array, before: Int32Array) {
  const nodes: number[] = [];
  const amounts: number[] = [];
  for (let node = 0; node < after.length; node++) {
    if (after[node] === before[node]) continue;
    nodes.push(node);
    amounts.push(after[node]! - before[node]!);
  }
  return nodes.length === 0 ? null : { nodes, amounts };
}
