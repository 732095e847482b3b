// Checks the scheduler's input and indexes the constraints per guest, once per round, so that placing a
// guest costs O(nodes + its own constraints) and never a scan of all constraints or all guest pairs.
// Bad input is reported as a problem and the offending constraint is left out; nothing here throws.
import { findCycles } from "./ordering.js";
import { evaluateRule, parseRule, type RuleParse } from "./rules.js";
import { clampScore, INFINITY, formatScore, isMandatory, isScore } from "./scores.js";
import type {
  ColocationConstraint,
  ColocationSetConstraint,
  Constraint,
  LocationConstraint,
  LocationRuleConstraint,
  OrderConstraint,
  Problem,
  SchedConfig,
  SchedNode,
  SchedState,
  SchedVm,
} from "./types.js";

/** A location or a rule of one guest, in the order of the configuration (scores add in this order). */
export type LocationEntry =
  | { kind: "node"; constraint: LocationConstraint; node: number }
  | {
      kind: "rule";
      constraint: LocationRuleConstraint;
      /** The nodes (indices) where the rule holds. */
      matching: Int32Array;
    };

/**
 * One colocation between two guests (a pair, or a pair a set stands for): `dependent` is placed relative to
 * `primary` (Pacemaker's rsc and with-rsc). Guests are numbered by their position in Prepared.vms.
 */
export interface ColocationLink {
  constraint: ColocationConstraint | ColocationSetConstraint;
  dependent: number;
  primary: number;
  score: number;
  /** Pacemaker's weight of the colocation: the score over INFINITY, in single precision. */
  factor: number;
  /** Its position among all colocations, in the order they are defined. */
  defined: number;
}

export interface VmIndex {
  locations: LocationEntry[];
  /** Colocations in which this guest is the dependent, in Pacemaker's order: primary priority, then name. */
  primaries: ColocationLink[];
  /** Colocations in which this guest is the primary, in Pacemaker's order: dependent priority, then name. */
  dependents: ColocationLink[];
  /** Order constraints in which this guest is `then`. */
  startsAfter: OrderConstraint[];
}

export interface Prepared {
  /** Online or not, sorted by name; a node's index is its position here. */
  nodes: SchedNode[];
  nodeIndex: Map<string, number>;
  /** Sorted by name, which stands for the order of Pacemaker's configuration; a guest's number is its
   * position here. */
  vms: SchedVm[];
  vmIndex: Map<string, number>;
  /** Per guest number. */
  index: VmIndex[];
  problems: Problem[];
}

const byName = <T extends { name: string }>(a: T, b: T) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

export function prepare(config: SchedConfig, state: SchedState): Prepared {
  const problems: Problem[] = [];
  const nodes = unique(state.nodes, "node", problems).sort(byName);
  const vms = unique(config.vms, "VM", problems)
    .map((vm) => checkedVm(vm, problems))
    .sort(byName);
  const nodeIndex = new Map(nodes.map((node, position) => [node.name, position]));
  const vmByName = new Map(vms.map((vm) => [vm.name, vm]));
  const vmIndex = new Map(vms.map((vm, position) => [vm.name, position]));

  const parse = cachedRuleParser();
  const usable = usableConstraints(config.constraints, { nodeIndex, vmByName, parse }, problems);
  const orders = withoutOrderCycles(
    firstOrderOfEachPair(
      usable.filter((c): c is OrderConstraint => c.type === "order"),
      problems,
    ),
    problems,
  );
  reportContradictions(usable, problems);

  const index = vms.map((): VmIndex => ({ locations: [], primaries: [], dependents: [], startsAfter: [] }));
  const prepared: Prepared = { nodes, nodeIndex, vms, vmIndex, index, problems };
  indexConstraints(prepared, [...usable.filter((c) => c.type !== "order"), ...orders], parse);
  return prepared;
}

function unique<T extends { name: string }>(items: readonly T[], what: string, problems: Problem[]): T[] {
  const seen = new Set<string>();
  const result: T[] = [];
  for (const item of items) {
    if (seen.has(item.name)) {
      problems.push({ constraint: null, message: `${what} ${item.name} is listed twice; the first is used` });
      continue;
    }
    seen.add(item.name);
    result.push(item);
  }
  return result;
}

/** Reports a guest's invalid numbers; a bad stickiness or priority is replaced so sorting and sums stay sane. */
function checkedVm(vm: SchedVm, problems: Problem[]): SchedVm {
  const report = (message: string) =>
    problems.push({ constraint: null, message: `VM ${vm.name}: ${message}` });
  const bad = (value: number) => !Number.isFinite(value) || value < 0;
  // Such a guest is left unplaced (see blockersOf in the scheduler).
  if (bad(vm.vcpus) || bad(vm.memoryMb)) report("needs an invalid amount of CPU or memory");
  let checked = vm;
  if (!isScore(vm.stickiness)) {
    const stickiness = Number.isFinite(vm.stickiness) ? clampScore(Math.trunc(vm.stickiness)) : 0;
    report(`stickiness ${vm.stickiness} is not a score; ${stickiness} is used`);
    checked = { ...checked, stickiness };
  }
  if (!Number.isFinite(vm.priority)) {
    report(`priority ${vm.priority} is not a number; 0 is used`);
    checked = { ...checked, priority: 0 };
  }
  return checked;
}

/** What constraints may refer to, and the round's rule parser. */
interface Known {
  nodeIndex: ReadonlyMap<string, number>;
  vmByName: ReadonlyMap<string, SchedVm>;
  parse: (text: string) => RuleParse;
}

/** Thousands of guests usually share a handful of rule texts: each text is parsed once per round. */
function cachedRuleParser(): (text: string) => RuleParse {
  const cache = new Map<string, RuleParse>();
  return (text) => {
    let parsed = cache.get(text);
    if (!parsed) cache.set(text, (parsed = parseRule(text)));
    return parsed;
  };
}

/** Constraints whose ids, scores and references are sound; each rejected one is reported once. */
function usableConstraints(
  constraints: readonly Constraint[],
  known: Known,
  problems: Problem[],
): Constraint[] {
  const ids = new Set<string>();
  const usable: Constraint[] = [];
  for (const constraint of constraints) {
    const report = (message: string) => problems.push({ constraint: constraint.id, message });
    if (ids.has(constraint.id)) {
      report(`constraint id ${constraint.id} is used twice; the later one is ignored`);
      continue;
    }
    ids.add(constraint.id);
    const error = constraintError(constraint, known);
    if (error) {
      report(`${constraint.id}: ${error}; the constraint is ignored`);
      continue;
    }
    usable.push(normalised(constraint, known.vmByName, report));
  }
  return usable;
}

function constraintError(constraint: Constraint, known: Known): string | undefined {
  const { nodeIndex, vmByName } = known;
  const unknownVm = (name: string) => (vmByName.has(name) ? undefined : `unknown VM ${name}`);
  if (constraint.type !== "order" && !isScore(constraint.score)) {
    return Number.isSafeInteger(constraint.score)
      ? `score ${constraint.score} is out of range (-INFINITY..INFINITY, INFINITY = ${INFINITY})`
      : `score ${constraint.score} is not an integer`;
  }
  switch (constraint.type) {
    case "location":
      return (
        unknownVm(constraint.vm) ??
        (nodeIndex.has(constraint.node) ? undefined : `unknown node ${constraint.node}`)
      );
    case "location-rule": {
      const parsed = known.parse(constraint.rule);
      return unknownVm(constraint.vm) ?? (parsed.ok ? undefined : parsed.error);
    }
    case "colocation":
      if (constraint.vm === constraint.withVm) return `VM ${constraint.vm} cannot be colocated with itself`;
      return unknownVm(constraint.vm) ?? unknownVm(constraint.withVm);
    case "colocation-set": {
      const members = new Set(constraint.vms.filter((vm) => vmByName.has(vm)));
      return members.size < 2 ? "fewer than two known VMs in the set" : undefined;
    }
    case "order":
      if (constraint.first === constraint.then) {
        return `VM ${constraint.first} cannot be ordered after itself`;
      }
      return unknownVm(constraint.first) ?? unknownVm(constraint.then);
  }
}

/** A set keeps its known members (a deleted guest should not dissolve the rest of its group). */
function normalised(
  constraint: Constraint,
  vmByName: ReadonlyMap<string, SchedVm>,
  report: (message: string) => void,
): Constraint {
  if (constraint.type !== "colocation-set") return constraint;
  const members = [...new Set(constraint.vms)];
  const unknown = members.filter((vm) => !vmByName.has(vm));
  if (unknown.length > 0) report(`${constraint.id}: unknown VM ${unknown.join(", ")} left out of the set`);
  return { ...constraint, vms: members.filter((vm) => vmByName.has(vm)) };
}

/**
 * Of two orders between the same guests in the same direction only the first counts, as in Pacemaker,
 * where the later one does not change the ordering the first made.
 */
function firstOrderOfEachPair(orders: OrderConstraint[], problems: Problem[]): OrderConstraint[] {
  const seen = new Map<string, string>();
  return orders.filter((order) => {
    const pair = `${order.first}\0${order.then}`;
    const first = seen.get(pair);
    if (first === undefined) return (seen.set(pair, order.id), true);
    problems.push({
      constraint: order.id,
      message: `${order.id}: ${first} already orders ${order.first} before ${order.then}; as in Pacemaker, the first order counts`,
    });
    return false;
  });
}

/** Why an order cannot join the recorded ones (a guest after itself, or a cycle), or undefined. */
export function orderRefusal(
  order: OrderConstraint,
  recorded: readonly OrderConstraint[],
): string | undefined {
  if (order.first === order.then) return `order ${order.id}: a VM cannot start after itself`;
  const problems: Problem[] = [];
  withoutOrderCycles([...recorded, order], problems);
  if (!problems.some((problem) => problem.constraint === order.id)) return undefined;
  const others = problems.map((problem) => problem.constraint).filter((id) => id !== order.id);
  return `order ${order.id}: ${order.first} before ${order.then} closes a cycle with the recorded orders (${others.join(", ")})`;
}

/** Order cycles can never be satisfied: each constraint on a cycle is reported and left out. */
export function withoutOrderCycles(orders: OrderConstraint[], problems: Problem[] = []): OrderConstraint[] {
  const edges = new Map<string, string[]>();
  for (const order of orders) edges.set(order.first, [...(edges.get(order.first) ?? []), order.then]);
  const vertices = [...new Set(orders.flatMap((order) => [order.first, order.then]))].sort();
  const cycleOf = new Map<string, number>();
  findCycles(vertices, edges).forEach((cycle, number) => cycle.forEach((vm) => cycleOf.set(vm, number)));
  return orders.filter((order) => {
    const cycle = cycleOf.get(order.first);
    if (cycle === undefined || cycle !== cycleOf.get(order.then)) return true;
    problems.push({
      constraint: order.id,
      message: `${order.id}: order constraints form a cycle through ${order.first} and ${order.then}; the constraint is ignored`,
    });
    return false;
  });
}

/**
 * Mandatory rules that cannot both hold: +INFINITY and -INFINITY between the same two guests, or for the
 * same guest on the same node. Both stay in force (so -INFINITY wins and the guest does not run, as in
 * Pacemaker); the report says why.
 */
function reportContradictions(constraints: readonly Constraint[], problems: Problem[]): void {
  const seen = new Map<string, { id: string; score: number }>();
  const check = (key: string, id: string, score: number, what: string) => {
    if (!isMandatory(score)) return;
    const other = seen.get(key);
    if (other && other.score !== score) {
      problems.push({
        constraint: id,
        message: `${id} (${formatScore(score)}) contradicts ${other.id} (${formatScore(other.score)}) for ${what}; -INFINITY wins`,
      });
    } else if (!other) {
      seen.set(key, { id, score });
    }
  };
  const pairKey = (a: string, b: string) => (a < b ? `pair\0${a}\0${b}` : `pair\0${b}\0${a}`);
  for (const constraint of constraints) {
    if (constraint.type === "location") {
      check(
        `node\0${constraint.vm}\0${constraint.node}`,
        constraint.id,
        constraint.score,
        `${constraint.vm} on ${constraint.node}`,
      );
    } else if (constraint.type === "colocation") {
      check(
        pairKey(constraint.vm, constraint.withVm),
        constraint.id,
        constraint.score,
        `${constraint.vm} and ${constraint.withVm}`,
      );
    } else if (constraint.type === "colocation-set" && isMandatory(constraint.score)) {
      forEachPair(constraint.vms, (a, b) =>
        check(pairKey(a, b), constraint.id, constraint.score, `${a} and ${b}`),
      );
    }
  }
}

/** Mandatory sets are small groups in practice; a huge one is capped so the check stays cheap. */
function forEachPair(members: readonly string[], visit: (a: string, b: string) => void): void {
  const capped = members.slice(0, 200);
  for (let i = 0; i < capped.length; i++)
    for (let j = i + 1; j < capped.length; j++) visit(capped[i]!, capped[j]!);
}

function indexConstraints(
  prepared: Prepared,
  constraints: readonly Constraint[],
  parse: (text: string) => RuleParse,
): void {
  const ruleMatches = new Map<string, Int32Array>();
  const entry = (vm: string) => prepared.index[prepared.vmIndex.get(vm)!]!;
  const links: ColocationLink[] = [];
  const link = (constraint: ColocationLink["constraint"], dependent: string, primary: string) => {
    const [d, p] = [prepared.vmIndex.get(dependent)!, prepared.vmIndex.get(primary)!];
    const factor = Math.fround(constraint.score / INFINITY);
    links.push({
      constraint,
      dependent: d,
      primary: p,
      score: constraint.score,
      factor,
      defined: links.length,
    });
  };
  for (const constraint of constraints) {
    switch (constraint.type) {
      case "location":
        entry(constraint.vm).locations.push({
          kind: "node",
          constraint,
          node: prepared.nodeIndex.get(constraint.node)!,
        });
        break;
      case "location-rule":
        entry(constraint.vm).locations.push({
          kind: "rule",
          constraint,
          matching: matchesOf(constraint.rule, prepared.nodes, ruleMatches, parse),
        });
        break;
      case "colocation":
        // Pacemaker ignores a colocation of score 0.
        if (constraint.score !== 0) link(constraint, constraint.vm, constraint.withVm);
        break;
      case "colocation-set":
        if (constraint.score === 0) break;
        constraint.vms.forEach((member, position) => {
          if (position === 0) return;
          // Positive: each member with the one before it. Negative: away from every member before it.
          const before =
            constraint.score > 0 ? [constraint.vms[position - 1]!] : constraint.vms.slice(0, position);
          for (const other of before) link(constraint, member, other);
        });
        break;
      case "order":
        entry(constraint.then).startsAfter.push(constraint);
        break;
    }
  }
  indexColocations(prepared, links);
}

/**
 * Pacemaker keeps each guest's colocations sorted by the other guest's priority (higher first), then its
 * name; among colocations with the same other guest, the one defined later comes first.
 */
function indexColocations(prepared: Prepared, links: readonly ColocationLink[]): void {
  const { vms, index } = prepared;
  const by = (other: (link: ColocationLink) => number) => (a: ColocationLink, b: ColocationLink) =>
    vms[other(b)]!.priority - vms[other(a)]!.priority || other(a) - other(b) || b.defined - a.defined;
  for (const link of links) {
    index[link.dependent]!.primaries.push(link);
    index[link.primary]!.dependents.push(link);
  }
  for (const entry of index) {
    entry.primaries.sort(by((link) => link.primary));
    entry.dependents.sort(by((link) => link.dependent));
  }
}

/** Rules are evaluated once per distinct text and node: thousands of guests usually share a few rules. */
function matchesOf(
  text: string,
  nodes: readonly SchedNode[],
  cache: Map<string, Int32Array>,
  parse: (text: string) => RuleParse,
): Int32Array {
  const cached = cache.get(text);
  if (cached) return cached;
  const parsed = parse(text);
  const matching: number[] = [];
  if (parsed.ok)
    nodes.forEach((node, position) => evaluateRule(parsed.rule, node) && matching.push(position));
  const result = Int32Array.from(matching);
  cache.set(text, result);
  return result;
}
