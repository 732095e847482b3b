// The scheduler: a pure, deterministic function from (configuration, cluster state) to a plan, with
// Pacemaker's allocation semantics (allocate.ts and the files it names): guests are assigned one at a
// time, higher priority first, each after the guests it is colocated with, from scores that add up
// locations, rules, stickiness and colocations in Pacemaker's order, under the cluster's placement strategy.
//
// Where Haven departs from Pacemaker it does so for running guests (docs/placement.md): a running guest
// stays on its node when no node scores higher (node-choice.ts), and a running guest that would be stopped
// because guests of its priority or lower, assigned before it, took its room keeps that room: the
// allocation is made again with the room held for it, at most twice.
import { notFound } from "../errors.js";
import { allocate, type Allocated } from "./allocate.js";
import { blockersOf, runningAfterPlan } from "./blocking.js";
import { dependenciesFirst } from "./ordering.js";
import { prepare, type Prepared } from "./prepare.js";
import { explanationOf, nowhereReason, placedAction, stopAction, type Outcome } from "./reasons.js";
import {
  DEFAULT_PLACEMENT_STRATEGY,
  type Explanation,
  type Plan,
  type PlanAction,
  type SchedConfig,
  type SchedState,
  type Unplaceable,
} from "./types.js";

/** Allocations made at most: the first, and up to three more with the room of evicted running guests held. */
const MAX_ALLOCATIONS = 4;

export function schedule(config: SchedConfig, state: SchedState): Plan {
  return run(config, state, null).plan;
}

/** The scores of one guest on every node, as they were at its turn, and the verdict. */
export function explain(config: SchedConfig, state: SchedState, vmName: string): Explanation {
  const { explanation } = run(config, state, vmName);
  if (!explanation) throw notFound(`VM ${vmName} is not in the configuration`);
  return explanation;
}

function run(config: SchedConfig, state: SchedState, traceVm: string | null) {
  const prepared = prepare(config, state);
  const traced = traceVm === null ? -1 : (prepared.vmIndex.get(traceVm) ?? -1);
  const allocation = allocateKeepingRoom(prepared, state, config, traced);
  const runs = runningAfterPlan(allocation);
  const actions: PlanAction[] = [];
  const unplaceable: Unplaceable[] = [];
  let explanation: Explanation | null = null;
  for (const vm of allocation.finished) {
    const outcome = outcomeOf(allocation, runs, vm);
    if (vm === traced) explanation = explanationOf(allocation, vm, outcome);
    if (outcome.action) actions.push(outcome.action);
    const guest = prepared.vms[vm]!;
    if (guest.state === "started" && !runs[vm]) unplaceable.push({ vm: guest.name, reason: outcome.verdict });
  }
  const plan: Plan = {
    actions: orderedActions(prepared, actions),
    unplaceable: unplaceable.sort((a, b) => compareNames(a.vm, b.vm)),
    problems: prepared.problems,
  };
  return { plan, explanation };
}

/**
 * Pacemaker's allocation, then again with the room of evicted running guests held for them, as long as that
 * keeps them running: a guest that would not run even so (a higher priority takes the room) is not held for.
 */
function allocateKeepingRoom(prepared: Prepared, state: SchedState, config: SchedConfig, traced: number) {
  const options = {
    strategy: config.placementStrategy ?? DEFAULT_PLACEMENT_STRATEGY,
    keepOnTies: config.runningGuests?.ties ?? true,
  };
  let best = allocate(prepared, state, options, new Set(), traced);
  if (config.runningGuests?.room === false) return best;
  const protect = new Set(best.evicted);
  for (let attempt = 2; attempt <= MAX_ALLOCATIONS && protect.size > 0; attempt++) {
    const allocation = allocate(prepared, state, options, protect, traced);
    const lost = [...protect].filter((vm) => allocation.chosen[vm]! < 0);
    if (lost.length > 0) {
      lost.forEach((vm) => protect.delete(vm));
      continue;
    }
    best = allocation;
    const grown = [...allocation.evicted].filter((vm) => !protect.has(vm));
    if (grown.length === 0) break;
    grown.forEach((vm) => protect.add(vm));
  }
  return best;
}

const compareNames = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function outcomeOf(allocation: Allocated, runs: Uint8Array, vm: number): Outcome {
  const guest = allocation.prepared.vms[vm]!;
  const running = allocation.current[vm]! >= 0;
  if (guest.state === "stopped") {
    const reason = "target state is stopped";
    return {
      chosen: -1,
      action: running ? stopAction(allocation, vm, reason) : null,
      verdict: reason,
      blockers: [],
    };
  }
  const blockers = blockersOf(allocation, runs, vm);
  const chosen = allocation.chosen[vm]!;
  if (runs[vm]) {
    const action = placedAction(allocation, vm, chosen);
    return { chosen, action, verdict: action.reason, blockers };
  }
  const reason = blockers.length > 0 ? blockers.join("; ") : nowhereReason(allocation, vm);
  const action = running ? stopAction(allocation, vm, `cannot run: ${reason}`) : null;
  return { chosen: -1, action, verdict: reason, blockers };
}

const PHASES: Record<PlanAction["type"], number> = { stop: 0, migrate: 1, move: 2, start: 3, keep: 4 };

/**
 * Stops first (they free room; in reverse order of assignment, so a guest stops before those it needs),
 * then migrations, moves and starts in order of assignment, each start after the starts it waits for
 * (`after`, from order constraints).
 */
function orderedActions(prepared: Prepared, actions: PlanAction[]): PlanAction[] {
  const byVm = new Map(actions.map((action) => [action.vm, action]));
  const starting = (vm: string) => ["start", "move"].includes(byVm.get(vm)?.type ?? "");
  for (const action of actions) {
    if (!starting(action.vm)) continue;
    const after = prepared.index[prepared.vmIndex.get(action.vm)!]!.startsAfter.map(
      (order) => order.first,
    ).filter(starting);
    if (after.length > 0) action.after = [...new Set(after)].sort(compareNames);
  }
  const sequence = new Map(actions.map((action, position) => [action.vm, position]));
  const starts = dependenciesFirst(
    actions.filter((action) => starting(action.vm)).map((action) => action.vm),
    (vm) => byVm.get(vm)!.after ?? [],
  );
  starts.forEach((vm, position) => sequence.set(vm, position));
  return [...actions].sort((a, b) => {
    const phase = PHASES[a.type] - PHASES[b.type];
    if (phase !== 0) return phase;
    const order = sequence.get(a.vm)! - sequence.get(b.vm)!;
    return a.type === "stop" ? -order : order;
  });
}
