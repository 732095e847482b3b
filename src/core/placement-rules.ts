// Placement constraints (location, colocation, order, imported from Pacemaker) applied to Haven's placement:
// the scheduler scores each node for the guest with Pacemaker's arithmetic; Haven then keeps only nodes with
// a score of at least 0 (a negative total bans the node, as in Pacemaker) that pass its own checks (online,
// not in maintenance, storage, capacity), and prefers the highest score, then the most free memory.
import type { NodeInfo, Placement, VmSpec, VmStatus } from "./model.js";
import {
  candidateLoads,
  chooseNode,
  hasRoom,
  unfitReason,
  nodeLoads,
  type NodeLoad,
  type PlacementChoice,
} from "./placement.js";
import { explain, schedule } from "./scheduler/scheduler.js";
import { addScores, INFINITY, isMandatory, MINUS_INFINITY } from "./scheduler/scores.js";
import type { Constraint, Contribution, Plan, SchedConfig, SchedState } from "./scheduler/types.js";

export interface PlacementRules {
  constraints: readonly Constraint[];
  /** Attributes set for nodes (by an import), on top of those the nodes publish themselves. */
  nodeAttributes: ReadonlyMap<string, Readonly<Record<string, string>>>;
}

export const NO_RULES: PlacementRules = { constraints: [], nodeAttributes: new Map() };

/** Scores the scheduler computes itself; Haven checks these conditions on its own. */
const BUILT_IN = new Set(["offline", "standby", "capacity", "stickiness", "migration-threshold"]);

export interface RuleScore {
  score: number;
  contributions: Contribution[];
}

export interface RulesView {
  nodes: NodeInfo[];
  specs: ReadonlyMap<string, VmSpec>;
  statuses: ReadonlyMap<string, VmStatus>;
  maintenance: ReadonlySet<string>;
  rules: PlacementRules;
  now: number;
}

/**
 * chooseNode with the constraints' scores when any constraint names the VM. `planned` is the node the
 * scheduler's plan for the whole round gives the VM: taken when Haven's own checks pass there and no
 * mandatory colocation with a guest placed since forbids it, which spares a scheduler run per guest when a
 * failed node's guests are recovered together. Otherwise the VM's nodes are scored one by one.
 */
export function chooseNodeByRules(
  spec: VmSpec,
  loads: NodeLoad[],
  view: RulesView,
  placements: ReadonlyMap<string, Placement>,
  planned?: string,
): PlacementChoice {
  if (!constrained(view.rules, spec.name)) return chooseNode(spec, loads);
  const load = planned === undefined ? undefined : loads.find((l) => l.node.name === planned);
  if (
    load !== undefined &&
    unfitReason(load.node, spec) === undefined &&
    hasRoom(spec, load) &&
    !colocationForbids(view.rules, placements, spec.name, planned!)
  )
    return { node: planned! };
  return chooseNode(spec, loads, ruleScores(view, placements, spec.name));
}

/** The scheduler's plan for the whole cluster; none without constraints (nothing is scored then). */
export function clusterPlan(view: RulesView, placements: ReadonlyMap<string, Placement>): Plan | undefined {
  if (view.rules.constraints.length === 0) return undefined;
  return schedule(schedConfig(view), schedState(view, placements));
}

/** The node the plan starts each guest on that needs a node (for chooseNodeByRules). */
export function plannedStarts(plan: Plan | undefined): Map<string, string> {
  const starts = plan?.actions.flatMap((a) => (a.type === "start" && a.to ? [[a.vm, a.to] as const] : []));
  return new Map(starts);
}

/** Whether a mandatory colocation of `vm` with a guest placed (or moving) somewhere rules `node` out. */
function colocationForbids(
  rules: PlacementRules,
  placements: ReadonlyMap<string, Placement>,
  vm: string,
  node: string,
): boolean {
  const nodesOf = (other: string) => {
    const placement = placements.get(other);
    return placement?.state === "active" ? [placement.node, placement.migration?.to] : [];
  };
  return rules.constraints.some((c) => {
    if (c.type === "colocation" && (c.vm === vm || c.withVm === vm)) {
      const partner = nodesOf(c.vm === vm ? c.withVm : c.vm);
      if (c.score <= MINUS_INFINITY) return partner.includes(node);
      return c.score >= INFINITY && c.vm === vm && partner.length > 0 && !partner.includes(node);
    }
    if (c.type === "colocation-set" && c.vms.includes(vm) && isMandatory(c.score)) {
      const others = c.vms.filter((member) => member !== vm).map(nodesOf);
      if (c.score <= MINUS_INFINITY) return others.some((at) => at.includes(node));
      return others.some((at) => at.length > 0 && !at.includes(node));
    }
    return false;
  });
}

/** Whether any constraint names the VM; without one, placement is Haven's plain most-free-memory choice. */
export function constrained(rules: PlacementRules, vm: string): boolean {
  return rules.constraints.some((c) => constraintNames(c).includes(vm));
}

/** Every VM some constraint names. */
export function constrainedVms(rules: PlacementRules): Set<string> {
  return new Set(rules.constraints.flatMap(constraintNames));
}

/** Per node, the constraints' score for the VM (only nodes the scheduler scored; a missing node scores 0). */
export function ruleScores(
  view: RulesView,
  placements: ReadonlyMap<string, Placement>,
  vm: string,
): Map<string, RuleScore> {
  // Scored as if started: placement is only ever chosen for a guest that is to run (and explain may ask early).
  const explanation = explain(schedConfig(view, vm), schedState(view, placements), vm);
  const keptAway = partnersKeptAway(view.rules, placements, vm);
  return new Map(
    explanation.nodes.map((node) => {
      const own = node.contributions.filter((c) => !BUILT_IN.has(c.source) && !c.ignored);
      const contributions = [...own, ...(keptAway.get(node.node) ?? [])];
      return [
        node.node,
        { score: contributions.reduce((sum, c) => addScores(sum, c.score), 0), contributions },
      ];
    }),
  );
}

/**
 * A mandatory anti-affinity binds both guests: the scheduler scores it for the dependent guest only (placed
 * after its partner, as Pacemaker does), but Haven never moves a running guest to make room, so a guest is
 * also kept off the nodes of the guests that must stay away from it.
 */
function partnersKeptAway(
  rules: PlacementRules,
  placements: ReadonlyMap<string, Placement>,
  vm: string,
): Map<string, Contribution[]> {
  const byNode = new Map<string, Contribution[]>();
  for (const c of rules.constraints) {
    if (c.type !== "colocation" || c.withVm !== vm || c.score > MINUS_INFINITY) continue;
    const partner = placements.get(c.vm);
    if (!partner) continue;
    const detail = `${c.vm} runs here and must stay apart from ${vm}`;
    byNode.set(partner.node, [
      ...(byNode.get(partner.node) ?? []),
      { source: c.id, score: MINUS_INFINITY, detail },
    ]);
  }
  return byNode;
}

function constraintNames(constraint: Constraint): string[] {
  switch (constraint.type) {
    case "location":
    case "location-rule":
      return [constraint.vm];
    case "colocation":
      return [constraint.vm, constraint.withVm];
    case "colocation-set":
      return [...constraint.vms];
    case "order":
      return [constraint.first, constraint.then];
  }
}

/** The scheduler's configuration; `placing` is scored as started whatever its desired state. */
export function schedConfig(view: RulesView, placing?: string): SchedConfig {
  return {
    vms: [...view.specs.values()].map((spec) => ({
      name: spec.name,
      state: spec.name === placing ? "started" : spec.state,
      vcpus: spec.vcpus,
      memoryMb: spec.memoryMb,
      allowMigrate: spec.allowMigrate,
      stickiness: spec.stickiness,
      priority: spec.priority,
      // Haven's own restart and relocation limits decide about failures.
      migrationThreshold: 0,
      failureTimeoutS: spec.failureTimeoutSeconds,
    })),
    constraints: view.rules.constraints,
  };
}

/** The scheduler's view of the cluster: online nodes (maintenance as standby) and where guests run. */
export function schedState(view: RulesView, placements: ReadonlyMap<string, Placement>): SchedState {
  const vms = new Map(
    [...placements].map(([vm, placement]) => {
      const running = runningNode(vm, view, placements) !== null;
      return [vm, { node: placement.node, running, failures: [] }] as const;
    }),
  );
  return {
    nodes: view.nodes.map((node) => ({
      name: node.name,
      online: true,
      standby: view.maintenance.has(node.name),
      attributes: { ...node.attributes, ...view.rules.nodeAttributes.get(node.name) },
      capacity: node.capacity,
    })),
    vms,
    nowMs: view.now,
  };
}

export interface NodeVerdict {
  node: string;
  /** The constraints' score (0 when none names the VM). */
  score: number;
  contributions: Contribution[];
  free: { vcpus: number; memoryMb: number };
  /** Why the VM cannot go there, or null when it can. */
  refused: string | null;
}

/** `haven vm explain`: every online node as Haven's placement sees it for this VM, and the node it would pick. */
export function explainPlacement(
  spec: VmSpec,
  view: RulesView,
  placements: ReadonlyMap<string, Placement>,
): {
  vm: string;
  constrained: boolean;
  chosen: string | null;
  reason: string | null;
  /** For a running guest named by constraints: what rebalancing does with it, in the scheduler's words. */
  rebalance: string | null;
  nodes: NodeVerdict[];
} {
  // The VM's own placement does not count against the nodes it is weighed for.
  const others = new Map([...placements].filter(([vm]) => vm !== spec.name));
  const loads = candidateLoads(view, others);
  const isConstrained = constrained(view.rules, spec.name);
  const runsOn = runningNode(spec.name, view, placements);
  const scores = isConstrained ? ruleScores(view, others, spec.name) : undefined;
  if (scores && runsOn) addStickiness(scores, runsOn, spec.stickiness);
  const choice = chooseNode(spec, loads, scores);
  const nodes = nodeLoads(view.nodes, view.specs, others).map((load): NodeVerdict => {
    const free = {
      vcpus: load.node.capacity.vcpus - load.usedVcpus,
      memoryMb: load.node.capacity.memoryMb - load.usedMemoryMb,
    };
    const rule = scores?.get(load.node.name);
    const score = rule?.score ?? 0;
    const unfit = unfitReason(load.node, spec);
    const refused = view.maintenance.has(load.node.name)
      ? "in maintenance"
      : unfit !== undefined
        ? unfit
        : score < 0
          ? `banned by constraints (score ${score})`
          : free.memoryMb < spec.memoryMb || free.vcpus < spec.vcpus
            ? `not enough room (${free.memoryMb} MB, ${free.vcpus} vCPUs free)`
            : null;
    return { node: load.node.name, score, contributions: rule?.contributions ?? [], free, refused };
  });
  let rebalance: string | null = null;
  if (isConstrained && runsOn) {
    const verdict = explain(schedConfig(view), schedState(view, placements), spec.name);
    rebalance = verdict.action?.reason ?? verdict.verdict;
  }
  return {
    vm: spec.name,
    constrained: isConstrained,
    chosen: choice.node,
    reason: choice.node === null ? choice.reason : null,
    rebalance,
    nodes,
  };
}

/** The node the VM's QEMU runs on for its current placement, or null. */
export function runningNode(
  vm: string,
  view: Pick<RulesView, "statuses">,
  placements: ReadonlyMap<string, Placement>,
): string | null {
  const placement = placements.get(vm);
  const status = view.statuses.get(vm);
  const runs =
    placement?.state === "active" &&
    status?.node === placement.node &&
    status.generation === placement.generation &&
    status.state === "running";
  return runs ? placement.node : null;
}

function addStickiness(scores: Map<string, RuleScore>, node: string, stickiness: number): void {
  if (stickiness === 0) return;
  const rule = scores.get(node) ?? { score: 0, contributions: [] };
  scores.set(node, {
    score: addScores(rule.score, stickiness),
    contributions: [
      ...rule.contributions,
      { source: "stickiness", score: stickiness, detail: "runs here now" },
    ],
  });
}
