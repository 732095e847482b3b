// Rebalancing running guests by their constraints and stickiness, refusing user moves that rebalancing would
// undo, start order between guests, and placement from the scheduler's plan for the round.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { planController, type ClusterView, type ControllerAction } from "../../src/core/controller-plan.js";
import {
  DEFAULT_MIGRATION,
  type MigrationRequest,
  type Placement,
  type VmStatus,
} from "../../src/core/model.js";
import { candidateLoads } from "../../src/core/placement.js";
import { chooseNodeByRules, explainPlacement } from "../../src/core/placement-rules.js";
import { REBALANCE_HOLD_MS } from "../../src/core/rebalance.js";
import type { Constraint } from "../../src/core/scheduler/types.js";
import { nodeInfo, placementOn, statusOn, vmSpec } from "./fixtures.js";

const NOW = Date.parse("2026-01-01T00:00:00Z");

interface Vm {
  on?: string;
  state?: VmStatus["state"];
  stickiness?: number;
  allowMigrate?: boolean;
  desired?: "started" | "stopped";
  placement?: Partial<Placement>;
}

function view(
  vms: Record<string, Vm>,
  constraints: Constraint[],
  extra: Partial<ClusterView> = {},
): ClusterView {
  const entries = Object.entries(vms);
  return {
    now: NOW,
    nodes: ["n1", "n2", "n3"].map((name) => nodeInfo(name, { capacity: { vcpus: 8, memoryMb: 4096 } })),
    specs: new Map(
      entries.map(([name, vm]) => [
        name,
        vmSpec(name, {
          stickiness: vm.stickiness ?? 0,
          allowMigrate: vm.allowMigrate ?? true,
          state: vm.desired ?? "started",
        }),
      ]),
    ),
    placements: new Map(
      entries.flatMap(([name, vm]) => (vm.on ? [[name, placementOn(vm.on, vm.placement)] as const] : [])),
    ),
    statuses: new Map(
      entries.flatMap(([name, vm]) =>
        vm.on ? [[name, statusOn(vm.on, vm.state ?? "running")] as const] : [],
      ),
    ),
    requests: new Map(),
    incomings: new Map(),
    maintenance: new Set(),
    frozen: new Set(),
    migrationDefaults: DEFAULT_MIGRATION,
    rules: { constraints, nodeAttributes: new Map() },
    ...extra,
  };
}

const prefer = (vm: string, node: string, score: number): Constraint => ({
  type: "location",
  id: `prefer-${vm}-${node}`,
  vm,
  node,
  score,
});

/** The moves planned: "vm:from->to (live|cold)". */
function moves(actions: ControllerAction[]): string[] {
  return actions.flatMap((action) => {
    if (action.type !== "place" || !action.placement.migration) return [];
    const { from, to, kind } = action.placement.migration;
    return [`${action.vm}:${from}->${to} (${kind})`];
  });
}

describe("rebalancing", () => {
  test("a running guest moves live to the node its constraints prefer, with the scheduler's reason", () => {
    const actions = planController(view({ a: { on: "n1" } }, [prefer("a", "n2", 100)]));
    assert.deepEqual(moves(actions), ["a:n1->n2 (live)"]);
    const action = actions[0]!;
    assert.equal(action.type === "place" && action.decision, "migrating");
    assert.match(
      action.type === "place" ? action.event : "",
      /rebalancing: n2 scores 100, more than 0 on n1/,
    );
  });

  test("stickiness that outweighs the preference keeps it; one that does not, does not", () => {
    assert.deepEqual(
      moves(planController(view({ a: { on: "n1", stickiness: 100 } }, [prefer("a", "n2", 100)]))),
      [],
    );
    assert.deepEqual(
      moves(planController(view({ a: { on: "n1", stickiness: 99 } }, [prefer("a", "n2", 100)]))),
      ["a:n1->n2 (live)"],
    );
  });

  test("without constraints nothing moves, and a guest without constraints never moves", () => {
    assert.deepEqual(moves(planController(view({ a: { on: "n1" }, b: { on: "n1" } }, []))), []);
    const actions = planController(view({ a: { on: "n1" }, b: { on: "n1" } }, [prefer("a", "n2", 100)]));
    assert.deepEqual(moves(actions), ["a:n1->n2 (live)"]);
  });

  test("a guest without allow-migrate is moved cold", () => {
    const actions = planController(view({ a: { on: "n1", allowMigrate: false } }, [prefer("a", "n3", 50)]));
    assert.deepEqual(moves(actions), ["a:n1->n3 (cold)"]);
  });

  test("anti-affinity between two guests on one node: exactly one of them moves", () => {
    const apart: Constraint = { type: "colocation", id: "apart", vm: "b", withVm: "a", score: -1_000_000 };
    const actions = planController(view({ a: { on: "n1" }, b: { on: "n1" } }, [apart]));
    assert.equal(moves(actions).length, 1);
    assert.match(moves(actions)[0]!, /^[ab]:n1->n[23] \(live\)$/);
  });

  test("nothing is rebalanced while anything else changes: a migration, a request, a start, a failed node", () => {
    const constraints = [prefer("a", "n2", 100)];
    const migrating = placementOn("n1", {
      migration: {
        id: "m",
        kind: "live",
        from: "n1",
        to: "n3",
        generation: 2,
        settings: DEFAULT_MIGRATION,
        cancel: false,
        reason: "",
        startedAt: new Date(NOW).toISOString(),
      },
    });
    const busy = view({ a: { on: "n1" }, b: { on: "n1", placement: migrating } }, constraints);
    assert.deepEqual(
      moves(planController(busy)).filter((m) => m.startsWith("a:")),
      [],
    );
    const starting = view({ a: { on: "n1" }, c: {} }, constraints);
    assert.deepEqual(moves(planController(starting)), []);
    const lost = view({ a: { on: "n1" }, d: { on: "gone" } }, constraints);
    assert.deepEqual(moves(planController(lost)), []);
    const request: MigrationRequest = {
      id: "r",
      settings: DEFAULT_MIGRATION,
      cancel: false,
      reason: "",
      time: "",
    };
    const requested = view({ a: { on: "n1" }, b: { on: "n1" } }, constraints, {
      requests: new Map([["b", request]]),
    });
    assert.deepEqual(
      moves(planController(requested)).filter((m) => m.startsWith("a:")),
      [],
    );
  });

  test("a guest whose move failed lately is left alone for the hold time", () => {
    const constraints = [prefer("a", "n2", 100)];
    const endedAt = (ago: number) => ({ moveEndedAt: new Date(NOW - ago).toISOString() });
    const recent = view({ a: { on: "n1", placement: endedAt(60_000) } }, constraints);
    assert.deepEqual(moves(planController(recent)), []);
    const old = view({ a: { on: "n1", placement: endedAt(REBALANCE_HOLD_MS) } }, constraints);
    assert.deepEqual(moves(planController(old)), ["a:n1->n2 (live)"]);
  });

  test("moves stay within the cluster's migration limits", () => {
    const vms = Object.fromEntries(["a", "b", "c"].map((vm) => [vm, { on: "n1" }]));
    const constraints = ["a", "b", "c"].map((vm) => prefer(vm, "n2", 100));
    const limited = { migrationDefaults: { ...DEFAULT_MIGRATION, maxPerNode: 2 } };
    assert.equal(moves(planController(view(vms, constraints, limited))).length, 2);
  });

  test("a guest banned from its node with nowhere to go keeps running and is reported", () => {
    const bans: Constraint[] = ["n1", "n2", "n3"].map((node) => ({
      type: "location",
      id: `ban-${node}`,
      vm: "a",
      node,
      score: -1_000_000,
    }));
    const actions = planController(view({ a: { on: "n1" } }, bans));
    assert.deepEqual(moves(actions), []);
    const report = actions.find((action) => action.type === "unplaceable");
    assert.match(report?.type === "unplaceable" ? report.reason : "", /^keeps running on n1: cannot run/);
  });

  test("a user's move that rebalancing would undo is refused with the reason", () => {
    const request = (to: string): MigrationRequest => ({
      id: "r",
      to,
      settings: DEFAULT_MIGRATION,
      cancel: false,
      reason: "by user",
      time: "",
    });
    const constraints = [prefer("a", "n1", 100)];
    const refused = planController(
      view({ a: { on: "n1" } }, constraints, { requests: new Map([["a", request("n2")]]) }),
    );
    assert.equal(refused[0]?.type, "refuse-request");
    assert.match(
      refused[0]?.type === "refuse-request" ? refused[0].reason : "",
      /would move it off n2 again .*raise its stickiness/,
    );
    const sticky = view({ a: { on: "n1", stickiness: 200 } }, constraints, {
      requests: new Map([["a", request("n2")]]),
    });
    assert.deepEqual(moves(planController(sticky)), ["a:n1->n2 (live)"]);
  });

  test("vm explain shows the stickiness on the guest's node and what rebalancing does", () => {
    const v = view({ a: { on: "n1", stickiness: 30 } }, [prefer("a", "n2", 100)]);
    const explained = explainPlacement(v.specs.get("a")!, v, v.placements);
    const n1 = explained.nodes.find((n) => n.node === "n1")!;
    assert.equal(n1.score, 30);
    assert.deepEqual(
      n1.contributions.map((c) => c.source),
      ["stickiness"],
    );
    assert.match(explained.rebalance ?? "", /live-migrate to n2/);
    const stays = view({ a: { on: "n2" } }, [prefer("a", "n2", 100)]);
    assert.match(
      explainPlacement(stays.specs.get("a")!, stays, stays.placements).rebalance ?? "",
      /stays on n2/,
    );
  });
});

describe("start order", () => {
  const order = (kind: "mandatory" | "optional"): Constraint => ({
    type: "order",
    id: "db-then-web",
    first: "db",
    then: "web",
    kind,
  });
  const decisions = (v: ClusterView) =>
    planController(v).map((a) => `${a.vm}:${a.type === "unplaceable" && a.waiting ? "waiting" : a.type}`);

  test("a mandatory order starts `then` only once `first` runs", () => {
    assert.deepEqual(decisions(view({ db: {}, web: {} }, [order("mandatory")])), ["db:place", "web:waiting"]);
    assert.deepEqual(
      decisions(view({ db: { on: "n1", state: "starting" }, web: {} }, [order("mandatory")])),
      ["web:waiting"],
    );
    assert.deepEqual(decisions(view({ db: { on: "n1" }, web: {} }, [order("mandatory")])), ["web:place"]);
  });

  test("a mandatory order holds `then` while `first` is stopped; an optional one does not", () => {
    const stopped = { db: { desired: "stopped" as const }, web: {} };
    const held = planController(view(stopped, [order("mandatory")]));
    assert.match(
      held[0]?.type === "unplaceable" ? held[0].reason : "",
      /waits for db to run first .*db is stopped/,
    );
    assert.deepEqual(decisions(view(stopped, [order("optional")])), ["web:place"]);
    assert.deepEqual(decisions(view({ db: {}, web: {} }, [order("optional")])), ["db:place", "web:waiting"]);
  });

  test("a running `then` is left alone when `first` stops", () => {
    // Reported, not stopped: Haven never stops a running guest because of a constraint.
    assert.deepEqual(
      decisions(view({ db: { desired: "stopped" }, web: { on: "n2" } }, [order("mandatory")])),
      ["web:unplaceable"],
    );
  });

  test("orders that form a cycle are ignored, as the scheduler ignores them: both guests start", () => {
    const back: Constraint = {
      type: "order",
      id: "web-then-db",
      first: "web",
      then: "db",
      kind: "mandatory",
    };
    assert.deepEqual(decisions(view({ db: {}, web: {} }, [order("mandatory"), back])), [
      "db:place",
      "web:place",
    ]);
  });

  test("after a node failure `then` is recovered once `first` runs again", () => {
    const v = view({ db: { on: "n9" }, web: { on: "n9" } }, [order("mandatory")]);
    assert.deepEqual(decisions(v), ["db:recover", "web:waiting"]);
  });
});

describe("placement from the round's plan", () => {
  const apart: Constraint = { type: "colocation", id: "apart", vm: "a", withVm: "b", score: -1_000_000 };
  const choose = (v: ClusterView, planned: string) =>
    chooseNodeByRules(v.specs.get("a")!, candidateLoads(v, v.placements), v, v.placements, planned).node;

  test("the plan's node is taken when Haven's checks pass there", () => {
    assert.equal(choose(view({ a: {}, b: { on: "n1" } }, [apart]), "n3"), "n3");
  });

  test("a mandatory colocation with a guest placed meanwhile, or no room, sends it back to scoring", () => {
    assert.equal(choose(view({ a: {}, b: { on: "n2" } }, [apart]), "n2"), "n1");
    const full = view({ a: {}, b: { on: "n1" } }, [apart]);
    const tiny = {
      ...full,
      nodes: full.nodes.map((n) => (n.name === "n3" ? { ...n, capacity: { vcpus: 8, memoryMb: 64 } } : n)),
    };
    assert.equal(choose(tiny, "n3"), "n2");
  });
});
