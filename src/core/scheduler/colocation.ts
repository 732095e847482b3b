// Colocations as Pacemaker applies them while it assigns a guest:
// - "this with": the guest follows each guest it is colocated with (its primaries, assigned first). A
//   positive score adds on the primary's node (+INFINITY instead takes -INFINITY on every other node), a
//   negative one on the primary's node; a primary that will not run takes the score off every node. A finite
//   colocation that would leave the guest no node is left out.
// - "with this": the guest takes in the preferences of the guests that follow it (its dependents), scaled by
//   the colocation's score over INFINITY and rounded, and along their own dependents in turn (with the sign
//   of each step), unless that would leave it no node.
// The same merge, along primaries and at full weight, orders the guests for the capacity strategies
// (allocation-order.ts).
import { anyAvailable, ASSIGNED, isInfinite, type Allocation } from "./allocation-state.js";
import type { ColocationLink } from "./prepare.js";
import { addScores, formatScore, INFINITY, MINUS_INFINITY, type Score } from "./scores.js";
import { difference, type Step } from "./trace.js";

/** Applies the colocation of guest `vm` (the dependent of `link`) with its primary, assigned before. */
export function applyPrimary(allocation: Allocation, vm: number, link: ColocationLink): void {
  const { status, chosen } = allocation;
  // A primary still being assigned (a colocation loop) has no node yet; Pacemaker skips the colocation.
  if (status[link.primary] !== ASSIGNED) return;
  const where = chosen[link.primary]!;
  const { score } = link;
  if (where < 0 && score < 0) return; // keeping away from a guest that will not run
  const step = primaryStep(allocation, link, where);
  const table = allocation.tables[vm]!;
  const { available } = allocation;
  if (where >= 0 && score < INFINITY) {
    // The common case, one node: a finite or -INFINITY score on the primary's node.
    const after = addScores(table[where]!, score);
    let applied = isInfinite(score) || after >= 0;
    for (let node = 0; node < table.length && !applied; node++) {
      applied = node !== where && available[node] === 1 && table[node]! >= 0;
    }
    if (applied) table[where] = after;
    else step.ignored = true;
    allocation.steps[vm]!.push(step);
    return;
  }
  const amountOn = (node: number) => (where < 0 ? -score : node === where ? 0 : -score);
  // A finite colocation that would leave no node available is left out; checked before anything changes.
  let applied = isInfinite(score);
  for (let node = 0; node < table.length && !applied; node++) {
    applied = available[node] === 1 && addScores(table[node]!, amountOn(node)) >= 0;
  }
  if (applied) {
    for (let node = 0; node < table.length; node++) table[node] = addScores(table[node]!, amountOn(node));
  } else step.ignored = true;
  allocation.steps[vm]!.push(step);
}

function primaryStep(allocation: Allocation, link: ColocationLink, where: number): Step {
  const { id } = link.constraint;
  const partner = allocation.prepared.vms[link.primary]!.name;
  const { score } = link;
  const nodes = allocation.prepared.nodes;
  if (where < 0) {
    const detail = () =>
      score >= INFINITY
        ? `must run with ${partner} (${id}), which will not run`
        : `${partner}, which it prefers to run with, will not run (${id}, ${formatScore(-score)})`;
    return { kind: "nodes", source: id, nodes: null, score: -score, detail };
  }
  if (score >= INFINITY) {
    const others = Int32Array.from({ length: nodes.length - 1 }, (_, position) =>
      position < where ? position : position + 1,
    );
    const detail = () => `must run with ${partner} (${id}), which runs on ${nodes[where]!.name}`;
    return { kind: "nodes", source: id, nodes: others, score: MINUS_INFINITY, detail };
  }
  const detail = () =>
    score <= MINUS_INFINITY
      ? `must not run with ${partner} (${id}), which runs here`
      : `${partner} runs here (${id}, ${formatScore(score)})`;
  return { kind: "node", source: id, node: where, score, detail };
}

/**
 * How many guests' scores one guest takes in along its colocations (each path counts). Pacemaker follows
 * every path, which grows exponentially with the size of a negative set (a set of 18 takes crm_simulate 8 s);
 * Haven stops following paths once it has taken in this many, which no configuration of ordinary size
 * reaches (docs/placement.md).
 */
export const MERGE_BUDGET = 16;

/** Takes in the preferences of the guests that follow `vm`, one colocation at a time. */
export function mergeDependents(allocation: Allocation, vm: number): void {
  const { prepared } = allocation;
  const budget = { left: MERGE_BUDGET };
  const table = allocation.tables[vm]!;
  for (const link of prepared.index[vm]!.dependents) {
    const outcome = merge(allocation, link.dependent, table, link.factor, "dependents", budget);
    if (outcome === "skipped") continue;
    const merged = mergeStack(allocation, 0).tables[0]!;
    const changes = difference(merged, table);
    if (outcome === "merged") table.set(merged);
    if (!changes) continue;
    const dependent = prepared.vms[link.dependent]!.name;
    const { id } = link.constraint;
    const detail = (_node: number, amount: Score) =>
      `${dependent} runs with it (${id}) and prefers this node (${formatScore(amount)})`;
    const ignored = outcome === "rolled back";
    const step: Step = { kind: "amounts", source: id, ...changes, detail, ...(ignored && { ignored: true }) };
    allocation.steps[vm]!.push(step);
  }
}

/**
 * A guest's scores with those of the guests it follows added at full weight, and theirs in turn: how
 * Pacemaker compares guests to decide which to assign first under a capacity strategy. Written into
 * `work` (or the guest's own table when it follows no guest).
 */
export function mergedWithPrimaries(allocation: Allocation, vm: number, work: Int32Array): Int32Array {
  const table = allocation.tables[vm]!;
  // Nothing to add: the guest's own table serves (tables do not change while guests are ordered).
  if (allocation.prepared.index[vm]!.primaries.length === 0) return table;
  work.set(table);
  if (!anyAvailable(allocation, work)) return work;
  allocation.merging[vm] = 1;
  const budget = { left: MERGE_BUDGET };
  for (const link of allocation.prepared.index[vm]!.primaries) {
    const outcome = merge(allocation, link.primary, work, link.factor, "primaries", budget);
    if (outcome === "merged") work.set(mergeStack(allocation, 0).tables[0]!);
  }
  allocation.merging[vm] = 0;
  return work;
}

/** The frames of a merge, kept between merges (a merge is never nested in another). */
interface MergeStack {
  guests: Int32Array;
  next: Int32Array;
  signs: Int8Array;
  /** Per depth, how many nodes that can take guests score at least 0 there. */
  counts: Int32Array;
  /** Per depth, a scratch score table: a finished step's table becomes its parent's. */
  tables: Int32Array[];
}

function mergeStack(allocation: Allocation, depth: number): MergeStack {
  let stack = allocation.mergeStack as MergeStack | null;
  if (!stack || stack.guests.length <= depth) {
    const size = Math.max(64, depth * 2);
    const nodes = allocation.prepared.nodes.length;
    const tables = Array.from(
      { length: size + 1 },
      (_, level) => stack?.tables[level] ?? new Int32Array(nodes),
    );
    const grown = {
      guests: new Int32Array(size),
      next: new Int32Array(size),
      signs: new Int8Array(size),
      counts: new Int32Array(size),
      tables,
    };
    if (stack) {
      grown.guests.set(stack.guests);
      grown.next.set(stack.next);
      grown.signs.set(stack.signs);
      grown.counts.set(stack.counts);
    }
    allocation.mergeStack = stack = grown;
  }
  return stack;
}

/**
 * Pacemaker's merge of colocated scores, depth first and without recursion (chains may be long): `input`
 * plus `vm`'s scores times `factor`, then, when some node is still available, the guests colocated with
 * `vm` (in `direction`) with their own factors. A step that leaves no node available is rolled back. Each
 * guest taken in spends one of `budget`. The merged table (or, when the first step itself was rolled back,
 * the table it would have been) is left in the merge stack's first scratch table.
 */
function merge(
  allocation: Allocation,
  vm: number,
  input: Int32Array,
  factor: number,
  direction: "dependents" | "primaries",
  budget: { left: number },
): "merged" | "rolled back" | "skipped" {
  const { merging, prepared } = allocation;
  const linksOf = (guest: number) =>
    direction === "dependents" ? prepared.index[guest]!.dependents : prepared.index[guest]!.primaries;
  if (merging[vm] || budget.left <= 0) return "skipped";
  budget.left--;
  let stack = mergeStack(allocation, 0);
  stack.tables[0]!.set(input);
  stack.counts[0] = addScaled(allocation, stack.tables[0]!, vm, factor, availableCount(allocation, input));
  if (stack.counts[0] === 0) return "rolled back";
  let depth = 0;
  stack.guests[0] = vm;
  stack.next[0] = 0;
  stack.signs[0] = factor < 0 ? -1 : 1;
  merging[vm] = 1;
  for (;;) {
    const guest = stack.guests[depth]!;
    const links = linksOf(guest);
    const next = stack.next[depth]!;
    if (next < links.length) {
      stack.next[depth] = next + 1;
      const link = links[next]!;
      const other = direction === "dependents" ? link.dependent : link.primary;
      if (merging[other] || budget.left <= 0) continue; // a loop (Pacemaker stops there), or enough
      budget.left--;
      stack = mergeStack(allocation, depth + 1);
      const work = stack.tables[depth + 1]!;
      work.set(stack.tables[depth]!);
      const weight = stack.signs[depth]! * link.factor;
      const count = addScaled(allocation, work, other, weight, stack.counts[depth]!);
      if (count === 0) continue; // rolled back
      depth++;
      stack.counts[depth] = count;
      stack.guests[depth] = other;
      stack.next[depth] = 0;
      stack.signs[depth] = weight < 0 ? -1 : 1;
      merging[other] = 1;
      continue;
    }
    merging[guest] = 0;
    if (depth === 0) return "merged";
    // The parent takes this step's table (and its count of available nodes) as its own.
    const { tables } = stack;
    const parent = tables[depth - 1]!;
    tables[depth - 1] = tables[depth]!;
    tables[depth] = parent;
    stack.counts[depth - 1] = stack.counts[depth]!;
    depth--;
  }
}

/**
 * Adds `vm`'s score on each node times `factor`, rounded half away from zero, never rounded to 0 from a
 * score that is not 0. A node that cannot take guests counts as -INFINITY; a negative factor does not
 * turn a negative score into a preference. `count` is how many nodes that can take guests score at least 0
 * in `work`; returns that count afterwards (0: the step leaves no node available).
 */
function addScaled(
  allocation: Allocation,
  work: Int32Array,
  vm: number,
  factor: number,
  count: number,
): number {
  const table = allocation.tables[vm]!;
  const { available } = allocation;
  for (let node = 0; node < work.length; node++) {
    const usable = available[node] === 1;
    const score = usable ? table[node]! : MINUS_INFINITY;
    // A score of 0 adds 0: most scores are 0, so most nodes are skipped here.
    if (score === 0 || (factor < 0 && score < 0)) continue;
    const scaled = Math.fround(factor * score);
    let amount = scaled < 0 ? Math.trunc(scaled - 0.5) : Math.trunc(scaled + 0.5);
    if (amount === 0) amount = factor > 0 ? 1 : factor < 0 ? -1 : 0;
    const before = work[node]!;
    const after = addScores(amount, before);
    work[node] = after;
    if (usable) count += (after >= 0 ? 1 : 0) - (before >= 0 ? 1 : 0);
  }
  return count;
}

function availableCount(allocation: Allocation, table: Int32Array): number {
  let count = 0;
  for (let node = 0; node < table.length; node++)
    if (allocation.available[node] && table[node]! >= 0) count++;
  return count;
}
