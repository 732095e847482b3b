// One allocation of every guest to a node (or none), as Pacemaker's scheduler assigns resources: in the
// order of allocation-order.ts, each guest after the guests it is colocated with (its primaries, assigned
// first, whatever their place in the order), then the preferences of the guests that follow it, a ban
// everywhere if it is to be stopped, the nodes without room under a capacity strategy, and the choice.
// Written without recursion: a chain of thousands of colocations must not overflow the stack.
import { allocationOrder } from "./allocation-order.js";
import {
  addOnNodes,
  ALLOCATING,
  ASSIGNED,
  newAllocation,
  PROVISIONAL,
  weightOn,
  type Allocation,
} from "./allocation-state.js";
import { applyBaseScores } from "./base-scores.js";
import {
  banNodesWithoutRoom,
  capacityGroups,
  consume,
  fits,
  freeRoom,
  leaveGroup,
  type Groups,
  type Needs,
} from "./capacity.js";
import { applyPrimary, mergeDependents } from "./colocation.js";
import { chooseNode, whyChosen, type TieReason } from "./node-choice.js";
import type { Prepared } from "./prepare.js";
import { MINUS_INFINITY } from "./scores.js";
import type { PlacementStrategy, SchedState } from "./types.js";

export interface Allocated extends Allocation {
  /** Per guest that left (or did not return to) a node of the same score: which tie-break decided. */
  tieBreaks: Map<number, TieReason | "score">;
  /** The room each node offered the traced guest at its turn. */
  tracedRoom: Needs[] | null;
}

/**
 * Allocates every guest. `protect`: running guests whose room on their node is kept for them until their
 * turn (see scheduler.ts); `traced`: the guest whose room at its turn is kept for `explain`, or -1.
 */
export function allocate(
  prepared: Prepared,
  state: SchedState,
  options: { strategy: PlacementStrategy; keepOnTies: boolean },
  protect: ReadonlySet<number>,
  traced: number,
): Allocated {
  const { strategy, keepOnTies } = options;
  const allocation: Allocated = {
    ...newAllocation(prepared, state, strategy, keepOnTies),
    tieBreaks: new Map(),
    tracedRoom: null,
  };
  applyBaseScores(allocation);
  const groups = strategy === "default" ? null : capacityGroups(allocation);
  for (const vm of protect) {
    const { priority, vcpus, memoryMb } = prepared.vms[vm]!;
    allocation.holds[allocation.current[vm]!]!.push({ vm, priority, vcpus, memoryMb });
  }
  for (const vm of allocationOrder(allocation)) assign(allocation, groups, vm, traced);
  return allocation;
}

/** Assigns `root`, its primaries first (depth first, in Pacemaker's order of a guest's colocations). */
function assign(allocation: Allocated, groups: Groups | null, root: number, traced: number): void {
  const { status, prepared } = allocation;
  if (status[root] !== PROVISIONAL) return;
  status[root] = ALLOCATING;
  const stack = [{ vm: root, next: 0, waiting: false }];
  while (stack.length > 0) {
    const frame = stack[stack.length - 1]!;
    const primaries = prepared.index[frame.vm]!.primaries;
    if (frame.waiting) {
      applyPrimary(allocation, frame.vm, primaries[frame.next++]!);
      frame.waiting = false;
      continue;
    }
    if (frame.next < primaries.length) {
      const primary = primaries[frame.next]!.primary;
      frame.waiting = true;
      // A primary already being assigned is a colocation loop: Pacemaker goes on without it.
      if (status[primary] === PROVISIONAL) {
        status[primary] = ALLOCATING;
        stack.push({ vm: primary, next: 0, waiting: false });
      }
      continue;
    }
    stack.pop();
    finish(allocation, groups, frame.vm, traced);
  }
}

function finish(allocation: Allocated, groups: Groups | null, vm: number, traced: number): void {
  const guest = allocation.prepared.vms[vm]!;
  mergeDependents(allocation, vm);
  releaseHold(allocation, vm);
  let chosen = -1;
  if (guest.state === "stopped") {
    const detail = () => "target state is stopped";
    addOnNodes(allocation, vm, {
      kind: "nodes",
      source: "target-role",
      nodes: null,
      score: MINUS_INFINITY,
      detail,
    });
  } else {
    const current = allocation.current[vm]!;
    const before = current >= 0 ? allocation.tables[vm]![current]! : MINUS_INFINITY;
    const prefer = groups ? banNodesWithoutRoom(allocation, groups, vm) : -1;
    if (vm === traced)
      allocation.tracedRoom = allocation.prepared.nodes.map((_, node) =>
        freeRoom(allocation, node, guest.priority),
      );
    chosen = chooseNode(allocation, vm, prefer);
    noteTieBreak(allocation, vm, chosen, prefer);
    if (groups && chosen < 0) noteEviction(allocation, vm, before);
  }
  if (chosen >= 0) consume(allocation, vm, chosen);
  allocation.chosen[vm] = chosen;
  allocation.status[vm] = ASSIGNED;
  if (groups) leaveGroup(allocation, groups, vm);
  allocation.finished.push(vm);
}

/** A protected guest's turn: the room kept for it is its own to take (or to leave). */
function releaseHold(allocation: Allocation, vm: number): void {
  const node = allocation.current[vm]!;
  if (node < 0) return;
  const holds = allocation.holds[node]!;
  const position = holds.findIndex((hold) => hold.vm === vm);
  if (position >= 0) holds.splice(position, 1);
}

/** For the reasons: when the guest leaves its node, or does not return to its placed node, why. */
function noteTieBreak(allocation: Allocated, vm: number, chosen: number, prefer: number): void {
  if (chosen < 0) return;
  const reference = referenceNode(allocation, vm);
  if (reference < 0 || reference === chosen) return;
  if (weightOn(allocation, vm, reference) !== weightOn(allocation, vm, chosen)) return;
  allocation.tieBreaks.set(vm, whyChosen(allocation, vm, chosen, reference, prefer));
}

/** The node the guest runs on, or else the online node it is placed on, or -1. */
export function referenceNode(allocation: Allocation, vm: number): number {
  const current = allocation.current[vm]!;
  if (current >= 0) return current;
  const placed = allocation.runtimes[vm]!.node;
  const node = placed === null ? undefined : allocation.prepared.nodeIndex.get(placed);
  return node !== undefined && allocation.prepared.nodes[node]!.online ? node : -1;
}

/**
 * A running guest that would have stayed on its node (it scored as high as any node that had room) but
 * found the room taken by guests of its priority or lower placed before it, and no room anywhere else:
 * Pacemaker stops it; Haven keeps its room for it in the next allocation (scheduler.ts). (One that finds
 * room elsewhere moves, as in Pacemaker: it keeps running.)
 */
function noteEviction(allocation: Allocation, vm: number, before: number): void {
  const current = allocation.current[vm]!;
  if (current < 0 || !allocation.available[current] || before < 0) return;
  const table = allocation.tables[vm]!;
  if (table[current]! >= 0) return; // not banned by capacity: it left for a better node
  for (let node = 0; node < table.length; node++) {
    if (node !== current && weightOn(allocation, vm, node) > before) return;
  }
  const guest = allocation.prepared.vms[vm]!;
  const room = freeRoom(allocation, current, guest.priority);
  for (const other of allocation.assignedOn[current]!) {
    const taken = allocation.prepared.vms[other]!;
    if (taken.priority > guest.priority) continue;
    room.vcpus += taken.vcpus;
    room.memoryMb += taken.memoryMb;
  }
  if (fits(room, guest)) allocation.evicted.add(vm);
}
