// Part 3 of bench:scheduler: the controller's own round (planController) on the scheduler's workloads.
// A settled round is what the controller runs on every change and every second: with constraints it asks
// the scheduler for a rebalancing plan. A failure round recovers a failed node's guests, scoring each one's
// nodes against its constraints.
import { planController, type ClusterView } from "../src/core/controller-plan.js";
import {
  DEFAULT_MIGRATION,
  type NodeInfo,
  type Placement,
  type VmSpec,
  type VmStatus,
} from "../src/core/model.js";
import { buildWorkload, failedNodeState } from "./scheduler.js";

export interface RoundResult {
  nodes: number;
  vms: number;
  lost: number;
  settledMs: number;
  failureMs: number;
  recovered: number;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

function timeMs(work: () => void): number {
  const start = process.hrtime.bigint();
  work();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

export function measureRound(shape: { nodes: number; vms: number }, runs: number): RoundResult {
  const workload = buildWorkload({ ...shape, extras: true });
  const { before, failed } = failedNodeState(workload);
  const nodes: NodeInfo[] = workload.nodes.map((node) => ({
    name: node.name,
    api: "http://127.0.0.1:1",
    capacity: node.capacity,
    attributes: node.attributes,
    accel: "tcg",
    accelReason: "bench",
    storage: { ok: true, summary: "bench" },
    startedAt: "",
    version: "",
  }));
  const specs = new Map(
    workload.config.vms.map((vm): [string, VmSpec] => [
      vm.name,
      {
        name: vm.name,
        state: vm.state,
        memoryMb: vm.memoryMb,
        vcpus: vm.vcpus,
        kernel: "/k",
        disks: [{ image: `${vm.name}-disk0` }],
        canary: false,
        ha: true,
        restartLimit: 3,
        relocateLimit: 1,
        failureTimeoutSeconds: 0,
        priority: vm.priority,
        stickiness: vm.stickiness,
        allowMigrate: vm.allowMigrate,
        stopGraceSeconds: 30,
        createdAt: "",
      },
    ]),
  );
  const placements = new Map<string, Placement>();
  const statuses = new Map<string, VmStatus>();
  for (const [vm, runtime] of before.vms) {
    const node = runtime.node!;
    placements.set(vm, {
      node,
      generation: 1,
      restarts: 0,
      relocations: 0,
      state: "active",
      reason: "",
      updatedAt: "",
    });
    statuses.set(vm, { node, generation: 1, state: "running", updatedAt: "" });
  }
  const view: ClusterView = {
    now: Date.now(),
    nodes,
    specs,
    placements,
    statuses,
    requests: new Map(),
    incomings: new Map(),
    maintenance: new Set(),
    frozen: new Set(),
    migrationDefaults: DEFAULT_MIGRATION,
    rules: { constraints: workload.config.constraints, nodeAttributes: new Map() },
  };
  const afterFailure: ClusterView = { ...view, nodes: nodes.filter((node) => node.name !== failed) };
  let recovered = 0;
  const settled: number[] = [];
  const failure: number[] = [];
  for (let run = 0; run < runs; run++) {
    settled.push(timeMs(() => planController(view)));
    failure.push(
      timeMs(() => {
        recovered = planController(afterFailure).filter((action) => action.type === "recover").length;
      }),
    );
  }
  const lost = [...placements.values()].filter((placement) => placement.node === failed).length;
  return { ...shape, lost, settledMs: median(settled), failureMs: median(failure), recovered };
}
