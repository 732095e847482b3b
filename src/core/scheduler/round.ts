// What one scheduling round has decided so far: the room each node has given away, which guests are
// placed where, and the guests that run now but have not had their turn yet. Those "pending" guests
// hold their room and count for colocations (as preferences), so that a guest placed before them does
// not take their node or land next to them only to push them away a moment later.
import type { Prepared } from "./prepare.js";
import type { SchedState, SchedVm, VmRuntime } from "./types.js";

export interface Room {
  vcpus: Float64Array;
  memoryMb: Float64Array;
}

export interface Round {
  prepared: Prepared;
  nowMs: number;
  /** Room taken by guests placed in this round. */
  used: Room;
  /** Room held by pending guests, in total and per priority (lower priorities can be displaced). */
  held: Room;
  heldByPriority: Map<number, Room>;
  /** Pending guests: running on an online, non-standby node, wanted running, not yet decided. */
  pending: Map<string, number>;
  placed: Map<string, number>;
  decided: Set<string>;
  /** Per colocation set, per node: members placed, and members pending. */
  setPlaced: Int32Array[];
  setPending: Int32Array[];
}

const NOT_PLACED: VmRuntime = { node: null, running: false, failures: [] };

export function runtimeOf(state: SchedState, vm: SchedVm): VmRuntime {
  return state.vms.get(vm.name) ?? NOT_PLACED;
}

/** The index of the online node the guest runs on now (standby included), or -1. */
export function currentNode(prepared: Prepared, runtime: VmRuntime): number {
  if (!runtime.running || runtime.node === null) return -1;
  const node = prepared.nodeIndex.get(runtime.node);
  return node !== undefined && prepared.nodes[node]!.online ? node : -1;
}

const emptyRoom = (count: number): Room => ({
  vcpus: new Float64Array(count),
  memoryMb: new Float64Array(count),
});

export function newRound(prepared: Prepared, state: SchedState): Round {
  const count = prepared.nodes.length;
  const round: Round = {
    prepared,
    nowMs: state.nowMs,
    used: emptyRoom(count),
    held: emptyRoom(count),
    heldByPriority: new Map(),
    pending: new Map(),
    placed: new Map(),
    decided: new Set(),
    setPlaced: prepared.sets.map(() => new Int32Array(count)),
    setPending: prepared.sets.map(() => new Int32Array(count)),
  };
  for (const vm of prepared.vms) {
    const current = currentNode(prepared, runtimeOf(state, vm));
    if (vm.state !== "started" || current < 0 || prepared.nodes[current]!.standby) continue;
    round.pending.set(vm.name, current);
    hold(round, vm, current, 1);
  }
  return round;
}

function hold(round: Round, vm: SchedVm, node: number, sign: 1 | -1): void {
  let byPriority = round.heldByPriority.get(vm.priority);
  if (!byPriority) round.heldByPriority.set(vm.priority, (byPriority = emptyRoom(round.used.vcpus.length)));
  for (const room of [round.held, byPriority]) {
    room.vcpus[node]! += sign * vm.vcpus;
    room.memoryMb[node]! += sign * vm.memoryMb;
  }
  for (const { set } of round.prepared.index.get(vm.name)!.sets) round.setPending[set]![node]! += sign;
}

/** The guest's turn: it no longer holds room or counts as pending. */
export function startTurn(round: Round, vm: SchedVm): void {
  const node = round.pending.get(vm.name);
  if (node !== undefined) {
    hold(round, vm, node, -1);
    round.pending.delete(vm.name);
  }
  round.decided.add(vm.name);
}

export function place(round: Round, vm: SchedVm, node: number): void {
  round.placed.set(vm.name, node);
  round.used.vcpus[node]! += vm.vcpus;
  round.used.memoryMb[node]! += vm.memoryMb;
  for (const { set } of round.prepared.index.get(vm.name)!.sets) round.setPlaced[set]![node]!++;
}

/**
 * Room left on a node for a guest of `priority`. Normally all pending guests' room is off limits; when
 * `displace` is set, room held by lower-priority guests is free (Pacemaker's priority: lower-priority
 * resources give way when not all can run), while equal or higher priorities keep theirs.
 */
export function freeRoom(round: Round, node: number, priority: number, displace: boolean) {
  const capacity = round.prepared.nodes[node]!.capacity;
  let vcpus = capacity.vcpus - round.used.vcpus[node]!;
  let memoryMb = capacity.memoryMb - round.used.memoryMb[node]!;
  if (!displace) {
    return { vcpus: vcpus - round.held.vcpus[node]!, memoryMb: memoryMb - round.held.memoryMb[node]! };
  }
  for (const [heldPriority, room] of round.heldByPriority) {
    if (heldPriority < priority) continue;
    vcpus -= room.vcpus[node]!;
    memoryMb -= room.memoryMb[node]!;
  }
  return { vcpus, memoryMb };
}

/** Whether the guest fits on the node (see freeRoom); the hot path, so without allocating. */
export function fits(round: Round, node: number, vm: SchedVm, displace: boolean): boolean {
  if (displace) {
    const free = freeRoom(round, node, vm.priority, true);
    return vm.vcpus <= free.vcpus && vm.memoryMb <= free.memoryMb;
  }
  const capacity = round.prepared.nodes[node]!.capacity;
  return (
    round.used.vcpus[node]! + round.held.vcpus[node]! + vm.vcpus <= capacity.vcpus &&
    round.used.memoryMb[node]! + round.held.memoryMb[node]! + vm.memoryMb <= capacity.memoryMb
  );
}

/** Free memory counting pending guests' room: what ties are broken on. */
export function freeMemory(round: Round, node: number): number {
  const capacity = round.prepared.nodes[node]!.capacity;
  return capacity.memoryMb - round.used.memoryMb[node]! - round.held.memoryMb[node]!;
}
