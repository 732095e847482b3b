// The state of one allocation of guests to nodes, as Pacemaker's scheduler keeps it: each guest's score
// per node (its "allowed nodes", changed as colocations are applied), whether it is assigned, where, and
// what each node has given away (room, and the number of guests assigned to it in this run).
import type { Prepared } from "./prepare.js";
import { addScores, INFINITY, MINUS_INFINITY, type Score } from "./scores.js";
import type { Step } from "./trace.js";
import type { PlacementStrategy, SchedState, VmRuntime } from "./types.js";

export const PROVISIONAL = 0;
export const ALLOCATING = 1;
export const ASSIGNED = 2;

/** Room a running guest keeps on its node until its turn, against guests of its priority or lower. */
export interface Hold {
  vm: number;
  priority: number;
  vcpus: number;
  memoryMb: number;
}

export interface Allocation {
  prepared: Prepared;
  strategy: PlacementStrategy;
  /** A running guest stays on its node when no node scores higher (SchedConfig.runningGuests). */
  keepOnTies: boolean;
  nowMs: number;
  runtimes: VmRuntime[];
  /** 1 where a node can take guests: online and not in standby. */
  available: Uint8Array;
  /** Per guest: its score per node. */
  tables: Int32Array[];
  status: Uint8Array;
  /** Per guest: set while its colocated scores are being merged (breaks colocation loops). */
  merging: Uint8Array;
  /** Per guest: the node assigned, or -1. */
  chosen: Int32Array;
  /** Per guest: the available or standby node it runs on now, or -1. */
  current: Int32Array;
  /** Per node: what the guests assigned in this run take, and how many they are. */
  usedVcpus: Float64Array;
  usedMemoryMb: Float64Array;
  counts: Int32Array;
  assignedOn: number[][];
  /** Per node: room kept for protected running guests that have not had their turn. */
  holds: Hold[][];
  /** Per guest: how its scores came about. */
  steps: Step[][];
  /** Guests in the order their assignment finished. */
  finished: number[];
  /** Scratch frames and score tables for colocation merges (colocation.ts). */
  mergeStack: unknown;
  /** Running guests that lost their node's room to guests of their priority or lower (see scheduler.ts). */
  evicted: Set<number>;
}

const NOT_PLACED: VmRuntime = { node: null, running: false, failures: [] };

export function runtimeOf(state: SchedState, name: string): VmRuntime {
  return state.vms.get(name) ?? NOT_PLACED;
}

/** The index of the online node the guest runs on now (standby included), or -1. */
export function currentNodeOf(prepared: Prepared, runtime: VmRuntime): number {
  if (!runtime.running || runtime.node === null) return -1;
  const node = prepared.nodeIndex.get(runtime.node);
  return node !== undefined && prepared.nodes[node]!.online ? node : -1;
}

export function newAllocation(
  prepared: Prepared,
  state: SchedState,
  strategy: PlacementStrategy,
  keepOnTies: boolean,
): Allocation {
  const nodeCount = prepared.nodes.length;
  const vmCount = prepared.vms.length;
  const runtimes = prepared.vms.map((vm) => runtimeOf(state, vm.name));
  return {
    prepared,
    strategy,
    keepOnTies,
    nowMs: state.nowMs,
    runtimes,
    available: Uint8Array.from(prepared.nodes, (node) => (node.online && !node.standby ? 1 : 0)),
    tables: slices(vmCount, nodeCount),
    status: new Uint8Array(vmCount),
    merging: new Uint8Array(vmCount),
    chosen: new Int32Array(vmCount).fill(-1),
    current: Int32Array.from(runtimes, (runtime) => currentNodeOf(prepared, runtime)),
    usedVcpus: new Float64Array(nodeCount),
    usedMemoryMb: new Float64Array(nodeCount),
    counts: new Int32Array(nodeCount),
    assignedOn: prepared.nodes.map(() => []),
    holds: prepared.nodes.map(() => []),
    steps: prepared.vms.map(() => []),
    finished: [],
    mergeStack: null,
    evicted: new Set(),
  };
}

/**
 * `count` tables of `length` scores, views of one buffer: thousands of small typed arrays of their own
 * would each cost an allocation of memory outside the heap, and the collector's time.
 */
export function slices(count: number, length: number): Int32Array[] {
  const buffer = new Int32Array(count * length);
  return Array.from({ length: count }, (_, index) => buffer.subarray(index * length, (index + 1) * length));
}

/** Pacemaker's "available node": it can run guests and the score there is not negative. */
export function anyAvailable(allocation: Allocation, table: Int32Array): boolean {
  const { available } = allocation;
  for (let node = 0; node < table.length; node++) if (available[node] && table[node]! >= 0) return true;
  return false;
}

/** The score the choice of a node sees: -INFINITY where the node cannot take guests. */
export function weightOn(allocation: Allocation, vm: number, node: number): Score {
  return allocation.available[node] ? allocation.tables[vm]![node]! : MINUS_INFINITY;
}

/** Adds `score` on one node of a guest's table, recording the step. */
export function addOnNode(allocation: Allocation, vm: number, step: Step & { kind: "node" }): void {
  const table = allocation.tables[vm]!;
  table[step.node] = addScores(table[step.node]!, step.score);
  allocation.steps[vm]!.push(step);
}

/** Adds `score` on the matching nodes (or every node), recording the step. */
export function addOnNodes(allocation: Allocation, vm: number, step: Step & { kind: "nodes" }): void {
  const table = allocation.tables[vm]!;
  if (step.nodes === null) {
    for (let node = 0; node < table.length; node++) table[node] = addScores(table[node]!, step.score);
  } else {
    for (const node of step.nodes) table[node] = addScores(table[node]!, step.score);
  }
  allocation.steps[vm]!.push(step);
}

export const isInfinite = (score: Score) => score >= INFINITY || score <= MINUS_INFINITY;
