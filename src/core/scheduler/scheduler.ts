// The scheduler: a pure, deterministic function from (configuration, cluster state) to a plan. Guests are
// placed one at a time, higher priority first (running guests before newcomers of equal priority, then
// by name), each after the guests it depends on (colocation primaries, order predecessors), as Pacemaker
// assigns a resource after the resources it is colocated with. Each guest goes to its best-scoring node
// with room; room is claimed as guests are placed, so the plan never overcommits a node.
import { notFound } from "../errors.js";
import { dependenciesFirst } from "./ordering.js";
import { prepare, type Prepared } from "./prepare.js";
import {
  explanationOf,
  nowhereReason,
  placedAction,
  stopAction,
  type Outcome,
  type Turn,
} from "./reasons.js";
import { currentNode, newRound, place, runtimeOf, startTurn, type Round } from "./round.js";
import { bestNode, scoreVm, type Scored } from "./scoring.js";
import { INFINITY } from "./scores.js";
import type {
  Explanation,
  Plan,
  PlanAction,
  SchedConfig,
  SchedState,
  SchedVm,
  Unplaceable,
} from "./types.js";

export function schedule(config: SchedConfig, state: SchedState): Plan {
  return run(config, state, null).plan;
}

/** The scores of one guest on every node, as they were at its turn, and the verdict. */
export function explain(config: SchedConfig, state: SchedState, vmName: string): Explanation {
  const { explanation } = run(config, state, vmName);
  if (!explanation) throw notFound(`VM ${vmName} is not in the configuration`);
  return explanation;
}

interface Context {
  prepared: Prepared;
  state: SchedState;
  round: Round;
  traceVm: string | null;
  actions: PlanAction[];
  unplaceable: Unplaceable[];
  explanation: Explanation | null;
}

function run(config: SchedConfig, state: SchedState, traceVm: string | null) {
  const prepared = prepare(config, state);
  const context: Context = {
    prepared,
    state,
    round: newRound(prepared, state),
    traceVm,
    actions: [],
    unplaceable: [],
    explanation: null,
  };
  for (const name of placementOrder(prepared, state)) decide(context, prepared.vmByName.get(name)!);
  const plan: Plan = {
    actions: orderedActions(context),
    unplaceable: context.unplaceable.sort((a, b) => compareNames(a.vm, b.vm)),
    problems: prepared.problems,
  };
  return { plan, explanation: context.explanation };
}

const compareNames = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function placementOrder(prepared: Prepared, state: SchedState): string[] {
  const runningFirst = new Map(
    prepared.vms.map((vm) => [vm.name, currentNode(prepared, runtimeOf(state, vm)) >= 0 ? 0 : 1]),
  );
  const base = [...prepared.vms].sort(
    (a, b) =>
      b.priority - a.priority ||
      runningFirst.get(a.name)! - runningFirst.get(b.name)! ||
      compareNames(a.name, b.name),
  );
  const rank = new Map(base.map((vm, position) => [vm.name, position]));
  return dependenciesFirst(
    base.map((vm) => vm.name),
    (name) => {
      const after = prepared.index.get(name)!.placeAfter;
      return after.length < 2 ? after : [...after].sort((a, b) => rank.get(a)! - rank.get(b)!);
    },
  );
}

function decide(context: Context, vm: SchedVm): void {
  const { prepared, round } = context;
  const runtime = runtimeOf(context.state, vm);
  const turn: Turn = { round, vm, runtime, current: currentNode(prepared, runtime), displace: false };
  startTurn(round, vm);
  const outcome = vm.state === "stopped" ? stoppedOutcome(turn) : startedOutcome(context, turn);
  // Explained before it is placed, so the room shown is the room the guest was offered.
  if (vm.name === context.traceVm) context.explanation = explanationOf(turn, outcome);
  if (outcome.action) context.actions.push(outcome.action);
  if (outcome.chosen >= 0) place(round, vm, outcome.chosen);
  else if (vm.state === "started") context.unplaceable.push({ vm: vm.name, reason: outcome.verdict });
}

function stoppedOutcome(turn: Turn): Outcome {
  const action = turn.current >= 0 ? stopAction(turn, "target state is stopped") : null;
  return { scored: null, chosen: -1, action, verdict: "target state is stopped", blockers: [] };
}

function startedOutcome(context: Context, turn: Turn): Outcome {
  const blockers = blockersOf(context, turn.vm);
  const { scored, best } = choose(context, turn);
  if (blockers.length === 0 && best >= 0) {
    const action = placedAction(turn, best, scored.scores);
    return { scored, chosen: best, action, verdict: action.reason, blockers };
  }
  const reason = blockers.length > 0 ? blockers.join("; ") : nowhereReason(turn);
  const action = turn.current >= 0 ? stopAction(turn, `cannot run: ${reason}`) : null;
  return { scored, chosen: -1, action, verdict: reason, blockers };
}

/**
 * The best node without touching room that pending guests hold; failing that, the best node where
 * lower-priority pending guests give way (they are placed later, elsewhere if they can).
 */
function choose(context: Context, turn: Turn): { scored: Scored; best: number } {
  const { round, vm, runtime, current } = turn;
  const traced = vm.name === context.traceVm;
  const scored = scoreVm(round, vm, runtime, current, { traced, displace: false });
  const best = bestNode(round, scored.scores, current);
  if (best >= 0) return { scored, best };
  const lowerPriorityHolds = [...round.heldByPriority.keys()].some((priority) => priority < vm.priority);
  if (!lowerPriorityHolds) return { scored, best };
  turn.displace = true;
  const again = scoreVm(round, vm, runtime, current, { traced, displace: true });
  return { scored: again, best: bestNode(round, again.scores, current) };
}

/** Guest-wide reasons not to run: a mandatory colocation or order partner that will not run. */
function blockersOf(context: Context, vm: SchedVm): string[] {
  const { round } = context;
  const notRunning = (other: string) => round.decided.has(other) && !round.placed.has(other);
  const index = context.prepared.index.get(vm.name)!;
  const blockers: string[] = [];
  if (!(vm.vcpus >= 0 && vm.memoryMb >= 0)) blockers.push("it needs an invalid amount of CPU or memory");
  for (const { constraint, partner, dependent } of index.colocations) {
    if (dependent && constraint.score >= INFINITY && notRunning(partner)) {
      blockers.push(`it must run with ${partner} (${constraint.id}), which will not run`);
    }
  }
  for (const order of index.startsAfter) {
    if (order.kind === "mandatory" && notRunning(order.first)) {
      blockers.push(`${order.first} must run first (${order.id}), and it will not run`);
    }
  }
  return blockers;
}

const PHASES: Record<PlanAction["type"], number> = { stop: 0, migrate: 1, move: 2, start: 3, keep: 4 };

/**
 * Stops first (they free room; in reverse placement order, so a guest stops before those it needs),
 * then migrations, moves and starts in placement order, which already puts `first` before `then`.
 */
function orderedActions(context: Context): PlanAction[] {
  const typeOf = new Map(context.actions.map((action) => [action.vm, action.type]));
  const sequence = new Map(context.actions.map((action, position) => [action.vm, position]));
  for (const action of context.actions) {
    if (action.type !== "start" && action.type !== "move") continue;
    const after = context.prepared.index
      .get(action.vm)!
      .startsAfter.map((order) => order.first)
      .filter((first) => typeOf.get(first) === "start" || typeOf.get(first) === "move");
    if (after.length > 0) action.after = [...new Set(after)].sort(compareNames);
  }
  return [...context.actions].sort((a, b) => {
    const phase = PHASES[a.type] - PHASES[b.type];
    if (phase !== 0) return phase;
    const order = sequence.get(a.vm)! - sequence.get(b.vm)!;
    return a.type === "stop" ? -order : order;
  });
}
