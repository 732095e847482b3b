// The controller's decisions as a pure function of the cluster state: place started VMs, restart crashed
// ones within their limit, give up with a reason, release placements of stopped VMs, recover the guests of
// failed nodes, and run migrations (see migration-plan.ts).
import {
  planMigrationRequest,
  planMigrationUnderWay,
  planDrain,
  type MigrationDecision,
} from "./migration-plan.js";
import type {
  Incoming,
  MigrationDefaults,
  MigrationRequest,
  NodeInfo,
  Placement,
  VmSpec,
  VmStatus,
} from "./model.js";
import { candidateLoads } from "./placement.js";
import {
  chooseNodeByRules,
  clusterPlan,
  constrained,
  plannedStarts,
  runningNode,
  type PlacementRules,
} from "./placement-rules.js";
import { planRebalance } from "./rebalance.js";
import { withoutOrderCycles } from "./scheduler/prepare.js";
import { tieBreakWords } from "./scheduler/tie-breaks.js";
import { DEFAULT_PLACEMENT_STRATEGY } from "./scheduler/types.js";

export interface ClusterView {
  /** The controller's clock (ms since the epoch), for failure timeouts. */
  now: number;
  nodes: NodeInfo[];
  specs: ReadonlyMap<string, VmSpec>;
  placements: ReadonlyMap<string, Placement>;
  statuses: ReadonlyMap<string, VmStatus>;
  requests: ReadonlyMap<string, MigrationRequest>;
  incomings: ReadonlyMap<string, Incoming>;
  /** Nodes in maintenance: they take no guests, and theirs are moved away. */
  maintenance: ReadonlySet<string>;
  /** Nodes that shut down with the freeze policy: their guests wait for them. */
  frozen: ReadonlySet<string>;
  migrationDefaults: MigrationDefaults;
  /** Placement constraints (imported from Pacemaker) and node attributes set for them. */
  rules: PlacementRules;
}

export type ControllerAction =
  /** Write a new placement; `expectedGeneration` 0 means "no placement may exist". */
  | {
      type: "place";
      /** Which decision this is, as its event type says. */
      decision: "placed" | "restarting" | "relocating" | "error" | "failures-expired" | MigrationDecision;
      vm: string;
      placement: Omit<Placement, "updatedAt">;
      expectedGeneration: number;
      event: string;
      /** The migration request this decision answers; removed once the placement is written. */
      request?: string;
    }
  /** A migration request that cannot be honoured: removed, with the reason as an event. */
  | { type: "refuse-request"; vm: string; request: string; reason: string }
  | { type: "release"; vm: string; expectedGeneration: number; reason: string }
  /** Fence the guest's disks (every client of its failed node), then move the placement to a new node. */
  | {
      type: "recover";
      vm: string;
      from: string;
      images: string[];
      placement: Omit<Placement, "updatedAt">;
      expectedGeneration: number;
      event: string;
    }
  /** Cannot run now; `waiting`: only until another guest runs (a start order). */
  | { type: "unplaceable"; vm: string; reason: string; waiting?: boolean };

export function planController(view: ClusterView): ControllerAction[] {
  const actions: ControllerAction[] = [];
  const online = new Set(view.nodes.map((node) => node.name));
  // Placements decided in this round count against capacity for the next VM.
  const placements = new Map(view.placements);
  // One scheduler run for the round: where guests that need a node go, or else what rebalancing would move
  // (a round that places guests does not rebalance).
  const plan = clusterPlan(view, view.placements, { placing: needsNode(view, online) });
  const planned = plannedStarts(plan);
  // Higher priority first: when capacity runs short after a node failure, the important guests get it.
  const specs = [...view.specs.values()].sort(
    (a, b) => b.priority - a.priority || a.name.localeCompare(b.name),
  );
  for (const spec of specs) {
    const placement = placements.get(spec.name);
    const status = view.statuses.get(spec.name);
    const action =
      placement && !online.has(placement.node)
        ? planFailedNode(spec, placement, view, placements, planned.get(spec.name))
        : placement?.migration
          ? planMigrationUnderWay(spec, placement, status, view)
          : (planVm(spec, placement, status, view, placements, planned.get(spec.name)) ??
            planMigrationRequest(spec, placement, status, view, placements) ??
            planDrain(spec, placement, status, view, placements));
    if (!action) continue;
    actions.push(action);
    if (action.type === "place" || action.type === "recover") {
      placements.set(spec.name, { ...action.placement, updatedAt: "" });
    }
  }
  // Rebalancing moves guests only in a round in which nothing else changes.
  const round = {
    decided: new Set(actions.map((action) => action.vm)),
    changing: actions.some((action) => action.type !== "unplaceable"),
  };
  return [...actions, ...planRebalance(view, placements, plan, round)];
}

/** Whether some guest to run has no node: never placed, or placed on a node that is down. */
function needsNode(view: ClusterView, online: ReadonlySet<string>): boolean {
  return [...view.specs.values()].some((spec) => {
    const placement = view.placements.get(spec.name);
    return spec.state === "started" && (!placement || !online.has(placement.node));
  });
}

/**
 * Order constraints naming the VM as `then`: a mandatory one holds its start until `first` runs; an optional
 * one only while `first` is being started too. A guest that already runs is left alone.
 */
function waitingForOrder(
  vm: string,
  view: ClusterView,
  placements: ReadonlyMap<string, Placement>,
): string | undefined {
  const orders = view.rules.constraints.filter((c) => c.type === "order");
  if (!orders.some((order) => order.then === vm)) return undefined;
  // Orders on a cycle can never hold; the scheduler ignores them, and so does the start.
  for (const order of withoutOrderCycles(orders)) {
    if (order.then !== vm || runningNode(order.first, view, placements)) continue;
    const first = view.specs.get(order.first);
    const starting = first?.state === "started" && placements.get(order.first)?.state === "active";
    if (order.kind === "optional" && !starting) continue;
    const now = !first
      ? "unknown"
      : first.state === "stopped"
        ? "stopped"
        : starting
          ? "starting"
          : "not running";
    return `waits for ${order.first} to run first (order ${order.id}; ${order.first} is ${now})`;
  }
  return undefined;
}

function planVm(
  spec: VmSpec,
  placement: Placement | undefined,
  status: VmStatus | undefined,
  view: ClusterView,
  placements: ReadonlyMap<string, Placement>,
  /** Where the scheduler's plan for the round starts it. */
  planned: string | undefined,
): ControllerAction | undefined {
  const statusOfPlacement =
    placement && status && status.node === placement.node && status.generation === placement.generation
      ? status
      : undefined;

  if (spec.state === "stopped") {
    if (!placement) return undefined;
    const guestGone =
      placement.state === "error" ||
      (statusOfPlacement !== undefined &&
        ["stopped", "crashed", "failed", "fenced"].includes(statusOfPlacement.state));
    return guestGone
      ? {
          type: "release",
          vm: spec.name,
          expectedGeneration: placement.generation,
          reason: "stopped by user",
        }
      : undefined;
  }

  if (!placement) {
    const waiting = waitingForOrder(spec.name, view, placements);
    if (waiting) return { type: "unplaceable", vm: spec.name, reason: waiting, waiting: true };
    const choice = chooseNodeByRules(spec, candidateLoads(view, placements), view, placements, planned);
    if (choice.node === null) return { type: "unplaceable", vm: spec.name, reason: choice.reason };
    const ties = tieBreakWords(view.rules.placementStrategy ?? DEFAULT_PLACEMENT_STRATEGY);
    return {
      type: "place",
      decision: "placed",
      vm: spec.name,
      // Generations only grow, so a status left from an earlier run never matches the new placement.
      placement: {
        node: choice.node,
        generation: (status?.generation ?? 0) + 1,
        restarts: 0,
        relocations: 0,
        state: "active",
        reason: "started by user",
      },
      expectedGeneration: 0,
      event: constrained(view.rules, spec.name)
        ? `placed on ${choice.node}: highest placement-constraint score, then ${ties}`
        : `placed on ${choice.node}: ${ties} among online nodes`,
    };
  }

  if (placement.state !== "active" || !statusOfPlacement) return undefined;
  if (statusOfPlacement.state === "fenced") return restartAfterSelfFence(spec, placement);
  if (["crashed", "failed"].includes(statusOfPlacement.state)) {
    return restartRelocateOrGiveUp(spec, placement, statusOfPlacement, view, placements);
  }
  if (statusOfPlacement.state === "running") return forgetOldFailures(spec, placement, view.now);
  return undefined;
}

/** A guest that has run for the failure timeout since its last restart decision starts with a clean record. */
function forgetOldFailures(spec: VmSpec, placement: Placement, now: number): ControllerAction | undefined {
  if (spec.failureTimeoutSeconds === 0 || (placement.restarts === 0 && placement.relocations === 0)) {
    return undefined;
  }
  const quietMs = now - Date.parse(placement.updatedAt);
  if (!(quietMs >= spec.failureTimeoutSeconds * 1000)) return undefined;
  const record = `${placement.restarts} restarts and ${placement.relocations} relocations`;
  return {
    type: "place",
    decision: "failures-expired",
    vm: spec.name,
    // Same generation: the running guest is left alone, only its record changes.
    placement: {
      ...placement,
      restarts: 0,
      relocations: 0,
      failedNodes: undefined,
      reason: `failures expired (${record})`,
    },
    expectedGeneration: placement.generation,
    event: `forgot ${record}: running for ${spec.failureTimeoutSeconds} s since the last one (failure timeout)`,
  };
}

/** Its node killed it for want of a lease and holds one again: start it there anew, without counting a crash. */
function restartAfterSelfFence(spec: VmSpec, placement: Placement): ControllerAction {
  return {
    type: "place",
    decision: "restarting",
    vm: spec.name,
    placement: { ...placement, generation: placement.generation + 1, reason: "restart after self-fencing" },
    expectedGeneration: placement.generation,
    event: `restarting on ${placement.node}: its node self-fenced it and has a valid lease again (not counted as a crash)`,
  };
}

/**
 * A placement on a node whose lease expired. Its guest may still run (a frozen or cut-off node), so nothing is
 * started elsewhere before its disks are fenced; the controller does that as part of "recover".
 */
function planFailedNode(
  spec: VmSpec,
  placement: Placement,
  view: ClusterView,
  placements: ReadonlyMap<string, Placement>,
  planned: string | undefined,
): ControllerAction | undefined {
  if (placement.state !== "active" || spec.state !== "started") return undefined;
  if (view.frozen.has(placement.node)) {
    // The node stopped its guests itself before it went: nothing to fence, and they start there again.
    return {
      type: "unplaceable",
      vm: spec.name,
      reason: `node ${placement.node} shut down with the freeze policy; the guest waits for it`,
      waiting: true,
    };
  }
  if (!spec.ha) {
    return {
      type: "unplaceable",
      vm: spec.name,
      reason: `node ${placement.node} failed; HA is off for this VM`,
    };
  }
  // Its source died mid-migration, but the target already runs the guest: the handover is complete.
  const arrived = placement.migration && view.incomings.get(spec.name);
  if (placement.migration && arrived?.id === placement.migration.id && arrived.state === "running") {
    return planMigrationUnderWay(spec, placement, undefined, view);
  }
  const waiting = waitingForOrder(spec.name, view, placements);
  if (waiting) {
    return {
      type: "unplaceable",
      vm: spec.name,
      reason: `node ${placement.node} failed; ${waiting}`,
      waiting: true,
    };
  }
  const choice = chooseNodeByRules(spec, candidateLoads(view, placements), view, placements, planned);
  if (choice.node === null) {
    return { type: "unplaceable", vm: spec.name, reason: `node ${placement.node} failed; ${choice.reason}` };
  }
  return {
    type: "recover",
    vm: spec.name,
    from: placement.node,
    images: spec.disks.map((disk) => disk.image),
    placement: {
      ...placement,
      node: choice.node,
      // Above the generation of a migration target's QEMU too, which its agent then kills as superseded.
      generation: Math.max(placement.generation, placement.migration?.generation ?? 0) + 1,
      migration: undefined,
      reason: `recovered from failed node ${placement.node}`,
    },
    expectedGeneration: placement.generation,
    event: `node ${placement.node} failed: fenced its disks, recovering on ${choice.node}`,
  };
}

/**
 * A guest that crashed (or failed to start) on a live node: restart it in place up to its restart limit, then
 * move it to another node up to its relocation limit (Proxmox's max_restart / max_relocate, Pacemaker's
 * migration-threshold), then give up with the reason. A relocation goes to a node the guest has not failed on
 * within its failure timeout (Proxmox's failed_nodes): a failure specific to some nodes must not bounce it
 * between them while a healthy node is never tried. Its node is alive and reported the QEMU gone, so a
 * relocation needs no fencing.
 */
function restartRelocateOrGiveUp(
  spec: VmSpec,
  placement: Placement,
  status: VmStatus,
  view: ClusterView,
  placements: ReadonlyMap<string, Placement>,
): ControllerAction {
  const why = status.message ?? `guest ${status.state}`;
  const next = { ...placement, generation: placement.generation + 1 };
  if (placement.restarts < spec.restartLimit) {
    const restarts = placement.restarts + 1;
    return {
      type: "place",
      decision: "restarting",
      vm: spec.name,
      placement: { ...next, restarts, reason: `restart ${restarts} of ${spec.restartLimit} after: ${why}` },
      expectedGeneration: placement.generation,
      event: `restarting on ${placement.node} (${restarts}/${spec.restartLimit}): ${why}`,
    };
  }
  const failedNodes = [
    ...recentFailures(spec, placement, view.now).filter((f) => f.node !== placement.node),
    { node: placement.node, at: new Date(view.now).toISOString() },
  ];
  const failedOn = new Set(failedNodes.map((f) => f.node));
  const others = candidateLoads(view, placements).filter((load) => load.node.name !== placement.node);
  const untried = others.filter((load) => !failedOn.has(load.node.name));
  const mayRelocate = placement.relocations < spec.relocateLimit;
  const allTried = mayRelocate && others.length > 0 && untried.length === 0;
  const choice = mayRelocate && !allTried ? chooseNodeByRules(spec, untried, view, placements) : undefined;
  if (choice?.node) {
    const relocations = placement.relocations + 1;
    return {
      type: "place",
      decision: "relocating",
      vm: spec.name,
      placement: {
        ...next,
        node: choice.node,
        restarts: 0,
        relocations,
        failedNodes,
        reason: `relocation ${relocations} of ${spec.relocateLimit} after ${placement.restarts} restarts on ${placement.node}`,
      },
      expectedGeneration: placement.generation,
      event: `relocating from ${placement.node} to ${choice.node} (${relocations}/${spec.relocateLimit}) after ${placement.restarts} restarts; last: ${why}`,
    };
  }
  const limits = `${placement.restarts} restarts (limit ${spec.restartLimit}) and ${placement.relocations} relocations (limit ${spec.relocateLimit})`;
  const tried = [...failedOn].filter((node) => node !== placement.node);
  const noTarget =
    choice && choice.node === null
      ? `; no other node to relocate to: ${choice.reason}`
      : allTried
        ? `; it failed on every other node too (${tried.join(", ")}) within its failure timeout`
        : "";
  return {
    type: "place",
    decision: "error",
    vm: spec.name,
    placement: {
      ...placement,
      state: "error",
      failedNodes,
      reason: `gave up after ${limits}${noTarget}; last: ${why}`,
    },
    expectedGeneration: placement.generation,
    event: `error: gave up after ${limits}${noTarget}; last: ${why}`,
  };
}

/** The nodes the guest failed on within its failure timeout (0: all of them, never forgotten). */
function recentFailures(
  spec: VmSpec,
  placement: Placement,
  now: number,
): NonNullable<Placement["failedNodes"]> {
  const timeoutMs = spec.failureTimeoutSeconds * 1000;
  return (placement.failedNodes ?? []).filter((f) => timeoutMs === 0 || now - Date.parse(f.at) < timeoutMs);
}
