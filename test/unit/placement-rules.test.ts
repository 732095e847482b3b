// Placement constraints in Haven's placement: bans, preferences, rules over node attributes, anti-affinity,
// recovery and `vm explain`; without constraints the most-free-memory choice is unchanged.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { planController, type ClusterView } from "../../src/core/controller-plan.js";
import {
  DEFAULT_MIGRATION,
  type NodeInfo,
  type Placement,
  type VmSpec,
  type VmStatus,
} from "../../src/core/model.js";
import {
  clusterPlan,
  explainPlacement,
  NO_RULES,
  type PlacementRules,
} from "../../src/core/placement-rules.js";
import type { Constraint, Plan } from "../../src/core/scheduler/types.js";
import { nodeInfo, placementOn, statusOn, vmSpec } from "./fixtures.js";

const node = (name: string, memoryMb: number, attributes: Record<string, string> = {}): NodeInfo =>
  nodeInfo(name, { capacity: { vcpus: 8, memoryMb }, attributes });
const spec = (name: string): VmSpec => vmSpec(name, { restartLimit: 1 });
const placed = (name: string): Placement => placementOn(name);
const running = (name: string): VmStatus => statusOn(name, "running");

function view(parts: {
  nodes?: NodeInfo[];
  vms?: string[];
  placements?: Record<string, Placement>;
  statuses?: Record<string, VmStatus>;
  constraints?: Constraint[];
  nodeAttributes?: Record<string, Record<string, string>>;
}): ClusterView {
  const rules: PlacementRules = {
    constraints: parts.constraints ?? [],
    nodeAttributes: new Map(Object.entries(parts.nodeAttributes ?? {})),
  };
  return {
    now: 0,
    // n1 has the most free memory: without constraints it wins.
    nodes: parts.nodes ?? [node("n1", 4096), node("n2", 2048), node("n3", 1024)],
    specs: new Map((parts.vms ?? ["a"]).map((vm) => [vm, spec(vm)])),
    placements: new Map(Object.entries(parts.placements ?? {})),
    statuses: new Map(Object.entries(parts.statuses ?? {})),
    requests: new Map(),
    incomings: new Map(),
    maintenance: new Set(),
    frozen: new Set(),
    migrationDefaults: DEFAULT_MIGRATION,
    rules,
  };
}

const placedOn = (v: ClusterView, vm = "a") => {
  const action = planController(v).find((a) => a.vm === vm);
  if (action?.type === "place" || action?.type === "recover") return action.placement.node;
  return action?.type === "unplaceable" ? `unplaceable: ${action.reason}` : undefined;
};

describe("placement with constraints", () => {
  test("without constraints the node with the most free memory wins, as before", () => {
    assert.equal(placedOn(view({})), "n1");
    assert.equal(NO_RULES.constraints.length, 0);
  });

  test("a -INFINITY location bans a node; a positive one is preferred over free memory", () => {
    assert.equal(
      placedOn(
        view({ constraints: [{ type: "location", id: "l1", vm: "a", node: "n1", score: -1_000_000 }] }),
      ),
      "n2",
    );
    assert.equal(
      placedOn(view({ constraints: [{ type: "location", id: "l2", vm: "a", node: "n3", score: 100 }] })),
      "n3",
    );
  });

  test("a rule over node attributes (the seed's hw=vm), with attributes set by an import", () => {
    const constraints: Constraint[] = [
      { type: "location-rule", id: "vm-hw", vm: "a", rule: "hw ne vm", score: -1_000_000 },
    ];
    const nodeAttributes = { n2: { hw: "vm" }, n1: { hw: "disk" }, n3: { hw: "disk" } };
    assert.equal(placedOn(view({ constraints, nodeAttributes })), "n2");
  });

  test("mandatory anti-affinity keeps a guest off its partner's node, also when recovering", () => {
    const constraints: Constraint[] = [
      { type: "colocation", id: "apart", vm: "b", withVm: "a", score: -1_000_000 },
    ];
    const base = {
      vms: ["a", "b"],
      constraints,
      placements: { a: placed("n1") },
      statuses: { a: running("n1") },
    };
    assert.equal(placedOn(view(base), "b"), "n2");
    // b's node n2 fails; a still runs on n1: b is recovered on n3, not on n1 with more room.
    const failed = view({
      ...base,
      nodes: [node("n1", 4096), node("n3", 1024)],
      placements: { a: placed("n1"), b: placed("n2") },
    });
    assert.equal(placedOn(failed, "b"), "n3");
  });

  test("mandatory anti-affinity also keeps the partner off the dependent guest's node", () => {
    // b must stay apart from a; b runs on n1. Haven never moves b to make room, so a may not go to n1 either.
    const constraints: Constraint[] = [
      { type: "colocation", id: "apart", vm: "b", withVm: "a", score: -1_000_000 },
    ];
    const v = view({
      vms: ["a", "b"],
      constraints,
      placements: { b: placed("n1") },
      statuses: { b: running("n1") },
    });
    assert.equal(placedOn(v), "n2");
  });

  test("a round that places guests plans them off their running partners' nodes, moving no running guest", () => {
    // a's node is down; b must stay apart from a and runs on n1, the node a prefers. Pacemaker assigns a
    // first, to n1, and moves b away; a placing round moves no running guest, so its plan gives a n2 (which
    // the controller takes without scoring a on its own), and b stays.
    const constraints: Constraint[] = [
      { type: "colocation", id: "apart", vm: "b", withVm: "a", score: -1_000_000 },
      { type: "location", id: "a-likes-n1", vm: "a", node: "n1", score: 100 },
    ];
    const v = view({
      vms: ["a", "b"],
      constraints,
      placements: { a: placed("n9"), b: placed("n1") },
      statuses: { b: running("n1") },
    });
    const moves = (plan: Plan | undefined) =>
      plan?.actions.filter((a) => a.type !== "keep").map((a) => [a.type, a.vm, a.to]);
    assert.deepEqual(moves(clusterPlan(v, v.placements)), [
      ["migrate", "b", "n2"],
      ["start", "a", "n1"],
    ]);
    assert.deepEqual(moves(clusterPlan(v, v.placements, { placing: true })), [["start", "a", "n2"]]);
    assert.equal(placedOn(v), "n2");
  });

  test("in a round that places guests, a running guest is not banned from its own node", () => {
    // b must stay apart from a, yet both run on n1 (the constraint came later); x's node is down. The plan of
    // the placing round still weighs b against a as Pacemaker does: b, not a, cannot run on the only node.
    const v = view({
      nodes: [node("n1", 4096)],
      vms: ["a", "b", "x"],
      constraints: [{ type: "colocation", id: "apart", vm: "b", withVm: "a", score: -1_000_000 }],
      placements: { a: placed("n1"), b: placed("n1"), x: placed("n9") },
      statuses: { a: running("n1"), b: running("n1") },
    });
    const reported = planController(v).filter((a) => a.type === "unplaceable" && a.vm !== "x");
    assert.deepEqual(
      reported.map((a) => a.vm),
      ["b"],
    );
  });

  test("guests go only to compute nodes, also when recovering; with none, they are unplaceable", () => {
    const disks = (name: string) =>
      nodeInfo(name, { capacity: { vcpus: 8, memoryMb: 8192 }, roles: ["storage"] });
    // n1 and n2 have the most free memory but store disks only; n3 computes.
    const nodes = [disks("n1"), disks("n2"), node("n3", 1024)];
    assert.equal(placedOn(view({ nodes })), "n3");
    // A node from before roles does everything.
    assert.equal(placedOn(view({ nodes: [disks("n1"), node("old", 1024)] })), "old");
    // Its node gone, a guest is recovered on a compute node only.
    const recovering = view({ nodes, placements: { a: placed("gone") }, statuses: { a: running("gone") } });
    assert.equal(placedOn(recovering), "n3");
    assert.match(
      placedOn(view({ nodes: [disks("n1"), nodeInfo("n2", { roles: ["monitor", "storage"] })] }))!,
      /unplaceable: .*n1 is not a compute node \(roles storage\).*n2 is not a compute node \(roles monitor\+storage\)/,
    );
  });

  test("a guest every node bans is unplaceable, with the reason", () => {
    const constraints: Constraint[] = [
      { type: "location-rule", id: "nowhere", vm: "a", rule: "#uname ne nowhere", score: -1_000_000 },
    ];
    assert.match(
      String(placedOn(view({ constraints }))),
      /unplaceable: placement constraints ban every online node/,
    );
  });

  test("vm explain shows each node's score, its contributions, room and verdict", () => {
    const v = view({
      constraints: [{ type: "location", id: "no-n1", vm: "a", node: "n1", score: -1_000_000 }],
    });
    const explanation = explainPlacement(spec("a"), v, v.placements);
    assert.equal(explanation.chosen, "n2");
    assert.equal(explanation.constrained, true);
    const n1 = explanation.nodes.find((n) => n.node === "n1")!;
    assert.match(n1.refused ?? "", /banned by constraints/);
    assert.deepEqual(
      n1.contributions.map((c) => c.source),
      ["no-n1"],
    );
    assert.equal(explanation.nodes.find((n) => n.node === "n2")!.refused, null);
  });
});
