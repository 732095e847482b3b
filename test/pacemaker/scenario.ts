// Random placement problems for the differential test against Pacemaker: a few nodes with attributes (some
// offline, some in standby), guests with priorities, stickiness and target roles, some running, and
// locations, rules, colocations, colocation sets and orders with finite and infinite scores, under one of
// Pacemaker's placement strategies, with capacity that binds or does not. Seeded: the same seed gives the
// same problems. Each problem says which features it combines, for the agreement table.
import { seededRandom } from "../seeded-random.js";
import { INFINITY, MINUS_INFINITY } from "../../src/core/scheduler/scores.js";
import {
  PLACEMENT_STRATEGIES,
  type Constraint,
  type PlacementStrategy,
  type SchedNode,
  type SchedVm,
} from "../../src/core/scheduler/types.js";

export interface Scenario {
  name: string;
  strategy: PlacementStrategy;
  nodes: SchedNode[];
  vms: SchedVm[];
  /** In the order of the configuration: ids sort in that order too, as Haven applies them by id. */
  constraints: Constraint[];
  /** Guest → the node it runs on. */
  running: Map<string, string>;
  features: Set<string>;
}

class Dice {
  constructor(readonly random: () => number) {}
  chance(probability: number): boolean {
    return this.random() < probability;
  }
  int(low: number, high: number): number {
    return low + Math.floor(this.random() * (high - low + 1));
  }
  pick<T>(values: readonly T[]): T {
    return values[Math.floor(this.random() * values.length)]!;
  }
  /** Two different items. */
  pair<T>(values: readonly T[]): [T, T] {
    const first = this.int(0, values.length - 1);
    const second = (first + this.int(1, values.length - 1)) % values.length;
    return [values[first]!, values[second]!];
  }
  some<T>(values: readonly T[], count: number): T[] {
    const pool = [...values];
    const chosen: T[] = [];
    while (chosen.length < count && pool.length > 0)
      chosen.push(pool.splice(this.int(0, pool.length - 1), 1)[0]!);
    return chosen;
  }
}

/** Node attributes and values, with differences of case that Pacemaker ignores. */
const ATTRIBUTES: Record<string, readonly string[]> = {
  hw: ["vm", "VM", "disk", "gpu"],
  rack: ["r1", "r2", "R1", "r10"],
  cores: ["4", "8", "16", "9"],
  ver: ["2.9", "2.10", "1.0", "10"],
};
const COMPARISONS = ["eq", "ne", "lt", "gt", "lte", "gte"] as const;
const LOCATION_SCORES = [MINUS_INFINITY, INFINITY, -100, 50, 100, 500, 1000, 600_000, -300_000, 7];
const COLOCATION_SCORES = [INFINITY, MINUS_INFINITY, 100, -100, 500, 50_000, -1000, 1];
const SET_SCORES = [INFINITY, MINUS_INFINITY, -500, 200];
const STICKINESS = [0, 1, 50, 100, 1000, INFINITY, -50];

export function generateScenario(seed: number, index: number): Scenario {
  const dice = new Dice(seededRandom(seed * 1_000_003 + index));
  const features = new Set<string>();
  const strategy = dice.pick(PLACEMENT_STRATEGIES);
  features.add(`strategy ${strategy}`);
  const tight = dice.chance(0.5);
  const nodes = generateNodes(dice, tight, features);
  const vms = generateVms(dice, tight, features);
  const running = placeRunning(dice, nodes, vms);
  if (running.size > 0) features.add("running guests");
  if (tight) features.add("capacity");
  const constraints = generateConstraints(dice, nodes, vms, features);
  return { name: `seed ${seed} #${index}`, strategy, nodes, vms, constraints, running, features };
}

/**
 * About half the guests run, each on a node that has room for it (a cluster Haven runs never has more on a
 * node than fits); a node that is down now may have run anything.
 */
function placeRunning(dice: Dice, nodes: SchedNode[], vms: SchedVm[]): Map<string, string> {
  const running = new Map<string, string>();
  const used = new Map(nodes.map((node) => [node.name, { vcpus: 0, memoryMb: 0 }]));
  for (const vm of vms) {
    if (!dice.chance(0.5)) continue;
    const node = dice.pick(nodes);
    const load = used.get(node.name)!;
    const fits =
      load.vcpus + vm.vcpus <= node.capacity.vcpus && load.memoryMb + vm.memoryMb <= node.capacity.memoryMb;
    if (node.online && !fits) continue;
    load.vcpus += vm.vcpus;
    load.memoryMb += vm.memoryMb;
    running.set(vm.name, node.name);
  }
  return running;
}

function generateNodes(dice: Dice, tight: boolean, features: Set<string>): SchedNode[] {
  const count = dice.int(2, 5);
  const nodes = Array.from({ length: count }, (_, position): SchedNode => {
    const attributes: Record<string, string> = {};
    for (const [name, values] of Object.entries(ATTRIBUTES))
      if (dice.chance(0.6)) attributes[name] = dice.pick(values);
    const capacity = tight
      ? { vcpus: dice.pick([2, 4, 8]), memoryMb: dice.pick([2048, 4096, 6144, 8192]) }
      : { vcpus: 256, memoryMb: 1_048_576 };
    return { name: `n${position + 1}`, online: true, standby: false, attributes, capacity };
  });
  for (const node of nodes.slice(1)) {
    if (dice.chance(0.15)) node.online = false;
    else if (dice.chance(0.12)) node.standby = true;
  }
  if (nodes.some((node) => !node.online)) features.add("offline nodes");
  if (nodes.some((node) => node.standby)) features.add("standby nodes");
  return nodes;
}

function generateVms(dice: Dice, tight: boolean, features: Set<string>): SchedVm[] {
  const count = dice.int(2, 8);
  return Array.from({ length: count }, (_, position): SchedVm => {
    const priority = dice.chance(0.3) ? dice.int(0, 10) : 0;
    const stickiness = dice.chance(0.5) ? dice.pick(STICKINESS) : 0;
    const state = dice.chance(0.1) ? "stopped" : "started";
    if (priority !== 0) features.add("priorities");
    if (stickiness > 0) features.add("stickiness");
    if (stickiness < 0) features.add("negative stickiness");
    if (state === "stopped") features.add("stopped guests");
    return {
      name: `vm${position + 1}`,
      state,
      vcpus: tight ? dice.pick([1, 1, 2]) : 1,
      memoryMb: tight ? dice.pick([512, 1024, 2048, 3072]) : 512,
      allowMigrate: dice.chance(0.5),
      stickiness,
      priority,
      // Haven decides about failures with its own limits; the problems have none.
      migrationThreshold: 0,
      failureTimeoutS: 0,
    };
  });
}

function generateConstraints(dice: Dice, nodes: SchedNode[], vms: SchedVm[], features: Set<string>) {
  const constraints: Constraint[] = [];
  const id = (kind: string) => `c${String(constraints.length + 1).padStart(3, "0")}-${kind}`;
  const names = vms.map((vm) => vm.name);
  for (let count = dice.int(0, 5); count > 0; count--) {
    const score = dice.pick(LOCATION_SCORES);
    features.add(Math.abs(score) >= INFINITY ? "infinite locations" : "finite locations");
    constraints.push({
      type: "location",
      id: id("loc"),
      vm: dice.pick(names),
      node: dice.pick(nodes).name,
      score,
    });
  }
  for (let count = dice.int(0, 3); count > 0; count--) {
    const rule = generateRule(dice, nodes, features);
    const score = dice.pick(LOCATION_SCORES);
    constraints.push({ type: "location-rule", id: id("rule"), vm: dice.pick(names), rule, score });
  }
  for (let count = dice.int(0, 4); count > 0; count--) {
    const [vm, withVm] = dice.pair(names);
    const score = dice.pick(COLOCATION_SCORES);
    features.add(Math.abs(score) >= INFINITY ? "infinite colocations" : "finite colocations");
    constraints.push({ type: "colocation", id: id("col"), vm, withVm, score });
  }
  if (names.length >= 3 && dice.chance(0.3)) {
    features.add("colocation sets");
    const members = dice.some(names, dice.int(3, Math.min(4, names.length)));
    constraints.push({ type: "colocation-set", id: id("set"), vms: members, score: dice.pick(SET_SCORES) });
  }
  for (let count = dice.chance(0.4) ? dice.int(1, 2) : 0; count > 0; count--) {
    // First before then in name order: orders never form a cycle.
    const [a, b] = dice.pair(names);
    const [first, then] = names.indexOf(a) < names.indexOf(b) ? [a, b] : [b, a];
    const kind = dice.pick(["mandatory", "optional"] as const);
    features.add("orders");
    constraints.push({ type: "order", id: id("ord"), first, then, kind });
  }
  return constraints;
}

/** One to three conditions joined by one operator (crm cannot mix them), on attributes or #uname. */
function generateRule(dice: Dice, nodes: SchedNode[], features: Set<string>): string {
  features.add("rules");
  const conditions = Array.from({ length: dice.int(1, 3) }, () => {
    if (dice.chance(0.2)) return `#uname ${dice.pick(["eq", "ne"])} ${dice.pick(nodes).name}`;
    const attribute = dice.pick(Object.keys(ATTRIBUTES));
    if (dice.chance(0.15)) return `${dice.pick(["defined", "not_defined"])} ${attribute}`;
    const value = dice.pick(ATTRIBUTES[attribute]!);
    if (/[A-Z]/.test(value)) features.add("rules: case");
    if (dice.chance(0.25)) {
      features.add("rules: typed");
      // Pacemaker 2.1.5 never returns from a version comparison of text without digits (compare_version):
      // versions only for the attributes whose values are all numbers.
      const numeric = attribute === "cores" || attribute === "ver";
      const type = dice.pick(
        numeric ? ["string", "integer", "number", "version"] : ["string", "integer", "number"],
      );
      return `${attribute} ${type}:${dice.pick(COMPARISONS)} ${value}`;
    }
    return `${attribute} ${dice.pick(COMPARISONS)} ${value}`;
  });
  return conditions.join(dice.chance(0.5) ? " and " : " or ");
}
