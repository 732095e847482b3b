// Rebalancing: as in Pacemaker, a running guest named by placement constraints moves when its constraints
// score another node higher than its own node plus its stickiness — its preferred node came back after a
// failure or a drain, or a constraint or node attribute changed. The scheduler plans the whole cluster at
// once, so guests bound to each other move coherently; the controller then starts the plan's moves as
// migrations (live where allowed), within the cluster's migration limits.
//
// Only a settled cluster is rebalanced: no migration, recovery or other placement change under way. The
// plan is acted on as a whole and made again once its moves are over, so a half-applied plan never drives
// the next one. Haven never stops a running guest because of a constraint; a guest banned from its node
// with nowhere else to go keeps running, and is reported.
import type { ClusterView, ControllerAction } from "./controller-plan.js";
import { begin, roomForMigration, whyNotMovable } from "./migration-plan.js";
import { migrationSettingsOf, type Placement } from "./model.js";
import { constrained, constrainedVms, runningNode, schedConfig, schedState } from "./placement-rules.js";
import { explain } from "./scheduler/scheduler.js";
import type { Plan, PlanAction } from "./scheduler/types.js";

/** After a move of a guest failed or was cancelled, rebalancing leaves the guest alone this long. */
export const REBALANCE_HOLD_MS = 10 * 60_000;

export function planRebalance(
  view: ClusterView,
  placements: ReadonlyMap<string, Placement>,
  /** The scheduler's plan for the cluster at the start of the round (none without constraints). */
  plan: Plan | undefined,
  /** VMs with a decision in this round already, and whether any of them changes a placement. */
  round: { decided: ReadonlySet<string>; changing: boolean },
): ControllerAction[] {
  if (!plan) return [];
  const named = constrainedVms(view.rules);
  const steps = plan.actions.filter((step) => named.has(step.vm) && !round.decided.has(step.vm));
  const reports = steps.flatMap((step) => reportBanned(step, view, placements));
  if (round.changing || !settled(view, placements)) return reports;
  return [...reports, ...moves(steps, view, placements)];
}

/** A running guest the plan would stop: Haven keeps it running and says why. */
function reportBanned(
  step: PlanAction,
  view: ClusterView,
  placements: ReadonlyMap<string, Placement>,
): ControllerAction[] {
  const node = runningNode(step.vm, view, placements);
  if (step.type !== "stop" || !node || view.specs.get(step.vm)?.state !== "started") return [];
  return [{ type: "unplaceable", vm: step.vm, reason: `keeps running on ${node}: ${step.reason}` }];
}

/** The plan's migrations and moves of running guests, as far as Haven's checks and limits allow. */
function moves(
  steps: PlanAction[],
  view: ClusterView,
  placements: ReadonlyMap<string, Placement>,
): ControllerAction[] {
  const planned = new Map(placements);
  const actions: ControllerAction[] = [];
  for (const step of steps) {
    if ((step.type !== "migrate" && step.type !== "move") || !step.to) continue;
    const spec = view.specs.get(step.vm)!;
    const placement = planned.get(step.vm);
    if (!placement || whyNotMovable(spec, placement, view.statuses.get(step.vm))) continue;
    if (!movable(placement, view) || !roomForMigration(placement.node, view, planned)) continue;
    const begun = begin(spec, placement, view, planned, {
      // Unique per attempt: agents act on a migration id once, so a retry after a failure needs a new one.
      id: `rebalance-${step.vm}-${placement.generation + 1}-${view.now}`,
      to: step.to,
      settings: migrationSettingsOf(view.migrationDefaults),
      reason: `rebalancing: ${step.reason}`,
    });
    // Haven's own checks (storage, room counting moves under way) may refuse what the scheduler planned.
    if (typeof begun === "string") continue;
    actions.push(begun);
    planned.set(step.vm, { ...begun.placement, updatedAt: "" });
  }
  return actions;
}

/** No placement is changing: nothing migrating, no migration requested, no guest on a failed node. */
function settled(view: ClusterView, placements: ReadonlyMap<string, Placement>): boolean {
  const online = new Set(view.nodes.map((node) => node.name));
  return (
    view.requests.size === 0 &&
    [...placements.values()].every((p) => !p.migration && (p.state !== "active" || online.has(p.node)))
  );
}

/** Not on a node in maintenance (the drain moves it), and no failed or cancelled move of it lately. */
function movable(placement: Placement, view: ClusterView): boolean {
  if (view.maintenance.has(placement.node)) return false;
  return !placement.moveEndedAt || view.now - Date.parse(placement.moveEndedAt) >= REBALANCE_HOLD_MS;
}

/**
 * A user's move to `to` that rebalancing would undo at once: the scheduler, with the guest running on `to`,
 * plans to move it again. Returns the refusal, or undefined when the guest would stay.
 */
export function undoneByRebalancing(
  vm: string,
  to: string,
  view: ClusterView,
  placements: ReadonlyMap<string, Placement>,
): string | undefined {
  if (!constrained(view.rules, vm) || !runningNode(vm, view, placements)) return undefined;
  const state = schedState(view, placements);
  const vms = new Map(state.vms).set(vm, { node: to, running: true, failures: [] });
  const verdict = explain(schedConfig(view), { ...state, vms }, vm);
  const action = verdict.action;
  if (!action || (action.type !== "migrate" && action.type !== "move")) return undefined;
  return `its placement constraints would move it off ${to} again (${action.reason}); change the constraints or raise its stickiness ('haven vm set ${vm} --stickiness N')`;
}
