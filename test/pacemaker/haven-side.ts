// Haven's answer to a scenario, the way a user would get it: the crm configuration (or its CIB) imported by
// the real import service (on in-memory etcd and storage), the cluster's state as the controller sees it
// (nodes that are up, maintenance for Pacemaker's standby, placements and statuses of the running guests),
// and the scheduler's plan for the whole cluster.
import { ClusterStore } from "../../src/adapters/etcd/cluster-store.js";
import { FakeEtcd } from "../../src/adapters/etcd/fake.js";
import { FakeStorage } from "../../src/adapters/storage/fake.js";
import { ImportService } from "../../src/api/import-service.js";
import { importCibRequest, importCrmRequest } from "../../src/api/requests.js";
import { HavenError } from "../../src/core/errors.js";
import type { Placement, VmStatus } from "../../src/core/model.js";
import { schedConfig, schedState, type RulesView } from "../../src/core/placement-rules.js";
import { explain, schedule } from "../../src/core/scheduler/scheduler.js";
import { addScores } from "../../src/core/scheduler/scores.js";
import type { NodeScore, SchedConfig } from "../../src/core/scheduler/types.js";
import { importOptions, nodeInfo, placementOn, statusOn } from "../unit/fixtures.js";
import { crmOf, diskOf, domainsOf, importableCibOf } from "./render.js";
import type { Scenario } from "./scenario.js";

export type HavenAnswer =
  | { refused: string }
  | {
      /** Where each guest runs after the plan; null when it does not run. */
      placement: Map<string, string | null>;
      /** Guest → node → the guest's score there at its turn (for the report on disagreements). */
      scores: () => Map<string, Map<string, number>>;
    };

// Any readable file does as a kernel: the import checks that it exists.
const KERNEL = process.execPath;
const PREFIX = "/differential/";

/**
 * `runningGuests` turns off Haven's rules for running guests (docs/placement.md), so that the scheduler
 * decides those cases as Pacemaker does.
 */
export async function havenAnswer(
  scenario: Scenario,
  format: "crm" | "cib",
  options: Pick<SchedConfig, "runningGuests"> = {},
): Promise<HavenAnswer> {
  const etcd = new FakeEtcd({ now: () => 0 });
  try {
    const store = new ClusterStore(etcd, PREFIX);
    const storage = new FakeStorage();
    for (const vm of scenario.vms) await storage.create(diskOf(vm.name), 1024 * 1024);
    const imports = new ImportService(store, storage, importOptions("rbd"));
    const common = { file: `scenario.${format}`, domains: domainsOf(scenario, KERNEL), dryRun: false };
    try {
      if (format === "crm")
        await imports.importCrm(importCrmRequest.parse({ ...common, crm: crmOf(scenario) }));
      else await imports.importCib(importCibRequest.parse({ ...common, cib: importableCibOf(scenario) }));
    } catch (error) {
      if (error instanceof HavenError && error.code === "INPUT") return { refused: error.message };
      throw error;
    }
    const view = await viewOf(scenario, store, etcd);
    const placements = placementsOf(scenario);
    const config = { ...schedConfig(view), ...options };
    const state = schedState(view, placements);
    const plan = schedule(config, state);
    const placement = new Map<string, string | null>(scenario.vms.map((vm) => [vm.name, null]));
    for (const action of plan.actions)
      if (action.type !== "stop" && action.to) placement.set(action.vm, action.to);
    const scores = () =>
      new Map(
        scenario.vms.map((vm) => [
          vm.name,
          new Map(explain(config, state, vm.name).nodes.map((node) => [node.node, beforeCapacity(node)])),
        ]),
      );
    return { placement, scores };
  } finally {
    etcd.close();
  }
}

/** A node's score before capacity counts (and without its availability): what crm_simulate prints. */
function beforeCapacity(node: NodeScore): number {
  const builtIn = ["capacity", "offline", "standby"];
  return node.contributions
    .filter((contribution) => !contribution.ignored && !builtIn.includes(contribution.source))
    .reduce((sum, contribution) => addScores(sum, contribution.score), 0);
}

async function viewOf(scenario: Scenario, store: ClusterStore, etcd: FakeEtcd): Promise<RulesView> {
  const config = new Map((await etcd.list(`${PREFIX}config/`)).kvs.map((kv) => [kv.key, kv.value]));
  const { rules } = store.parseConfig(config);
  const online = scenario.nodes.filter((node) => node.online);
  return {
    // A node that is down has no record in etcd: its lease is gone.
    nodes: online.map((node) => nodeInfo(node.name, { capacity: node.capacity })),
    specs: new Map((await store.listSpecs()).map((spec) => [spec.name, spec])),
    statuses: new Map(
      [...scenario.running]
        .filter(([, node]) => online.some((candidate) => candidate.name === node))
        .map(([vm, node]): [string, VmStatus] => [vm, statusOn(node, "running")]),
    ),
    maintenance: new Set(online.filter((node) => node.standby).map((node) => node.name)),
    rules,
    now: 0,
  };
}

function placementsOf(scenario: Scenario): Map<string, Placement> {
  return new Map([...scenario.running].map(([vm, node]) => [vm, placementOn(node)]));
}
