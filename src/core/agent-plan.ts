// The node agent's decisions as a pure function: which guests to start, stop or report, given what the
// cluster wants on this node and which QEMUs are really alive here.
import type { Incoming, Migration, Placement, VmSpec } from "./model.js";

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
  /** Target agents' reports on incoming live migrations. */
  incomings: ReadonlyMap<string, Incoming>;
  /** Ids of the outgoing migrations this agent has already started. */
  outgoing: ReadonlySet<string>;
  /** Ids of incoming migrations whose QEMU failed here. */
  failedIncoming: ReadonlySet<string>;
}

export const SELF_FENCE_REASON = "self-fencing: the node lease was not renewed in time";

export type AgentAction =
  | { type: "start"; vm: string; generation: number }
  /** Start QEMU waiting for the guest of a live migration to this node. */
  | { type: "incoming"; vm: string; migration: Migration }
  /** Send the running guest to the target, which is listening on `uri`. */
  | { type: "migrate"; vm: string; migration: Migration; uri: string }
  | { type: "stop"; vm: string; reason: string }
  | { type: "kill"; vm: string; reason: string };

export function planAgent(view: AgentView): AgentAction[] {
  if (!view.leaseValid) {
    return [...view.running.keys()].map((vm) => ({ type: "kill", vm, reason: SELF_FENCE_REASON }));
  }
  const actions: AgentAction[] = [];
  for (const [vm, guest] of view.running) {
    const wanted = wantedGeneration(view, vm) ?? incomingMigration(view, vm)?.generation;
    const placement = view.placements.get(vm);
    // Placed elsewhere since: migrated, moved or recovered there. A QEMU paused after sending its guest away
    // quits at once; quitting (not SIGKILL) closes its disks, which hands RBD's exclusive lock to the target.
    if (
      wanted === undefined &&
      placement &&
      placement.node !== view.node &&
      placement.generation > guest.generation
    )
      actions.push({ type: "stop", vm, reason: `superseded: the guest is now on ${placement.node}` });
    else if (wanted === undefined) actions.push({ type: "stop", vm, reason: stopReason(view, vm) });
    // A newer generation means the controller decided on a fresh start; the old QEMU must go first.
    else if (wanted > guest.generation)
      actions.push({ type: "kill", vm, reason: "superseded by a newer start" });
  }
  for (const [vm, placement] of view.placements) {
    const wanted = wantedGeneration(view, vm);
    const outcome = view.outcomes.get(vm);
    if (wanted !== undefined && !view.running.has(vm)) {
      // Never restart on our own: a crashed generation waits for the controller's decision.
      if (!outcome || outcome.generation < placement.generation)
        actions.push({ type: "start", vm, generation: wanted });
      continue;
    }
    const incoming = incomingMigration(view, vm);
    if (incoming && !view.running.has(vm) && !view.failedIncoming.has(incoming.id))
      actions.push({ type: "incoming", vm, migration: incoming });
    const send = outgoingMigration(view, vm);
    if (send) actions.push({ type: "migrate", vm, ...send });
  }
  return actions;
}

/** A live migration of `vm` to this node that still wants a QEMU here. */
function incomingMigration(view: AgentView, vm: string): Migration | undefined {
  const migration = view.placements.get(vm)?.migration;
  const spec = view.specs.get(vm);
  if (!migration || !spec || spec.state !== "started") return undefined;
  return migration.to === view.node && migration.kind === "live" && !migration.cancel ? migration : undefined;
}

/** A live migration from this node whose target is listening, not started yet. */
function outgoingMigration(view: AgentView, vm: string): { migration: Migration; uri: string } | undefined {
  const placement = view.placements.get(vm);
  const migration = placement?.migration;
  const guest = view.running.get(vm);
  if (!placement || !migration || migration.kind !== "live" || migration.cancel) return undefined;
  if (placement.node !== view.node || guest?.generation !== placement.generation) return undefined;
  if (view.outgoing.has(migration.id)) return undefined;
  const incoming = view.incomings.get(vm);
  if (incoming?.id !== migration.id || incoming.state !== "listening" || !incoming.uri) return undefined;
  return { migration, uri: incoming.uri };
}

function wantedGeneration(view: AgentView, vm: string): number | undefined {
  const placement = view.placements.get(vm);
  const spec = view.specs.get(vm);
  if (!placement || !spec || placement.node !== view.node) return undefined;
  if (placement.state !== "active" || spec.state !== "started") return undefined;
  // A cold move: the guest stops here first, then starts on the target.
  if (placement.migration?.kind === "cold") return undefined;
  return placement.generation;
}

function stopReason(view: AgentView, vm: string): string {
  const placement = view.placements.get(vm);
  const spec = view.specs.get(vm);
  if (!spec) return "VM was deleted";
  if (spec.state === "stopped") return "stopped by user";
  if (!placement) return "no longer placed";
  if (placement.node !== view.node) return `placed on ${placement.node}`;
  if (placement.migration?.kind === "cold") return `moving to ${placement.migration.to}`;
  return `placement is in state ${placement.state}`;
}
