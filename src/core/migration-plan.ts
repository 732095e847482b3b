// Migrations as controller decisions (pure). A request (from a user or a drain) becomes a `migration` in the
// VM's placement; the target's agent then starts QEMU waiting for the guest (live) or the source's agent
// stops it (cold). The placement flips to the target in one compare-and-swap only once the target has the
// guest (live: its QEMU runs it; cold: the source reports it stopped). Any failure ends the migration and
// leaves the guest where it was.
import type { ClusterView, ControllerAction } from "./controller-plan.js";
import {
  migrationSettingsOf,
  type Migration,
  type MigrationSettings,
  type Placement,
  type VmSpec,
  type VmStatus,
} from "./model.js";
import { candidateLoads, nodeLoads } from "./placement.js";
import { chooseNodeByRules } from "./placement-rules.js";
import { undoneByRebalancing } from "./rebalance.js";

export type MigrationDecision =
  | "migrating"
  | "moving"
  | "migrated"
  | "moved"
  | "migration-failed"
  | "migration-cancelled"
  | "migration-cancelling";

/** Beyond its own timeout, how long the controller waits for a migration's outcome before ending it. */
const OUTCOME_GRACE_MS = 60_000;

/** A pending request for a VM with no migration under way: begin it, or refuse with the reason. */
export function planMigrationRequest(
  spec: VmSpec,
  placement: Placement | undefined,
  status: VmStatus | undefined,
  view: ClusterView,
  placements: ReadonlyMap<string, Placement>,
): ControllerAction | undefined {
  const request = view.requests.get(spec.name);
  if (!request) return undefined;
  const refuse = (reason: string): ControllerAction => ({
    type: "refuse-request",
    vm: spec.name,
    request: request.id,
    reason,
  });
  if (request.cancel) return refuse(`no migration of VM ${spec.name} is under way`);
  const notMovable = whyNotMovable(spec, placement, status);
  if (notMovable || !placement) return refuse(notMovable ?? "not placed");
  const begun = begin(spec, placement, view, placements, {
    id: request.id,
    to: request.to,
    settings: request.settings,
    reason: request.reason,
  });
  if (typeof begun === "string") return refuse(begun);
  const undone = undoneByRebalancing(spec.name, begun.placement.migration!.to, view, placements);
  return undone ? refuse(undone) : { ...begun, request: request.id };
}

/** A running guest on a node in maintenance is moved away, within the cluster's concurrency limits. */
export function planDrain(
  spec: VmSpec,
  placement: Placement | undefined,
  status: VmStatus | undefined,
  view: ClusterView,
  placements: ReadonlyMap<string, Placement>,
): ControllerAction | undefined {
  if (!placement || !view.maintenance.has(placement.node)) return undefined;
  if (whyNotMovable(spec, placement, status)) return undefined;
  if (!roomForMigration(placement.node, view, placements)) return undefined;
  const begun = begin(spec, placement, view, placements, {
    // Unique per attempt (see rebalance.ts).
    id: `drain-${spec.name}-${placement.generation + 1}-${view.now}`,
    settings: migrationSettingsOf(view.migrationDefaults),
    reason: `node ${placement.node} is in maintenance`,
  });
  if (typeof begun !== "string") return begun;
  return {
    type: "unplaceable",
    vm: spec.name,
    reason: `cannot move it off ${placement.node} (maintenance): ${begun}`,
  };
}

/** Whether another migration from `node` stays within the cluster's limits per node and per cluster. */
export function roomForMigration(
  node: string,
  view: ClusterView,
  placements: ReadonlyMap<string, Placement>,
): boolean {
  const { maxPerNode, maxPerCluster } = view.migrationDefaults;
  const underWay = [...placements.values()].filter((p) => p.migration);
  const onNode = underWay.filter((p) => p.migration!.from === node || p.migration!.to === node);
  return underWay.length < maxPerCluster && onNode.length < maxPerNode;
}

/** A migration in the placement: flip it when the target has the guest, end it when anything failed. */
export function planMigrationUnderWay(
  spec: VmSpec,
  placement: Placement,
  status: VmStatus | undefined,
  view: ClusterView,
): ControllerAction | undefined {
  const migration = placement.migration!;
  const incoming = view.incomings.get(spec.name);
  const arrived = incoming?.id === migration.id ? incoming : undefined;
  const source =
    status?.node === migration.from && status.generation === placement.generation ? status : undefined;
  const outgoing = source?.outgoing?.id === migration.id ? source.outgoing : undefined;
  // Whatever ends a migration the user cancelled, it ends as cancelled.
  const end = (decision: MigrationDecision, why: string) =>
    endMigration(
      spec,
      placement,
      migration.cancel ? "migration-cancelled" : decision,
      `${why}; the guest stays on ${migration.from}`,
      view.now,
    );

  // Either side's word that the handover happened is enough: from then on the guest belongs to the target.
  if (migration.kind === "live" && (arrived?.state === "running" || outgoing?.state === "completed"))
    return flip(spec, placement, view.now, "migrated", outgoing?.downtimeMs);
  // Cold: the guest no longer runs on the source, whether it was stopped for the move or ended otherwise (a
  // self-fenced one too: the source killed it, and its guest starts on the target instead of waiting there).
  if (
    migration.kind === "cold" &&
    source &&
    ["stopped", "crashed", "failed", "fenced"].includes(source.state)
  )
    return flip(spec, placement, view.now, "moved");
  if (!view.nodes.some((node) => node.name === migration.to))
    return end("migration-failed", `target node ${migration.to} is gone`);
  if (migration.kind === "live") {
    if (arrived?.state === "failed")
      return end("migration-failed", `target ${migration.to}: ${arrived.message ?? "failed"}`);
    if (outgoing?.state === "failed") {
      const decision = migration.cancel ? "migration-cancelled" : "migration-failed";
      return end(decision, outgoing.message ?? "QEMU reported the migration failed");
    }
    if (source && source.state !== "running")
      return end("migration-failed", `the guest is ${source.state} on the source`);
    // Cancelled before the source began sending: nobody else would end it (the source then never starts).
    if (migration.cancel && !outgoing)
      return end("migration-cancelled", "cancelled before the guest was sent");
  }
  if (
    view.now - Date.parse(migration.startedAt) >
    migration.settings.timeoutSeconds * 1000 + OUTCOME_GRACE_MS
  )
    return end("migration-failed", `no outcome ${migration.settings.timeoutSeconds} s after it began`);
  return answerRequestDuring(spec, placement, view);
}

/** A request while a migration is under way: a cancel of this migration, or a refusal. */
function answerRequestDuring(
  spec: VmSpec,
  placement: Placement,
  view: ClusterView,
): ControllerAction | undefined {
  const migration = placement.migration!;
  const request = view.requests.get(spec.name);
  if (!request || (request.id === migration.id && !request.cancel)) return undefined;
  if (!request.cancel || request.id !== migration.id)
    return {
      type: "refuse-request",
      vm: spec.name,
      request: request.id,
      reason: `a migration of VM ${spec.name} is under way`,
    };
  if (migration.kind === "cold")
    return {
      ...endMigration(spec, placement, "migration-cancelled", "cancelled by user", view.now),
      request: request.id,
    };
  if (migration.cancel)
    return { type: "refuse-request", vm: spec.name, request: request.id, reason: "already cancelling" };
  return {
    type: "place",
    decision: "migration-cancelling",
    vm: spec.name,
    placement: { ...placement, migration: { ...migration, cancel: true } },
    expectedGeneration: placement.generation,
    event: `cancelling the migration to ${migration.to} at the user's request`,
    request: request.id,
  };
}

export function whyNotMovable(
  spec: VmSpec,
  placement: Placement | undefined,
  status: VmStatus | undefined,
): string | undefined {
  if (spec.state !== "started" || !placement) return `VM ${spec.name} is not started`;
  if (placement.state !== "active") return `VM ${spec.name} is in error: ${placement.reason}`;
  const current =
    status?.node === placement.node && status.generation === placement.generation ? status : undefined;
  if (current?.state !== "running")
    return `VM ${spec.name} is not running (it is ${current?.state ?? "starting"})`;
  return undefined;
}

/** Picks (or checks) the target and writes the migration into the placement; a string is a refusal. */
export function begin(
  spec: VmSpec,
  placement: Placement,
  view: ClusterView,
  placements: ReadonlyMap<string, Placement>,
  how: { id: string; to?: string; settings: MigrationSettings; reason: string },
): Extract<ControllerAction, { type: "place" }> | string {
  const to = how.to
    ? checkTarget(spec, placement, view, placements, how.to)
    : pickTarget(spec, placement, view, placements);
  if (to.node === null) return to.reason;
  const kind = spec.allowMigrate ? "live" : "cold";
  const migration: Migration = {
    id: how.id,
    kind,
    from: placement.node,
    to: to.node,
    generation: placement.generation + 1,
    settings: how.settings,
    cancel: false,
    reason: how.reason,
    startedAt: new Date(view.now).toISOString(),
  };
  const how_ =
    kind === "live"
      ? `live over ${how.settings.transport.toUpperCase()}`
      : "cold (stop, move, start: migration not allowed)";
  return {
    type: "place",
    decision: kind === "live" ? "migrating" : "moving",
    vm: spec.name,
    placement: { ...placement, migration },
    expectedGeneration: placement.generation,
    event: `${kind === "live" ? "migrating" : "moving"} from ${placement.node} to ${to.node}, ${how_}: ${how.reason}`,
  };
}

type Target = { node: string } | { node: null; reason: string };

function pickTarget(
  spec: VmSpec,
  placement: Placement,
  view: ClusterView,
  placements: ReadonlyMap<string, Placement>,
): Target {
  const others = candidateLoads(view, placements).filter((load) => load.node.name !== placement.node);
  const choice = chooseNodeByRules(spec, others, view, placements);
  return choice.node === null
    ? { node: null, reason: `no other node can take it: ${choice.reason}` }
    : choice;
}

function checkTarget(
  spec: VmSpec,
  placement: Placement,
  view: ClusterView,
  placements: ReadonlyMap<string, Placement>,
  to: string,
): Target {
  if (to === placement.node) return { node: null, reason: `VM ${spec.name} already runs on ${to}` };
  const load = nodeLoads(view.nodes, view.specs, placements).find((l) => l.node.name === to);
  if (!load) return { node: null, reason: `node ${to} is not online` };
  if (view.maintenance.has(to)) return { node: null, reason: `node ${to} is in maintenance` };
  const choice = chooseNodeByRules(spec, [load], view, placements);
  return choice.node === null
    ? { node: null, reason: `node ${to} cannot take it: ${choice.reason}` }
    : choice;
}

function flip(
  spec: VmSpec,
  placement: Placement,
  now: number,
  decision: "migrated" | "moved",
  downtimeMs?: number,
): Extract<ControllerAction, { type: "place" }> {
  const migration = placement.migration!;
  const took = `${((now - Date.parse(migration.startedAt)) / 1000).toFixed(1)} s`;
  const downtime = downtimeMs === undefined ? "" : `, downtime ${downtimeMs} ms`;
  return {
    type: "place",
    decision,
    vm: spec.name,
    placement: {
      ...placement,
      node: migration.to,
      generation: migration.generation,
      restarts: 0,
      migration: undefined,
      moveEndedAt: undefined,
      reason: `${decision} from ${migration.from}`,
    },
    expectedGeneration: placement.generation,
    event: `${decision} from ${migration.from} to ${migration.to} (${took}${downtime}): ${migration.reason}`,
  };
}

function endMigration(
  spec: VmSpec,
  placement: Placement,
  decision: MigrationDecision,
  why: string,
  now: number,
): Extract<ControllerAction, { type: "place" }> {
  return {
    type: "place",
    decision,
    vm: spec.name,
    placement: { ...placement, migration: undefined, moveEndedAt: new Date(now).toISOString() },
    expectedGeneration: placement.generation,
    event: `${decision === "migration-cancelled" ? "cancelled" : "failed"}: ${why}`,
  };
}
