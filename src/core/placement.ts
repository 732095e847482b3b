// Simple placement: the online node with the most free memory that fits the VM. The scheduler with
// constraints and scores replaces this later; its contract (pure, deterministic, explains refusals) stays.
import type { NodeInfo, Placement, VmSpec } from "./model.js";

export interface NodeLoad {
  node: NodeInfo;
  usedVcpus: number;
  usedMemoryMb: number;
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
  const loads = new Map(nodes.map((node) => [node.name, { node, usedVcpus: 0, usedMemoryMb: 0 }]));
  for (const [vm, placement] of placements) {
    const spec = specs.get(vm);
    if (!spec || placement.state !== "active") continue;
    for (const node of [placement.node, placement.migration?.to]) {
      const load = node === undefined ? undefined : loads.get(node);
      if (!load) continue;
      load.usedVcpus += spec.vcpus;
      load.usedMemoryMb += spec.memoryMb;
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

export function chooseNode(spec: VmSpec, loads: NodeLoad[]): PlacementChoice {
  if (loads.length === 0) return { node: null, reason: "no node is online" };
  const withStorage = loads.filter((load) => load.node.storage.ok);
  if (withStorage.length === 0) return { node: null, reason: "no online node reaches the storage" };
  const fitting = withStorage.filter(
    (load) =>
      load.node.capacity.memoryMb - load.usedMemoryMb >= spec.memoryMb &&
      load.node.capacity.vcpus - load.usedVcpus >= spec.vcpus,
  );
  if (fitting.length === 0) {
    return {
      node: null,
      reason: `no online node has ${spec.memoryMb} MB memory and ${spec.vcpus} vCPUs free`,
    };
  }
  fitting.sort(
    (a, b) =>
      b.node.capacity.memoryMb - b.usedMemoryMb - (a.node.capacity.memoryMb - a.usedMemoryMb) ||
      a.node.name.localeCompare(b.node.name),
  );
  return { node: fitting[0]!.node.name };
}
