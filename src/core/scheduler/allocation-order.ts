// The order in which guests are assigned, as Pacemaker orders resources: higher priority first, then the
// order of the configuration (Haven's: by name). Under the strategies that count capacity Pacemaker then
// sorts again, keeping priority first: guests whose node now scores highest (their own and their primaries'
// scores at full weight) go first, so running guests come before new ones, and after them the guests with
// the higher score on the first node where they differ (nodes taken in Pacemaker's order of preference).
// A guest's primaries are assigned when it is (allocate.ts), whatever their place here.
import { slices, type Allocation } from "./allocation-state.js";
import { mergedWithPrimaries } from "./colocation.js";
import { MINUS_INFINITY } from "./scores.js";
import { roomVote } from "./tie-breaks.js";

export function allocationOrder(allocation: Allocation): number[] {
  const { vms } = allocation.prepared;
  const byPriority = vms
    .map((_, index) => index)
    .sort((a, b) => vms[b]!.priority - vms[a]!.priority || a - b);
  if (allocation.strategy === "default") return byPriority;
  const keys = slices(vms.length, allocation.prepared.nodes.length);
  const merged = vms.map((_, index) => mergedWithPrimaries(allocation, index, keys[index]!));
  const here = merged.map((table, index) => {
    const current = allocation.current[index]!;
    return current >= 0 ? table[current]! : MINUS_INFINITY;
  });
  const nodes = nodeOrder(allocation);
  // Array.prototype.sort is stable: equal guests keep their order by priority and name.
  return byPriority.sort((a, b) => {
    const priority = vms[b]!.priority - vms[a]!.priority;
    if (priority !== 0) return priority;
    if (here[a] !== here[b]) return here[b]! - here[a]!;
    const [tableA, tableB] = [merged[a]!, merged[b]!];
    for (const node of nodes) if (tableA[node] !== tableB[node]) return tableB[node]! - tableA[node]!;
    return 0;
  });
}

/** Nodes as Pacemaker sorts them before any assignment: those that can take guests first, then (balanced)
 * the one with more capacity, then by name. */
function nodeOrder(allocation: Allocation): number[] {
  const { nodes } = allocation.prepared;
  const weight = (node: number) => (allocation.available[node] ? 0 : MINUS_INFINITY);
  return nodes
    .map((_, index) => index)
    .sort((a, b) => {
      if (weight(a) !== weight(b)) return weight(b) - weight(a);
      if (allocation.strategy === "balanced") {
        const [capacityA, capacityB] = [nodes[a]!.capacity, nodes[b]!.capacity];
        const room = roomVote(capacityA.vcpus, capacityB.vcpus, capacityA.memoryMb, capacityB.memoryMb);
        if (room !== 0) return room;
      }
      return a - b;
    });
}
