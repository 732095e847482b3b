// The scheduler's records for unit tests: a node, a guest and a running guest with plain defaults, and a
// setup (guests, nodes, constraints, what runs where) turned into the scheduler's configuration, state and plan.
import { schedule } from "../../src/core/scheduler/scheduler.js";
import { INFINITY } from "../../src/core/scheduler/scores.js";
import type {
  Constraint,
  PlacementStrategy,
  Plan,
  SchedConfig,
  SchedNode,
  SchedVm,
  VmFailures,
  VmRuntime,
} from "../../src/core/scheduler/types.js";

export const node = (name: string, extra: Partial<SchedNode> = {}): SchedNode => ({
  name,
  online: true,
  standby: false,
  attributes: {},
  capacity: { vcpus: 8, memoryMb: 8192 },
  ...extra,
});

export const vm = (name: string, extra: Partial<SchedVm> = {}): SchedVm => ({
  name,
  state: "started",
  vcpus: 1,
  memoryMb: 1024,
  allowMigrate: true,
  stickiness: 0,
  priority: 0,
  migrationThreshold: INFINITY,
  failureTimeoutS: 0,
  ...extra,
});

export const runningOn = (nodeName: string, failures: VmFailures[] = []): VmRuntime => ({
  node: nodeName,
  running: true,
  failures,
});

export interface Setup {
  vms: SchedVm[];
  nodes: SchedNode[];
  constraints?: Constraint[];
  runtime?: Record<string, VmRuntime>;
  nowMs?: number;
  strategy?: PlacementStrategy;
  runningGuests?: SchedConfig["runningGuests"];
}

export const config = (setup: Setup): SchedConfig => ({
  vms: setup.vms,
  constraints: setup.constraints ?? [],
  ...(setup.strategy && { placementStrategy: setup.strategy }),
  ...(setup.runningGuests && { runningGuests: setup.runningGuests }),
});
export const state = (setup: Setup) => ({
  nodes: setup.nodes,
  vms: new Map(Object.entries(setup.runtime ?? {})),
  nowMs: setup.nowMs ?? 0,
});
export const plan = (setup: Setup): Plan => schedule(config(setup), state(setup));
export const actionOf = (result: Plan, name: string) => result.actions.find((action) => action.vm === name);
/** Where each guest runs after the plan. */
export const placement = (result: Plan) =>
  Object.fromEntries(result.actions.filter((action) => action.to).map((action) => [action.vm, action.to]));

/** A node with room for everything, for tests about constraints rather than capacity. */
export const roomyNode = (name: string, extra: Partial<SchedNode> = {}): SchedNode =>
  node(name, { capacity: { vcpus: 64, memoryMb: 65536 }, ...extra });

export const location = (id: string, vmName: string, nodeName: string, score: number): Constraint => ({
  type: "location",
  id,
  vm: vmName,
  node: nodeName,
  score,
});
export const rule = (id: string, vmName: string, text: string, score: number): Constraint => ({
  type: "location-rule",
  id,
  vm: vmName,
  rule: text,
  score,
});
export const colocation = (id: string, vmName: string, withVm: string, score: number): Constraint => ({
  type: "colocation",
  id,
  vm: vmName,
  withVm,
  score,
});
export const colocationSet = (id: string, vms: string[], score: number): Constraint => ({
  type: "colocation-set",
  id,
  vms,
  score,
});
export const order = (
  id: string,
  first: string,
  then: string,
  kind: "mandatory" | "optional" = "mandatory",
): Constraint => ({
  type: "order",
  id,
  first,
  then,
  kind,
});
