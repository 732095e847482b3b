// Placement: among the online nodes that reach the storage and have room, the highest constraint score
// (placement-rules.ts), then the placement strategy's tie-breaks (balanced, the default: the node with more
// room left). Pure and deterministic; it explains refusals.
import type { NodeInfo, Placement, VmSpec } from "./model.js";
import { formatRoles, hasRole, rolesOf } from "./roles.js";
import { breakTie, roomVote } from "./scheduler/tie-breaks.js";
import { DEFAULT_PLACEMENT_STRATEGY, type PlacementStrategy } from "./scheduler/types.js";

export interface NodeLoad {
  node: NodeInfo;
  usedVcpus: number;
  usedMemoryMb: number;
  /** Guests placed on the node (a guest being moved counts on both nodes). */
  guests: number;
}

export type PlacementChoice = { node: string } | { node: null; reason: string };

/**
 * What each online node already carries, counting every active placement of a started VM; a VM being moved
 * counts on both nodes until the move is over.
 */
export function nodeLoads(
  nodes: NodeInfo[],
  specs: ReadonlyMap<string, VmSpec>,
  placements: ReadonlyMap<string, Placement>,
): NodeLoad[] {
  const loads = new Map(nodes.map((node) => [node.name, { node, usedVcpus: 0, usedMemoryMb: 0, guests: 0 }]));
  for (const [vm, placement] of placements) {
    const spec = specs.get(vm);
    if (!spec || placement.state !== "active") continue;
    for (const node of [placement.node, placement.migration?.to]) {
      const load = node === undefined ? undefined : loads.get(node);
      if (!load) continue;
      load.usedVcpus += spec.vcpus;
      load.usedMemoryMb += spec.memoryMb;
      load.guests++;
    }
  }
  return [...loads.values()];
}

/** Nodes that may take a guest (online, not in maintenance), with what they carry. */
export function candidateLoads(
  view: { nodes: NodeInfo[]; specs: ReadonlyMap<string, VmSpec>; maintenance: ReadonlySet<string> },
  placements: ReadonlyMap<string, Placement>,
): NodeLoad[] {
  return nodeLoads(view.nodes, view.specs, placements).filter(
    (load) => !view.maintenance.has(load.node.name),
  );
}

/**
 * The node for a VM: among nodes that reach the storage and have room (whatever the strategy: Haven never
 * starts a guest where its memory does not fit), the highest constraint score (`scores`, when constraints
 * name the VM; a negative score bans a node), then the strategy's tie-breaks.
 */
export function chooseNode(
  spec: VmSpec,
  loads: NodeLoad[],
  scores?: ReadonlyMap<string, { score: number }>,
  strategy: PlacementStrategy = DEFAULT_PLACEMENT_STRATEGY,
): PlacementChoice {
  if (loads.length === 0) return { node: null, reason: "no node is online" };
  const withStorage = loads.filter((load) => unfitReason(load.node, spec) === undefined);
  if (withStorage.length === 0)
    return { node: null, reason: `no online node can run it: ${unfitSummary(loads, spec)}` };
  const scoreOf = (load: NodeLoad) => scores?.get(load.node.name)?.score ?? 0;
  const allowed = withStorage.filter((load) => scoreOf(load) >= 0);
  if (allowed.length === 0)
    return { node: null, reason: "placement constraints ban every online node that reaches the storage" };
  const fitting = allowed.filter((load) => hasRoom(spec, load));
  if (fitting.length === 0) {
    const which = allowed.length < withStorage.length ? "allowed " : "";
    return {
      node: null,
      reason: `no ${which}online node has ${spec.memoryMb} MB memory and ${spec.vcpus} vCPUs free`,
    };
  }
  const freeVcpus = (load: NodeLoad) => load.node.capacity.vcpus - load.usedVcpus;
  const freeMemory = (load: NodeLoad) => load.node.capacity.memoryMb - load.usedMemoryMb;
  fitting.sort(
    (a, b) =>
      scoreOf(b) - scoreOf(a) ||
      breakTie(strategy, {
        vote: roomVote(freeVcpus(a), freeVcpus(b), freeMemory(a), freeMemory(b)),
        guestsA: a.guests,
        guestsB: b.guests,
        current: 0,
        names: a.node.name < b.node.name ? -1 : a.node.name > b.node.name ? 1 : 0,
      }),
  );
  return { node: fitting[0]!.node.name };
}

/**
 * Why `node` cannot run the guest whatever its load: it is not a compute node, does not reach the storage,
 * or lacks a bridge the guest's network cards plug into. Undefined when it can.
 */
export function unfitReason(node: NodeInfo, spec: VmSpec): string | undefined {
  if (!hasRole(node, "compute")) return `is not a compute node (roles ${formatRoles(rolesOf(node))})`;
  if (!node.storage.ok) return `does not reach the storage: ${node.storage.summary}`;
  const missing = [...new Set((spec.nics ?? []).map((nic) => nic.bridge))].filter(
    (bridge) => !(node.bridges ?? []).includes(bridge),
  );
  if (missing.length > 0) return `has no bridge ${missing.join(", ")}`;
  return undefined;
}

function unfitSummary(loads: NodeLoad[], spec: VmSpec): string {
  return loads.map((load) => `${load.node.name} ${unfitReason(load.node, spec)}`).join("; ");
}

export function hasRoom(spec: VmSpec, load: NodeLoad): boolean {
  return (
    load.node.capacity.memoryMb - load.usedMemoryMb >= spec.memoryMb &&
    load.node.capacity.vcpus - load.usedVcpus >= spec.vcpus
  );
}
