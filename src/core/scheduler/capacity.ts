// Capacity under the placement strategies that count it (utilization, balanced, minimal), as Pacemaker
// counts it: a node has what its capacity leaves after the guests assigned to it in this run. Before a
// guest is assigned, nodes without room for it and the guests tied to it by +INFINITY colocations that are
// still to be assigned lose it (-INFINITY) — unless no node has room for all of them, then only nodes
// without room for the guest itself, and the node with the most room left is preferred.
import type { Allocation } from "./allocation-state.js";
import { addScores, INFINITY, MINUS_INFINITY } from "./scores.js";
import { roomVote } from "./tie-breaks.js";
import type { Step } from "./trace.js";

export interface Needs {
  vcpus: number;
  memoryMb: number;
}

/** Guests tied together by +INFINITY colocations, and what their members still to be assigned need. */
export interface Groups {
  groupOf: Int32Array;
  pending: Needs[];
}

/** Connected components of the +INFINITY colocations (union-find: chains of any length stay cheap). */
export function capacityGroups(allocation: Allocation): Groups {
  const { prepared } = allocation;
  const parent = Int32Array.from(prepared.vms, (_, index) => index);
  const root = (vm: number): number => {
    let top = vm;
    while (parent[top] !== top) top = parent[top]!;
    for (let step = vm; parent[step] !== top;) [step, parent[step]] = [parent[step]!, top];
    return top;
  };
  for (const entry of prepared.index) {
    for (const link of entry.primaries) {
      // Pacemaker follows colocations of exactly +INFINITY here.
      if (link.score !== INFINITY) continue;
      const [a, b] = [root(link.dependent), root(link.primary)];
      if (a !== b) parent[a] = b;
    }
  }
  const groupOf = Int32Array.from(prepared.vms, (_, index) => root(index));
  const pending = prepared.vms.map((): Needs => ({ vcpus: 0, memoryMb: 0 }));
  prepared.vms.forEach((vm, index) => {
    const needs = pending[groupOf[index]!]!;
    needs.vcpus += vm.vcpus;
    needs.memoryMb += vm.memoryMb;
  });
  return { groupOf, pending };
}

/** The guest is assigned (to a node or to none): it no longer counts in its group's needs. */
export function leaveGroup(allocation: Allocation, groups: Groups, vm: number): void {
  const { vcpus, memoryMb } = allocation.prepared.vms[vm]!;
  const needs = groups.pending[groups.groupOf[vm]!]!;
  needs.vcpus -= vcpus;
  needs.memoryMb -= memoryMb;
}

/** Room left on a node for a guest of `priority`: capacity, less what is assigned and what is held for it. */
export function freeRoom(allocation: Allocation, node: number, priority: number): Needs {
  return { vcpus: freeVcpus(allocation, node, priority), memoryMb: freeMemoryMb(allocation, node, priority) };
}

// The two halves of freeRoom without an object: they run for every node of every guest.
function freeVcpus(allocation: Allocation, node: number, priority: number): number {
  let free = allocation.prepared.nodes[node]!.capacity.vcpus - allocation.usedVcpus[node]!;
  for (const hold of allocation.holds[node]!) if (hold.priority >= priority) free -= hold.vcpus;
  return free;
}

function freeMemoryMb(allocation: Allocation, node: number, priority: number): number {
  let free = allocation.prepared.nodes[node]!.capacity.memoryMb - allocation.usedMemoryMb[node]!;
  for (const hold of allocation.holds[node]!) if (hold.priority >= priority) free -= hold.memoryMb;
  return free;
}

export function fits(room: Needs, needs: Needs): boolean {
  return needs.vcpus <= room.vcpus && needs.memoryMb <= room.memoryMb;
}

function fitsOn(allocation: Allocation, node: number, priority: number, needs: Needs): boolean {
  return (
    needs.vcpus <= freeVcpus(allocation, node, priority) &&
    needs.memoryMb <= freeMemoryMb(allocation, node, priority)
  );
}

/** Pacemaker's capacity comparison (tie-breaks.ts) of the room two nodes have left. */
export function capacityVote(allocation: Allocation, a: number, b: number, priority: number): number {
  return roomVote(
    freeVcpus(allocation, a, priority),
    freeVcpus(allocation, b, priority),
    freeMemoryMb(allocation, a, priority),
    freeMemoryMb(allocation, b, priority),
  );
}

/**
 * Bans the nodes without room (see the top of the file) and returns the node to prefer when no node has
 * room for the whole group, or -1. Among nodes with equally much room the first by name is preferred
 * (Pacemaker takes the first in its hash table's order).
 */
export function banNodesWithoutRoom(allocation: Allocation, groups: Groups, vm: number): number {
  const { available, prepared } = allocation;
  const guest = prepared.vms[vm]!;
  const table = allocation.tables[vm]!;
  const group = groups.pending[groups.groupOf[vm]!]!;
  const alone = group.vcpus === guest.vcpus && group.memoryMb === guest.memoryMb;
  let anyRoom = false;
  for (let node = 0; node < table.length && !anyRoom; node++) {
    anyRoom = available[node] === 1 && table[node]! >= 0 && fitsOn(allocation, node, guest.priority, group);
  }
  let roomiest = -1;
  for (let node = 0; node < table.length && !anyRoom; node++) {
    if (!available[node] || table[node]! < 0) continue;
    if (roomiest < 0 || capacityVote(allocation, node, roomiest, guest.priority) < 0) roomiest = node;
  }
  const needs = anyRoom ? group : guest;
  const banned: number[] = [];
  for (let node = 0; node < table.length; node++) {
    if (!available[node] || table[node]! < 0 || fitsOn(allocation, node, guest.priority, needs)) continue;
    table[node] = addScores(table[node]!, MINUS_INFINITY);
    banned.push(node);
  }
  if (banned.length > 0) {
    const together = anyRoom && !alone ? " for it and the guests that must run with it:" : "";
    const { vcpus, memoryMb } = needs; // the group's needs change as its members are assigned
    const detail = () => `not enough free capacity for${together} ${vcpus} vCPUs and ${memoryMb} MB`;
    const amounts = banned.map(() => MINUS_INFINITY);
    const step: Step = { kind: "amounts", source: "capacity", nodes: banned, amounts, detail };
    allocation.steps[vm]!.push(step);
  }
  return anyRoom ? -1 : roomiest;
}

/** Takes the node's room for the guest (Pacemaker's assignment). */
export function consume(allocation: Allocation, vm: number, node: number): void {
  const { vcpus, memoryMb } = allocation.prepared.vms[vm]!;
  allocation.usedVcpus[node]! += vcpus;
  allocation.usedMemoryMb[node]! += memoryMb;
  allocation.counts[node]!++;
  allocation.assignedOn[node]!.push(vm);
}
