// The node agent's decisions as a pure function: which guests to start, stop or report, given what the
// cluster wants on this node and which QEMUs are really alive here.
import type { Placement, VmSpec } from "./model.js";

export interface LocalGuest {
  vm: string;
  generation: number;
}

/** The last start of a VM on this node that ended on its own (crash, or QEMU failed to start). */
export interface LocalOutcome {
  generation: number;
  state: "crashed" | "failed" | "fenced";
}

export interface AgentView {
  node: string;
  specs: ReadonlyMap<string, VmSpec>;
  placements: ReadonlyMap<string, Placement>;
  running: ReadonlyMap<string, LocalGuest>;
  outcomes: ReadonlyMap<string, LocalOutcome>;
  /** False once the node lease may have expired (invariant 2): nothing may run here then. */
  leaseValid: boolean;
}

export const SELF_FENCE_REASON = "self-fencing: the node lease was not renewed in time";

export type AgentAction =
  | { type: "start"; vm: string; generation: number }
  | { type: "stop"; vm: string; reason: string }
  | { type: "kill"; vm: string; reason: string };

export function planAgent(view: AgentView): AgentAction[] {
  if (!view.leaseValid) {
    return [...view.running.keys()].map((vm) => ({ type: "kill", vm, reason: SELF_FENCE_REASON }));
  }
  const actions: AgentAction[] = [];
  for (const [vm, guest] of view.running) {
    const wanted = wantedGeneration(view, vm);
    if (wanted === undefined) actions.push({ type: "stop", vm, reason: stopReason(view, vm) });
    // A newer generation means the controller decided on a fresh start; the old QEMU must go first.
    else if (wanted > guest.generation)
      actions.push({ type: "kill", vm, reason: "superseded by a newer start" });
  }
  for (const [vm, placement] of view.placements) {
    const wanted = wantedGeneration(view, vm);
    if (wanted === undefined || view.running.has(vm)) continue;
    const outcome = view.outcomes.get(vm);
    // Never restart on our own: a crashed generation waits for the controller's decision.
    if (outcome && outcome.generation >= placement.generation) continue;
    actions.push({ type: "start", vm, generation: wanted });
  }
  return actions;
}

function wantedGeneration(view: AgentView, vm: string): number | undefined {
  const placement = view.placements.get(vm);
  const spec = view.specs.get(vm);
  if (!placement || !spec || placement.node !== view.node) return undefined;
  if (placement.state !== "active" || spec.state !== "started") return undefined;
  return placement.generation;
}

function stopReason(view: AgentView, vm: string): string {
  const placement = view.placements.get(vm);
  const spec = view.specs.get(vm);
  if (!spec) return "VM was deleted";
  if (spec.state === "stopped") return "stopped by user";
  if (!placement) return "no longer placed";
  if (placement.node !== view.node) return `placed on ${placement.node}`;
  return `placement is in state ${placement.state}`;
}
