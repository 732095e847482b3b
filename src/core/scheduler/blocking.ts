// After the allocation, what will actually run, as Pacemaker decides it from its actions: a guest whose
// mandatory `first` will not run cannot start (and a running one is stopped); a guest that must run with
// (+INFINITY) a guest that was assigned a node but is blocked cannot run either. A guest that was assigned no
// node blocks its +INFINITY dependents only through their scores (it has no start that could fail): where a
// colocation loop skipped the colocation, they run, as in Pacemaker. Blocked guests keep the node they were
// assigned (and its room, as in Pacemaker), but do not run. Propagated with a work list: each guest is visited
// once.
import type { Allocation } from "./allocation-state.js";
import { INFINITY } from "./scores.js";

/** Whether each guest will run: assigned to a node and not blocked. */
export function runningAfterPlan(allocation: Allocation): Uint8Array {
  const { prepared, chosen } = allocation;
  const runs = Uint8Array.from(chosen, (node) => (node >= 0 ? 1 : 0));
  const mandatoryAfter = new Map<number, number[]>();
  prepared.index.forEach((entry, then) => {
    for (const order of entry.startsAfter) {
      if (order.kind !== "mandatory") continue;
      const first = prepared.vmIndex.get(order.first)!;
      mandatoryAfter.set(first, [...(mandatoryAfter.get(first) ?? []), then]);
    }
  });
  const queue: number[] = [];
  runs.forEach((running, vm) => {
    if (!running) queue.push(vm);
  });
  while (queue.length > 0) {
    const stopped = queue.pop()!;
    const blocked = chosen[stopped]! >= 0;
    const followers = [
      ...(mandatoryAfter.get(stopped) ?? []),
      ...(blocked ? prepared.index[stopped]!.dependents : [])
        .filter((link) => link.score >= INFINITY)
        .map((link) => link.dependent),
    ];
    for (const follower of followers) {
      if (!runs[follower]) continue;
      runs[follower] = 0;
      queue.push(follower);
    }
  }
  return runs;
}

/** Why a guest cannot run for reasons of other guests: mandatory orders and +INFINITY colocations. */
export function blockersOf(allocation: Allocation, runs: Uint8Array, vm: number): string[] {
  const { prepared } = allocation;
  const entry = prepared.index[vm]!;
  const blockers: string[] = [];
  if (entry.startsAfter.length === 0 && entry.primaries.every((link) => link.score < INFINITY))
    return blockers;
  const notRunning = (name: string) => !runs[prepared.vmIndex.get(name)!];
  for (const order of entry.startsAfter) {
    if (order.kind === "mandatory" && notRunning(order.first)) {
      blockers.push(`${order.first} must run first (${order.id}), and it will not run`);
    }
  }
  const assigned = allocation.chosen[vm]! >= 0;
  for (const link of entry.primaries) {
    if (link.score < INFINITY || runs[link.primary]) continue;
    // A primary assigned no node blocks an assigned guest only through its scores (see the top of the file).
    if (assigned && allocation.chosen[link.primary]! < 0) continue;
    const primary = prepared.vms[link.primary]!.name;
    blockers.push(`it must run with ${primary} (${link.constraint.id}), which will not run`);
  }
  return blockers;
}
