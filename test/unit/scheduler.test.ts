// The scheduler's placement rules: free memory, capacity, priority, stickiness, failures, standby and
// offline nodes, stopped guests, the order of a plan, determinism and `explain`.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { HavenError } from "../../src/core/errors.js";
import { explain } from "../../src/core/scheduler/scheduler.js";
import { INFINITY, MINUS_INFINITY } from "../../src/core/scheduler/scores.js";
import type { Constraint, VmFailures } from "../../src/core/scheduler/types.js";
import { seededRandom } from "../seeded-random.js";
import {
  actionOf,
  config,
  node,
  placement,
  plan,
  runningOn,
  state,
  vm,
  type Setup,
} from "./scheduler-fixtures.js";

describe("placing new guests", () => {
  test("a new guest starts on the node with the most free memory", () => {
    const result = plan({
      vms: [vm("a")],
      nodes: [node("n1"), node("n2", { capacity: { vcpus: 8, memoryMb: 16384 } })],
    });
    assert.deepEqual(actionOf(result, "a"), {
      type: "start",
      vm: "a",
      to: "n2",
      reason: "start on n2, the best node (score 0)",
    });
  });

  test("equal nodes are chosen by name, whatever order they are listed in", () => {
    const result = plan({ vms: [vm("a")], nodes: [node("n3"), node("n1"), node("n2")] });
    assert.equal(actionOf(result, "a")?.to, "n1");
  });

  test("guests spread by free memory as they are placed", () => {
    const result = plan({
      vms: ["a", "b", "c", "d"].map((name) => vm(name)),
      nodes: [node("n1"), node("n2")],
    });
    assert.deepEqual(placement(result), { a: "n1", b: "n2", c: "n1", d: "n2" });
  });

  test("a newcomer placed before a running guest does not count the running guest's room", () => {
    // The newcomer has the higher priority, so it is assigned first and takes n1 (equal nodes: the earlier
    // name). Pacemaker then moves the running guest to n2, which has more room left (both score 0); Haven
    // keeps a running guest on its node when no node scores higher.
    const result = plan({
      vms: [vm("old", { memoryMb: 4096 }), vm("new", { priority: 5 })],
      nodes: [node("n1"), node("n2")],
      runtime: { old: runningOn("n1") },
    });
    assert.deepEqual(placement(result), { new: "n1", old: "n1" });
    assert.equal(actionOf(result, "old")?.type, "keep");
  });
});

describe("capacity", () => {
  test("vCPUs are never overcommitted", () => {
    const result = plan({
      vms: ["a", "b", "c"].map((name) => vm(name, { vcpus: 2 })),
      nodes: [node("n1", { capacity: { vcpus: 4, memoryMb: 65536 } })],
    });
    assert.deepEqual(placement(result), { a: "n1", b: "n1" });
    assert.equal(result.unplaceable.length, 1);
    assert.equal(result.unplaceable[0]!.vm, "c");
    assert.match(result.unplaceable[0]!.reason, /n1: not enough free capacity for 2 vCPUs and 1024 MB/);
  });

  test("memory is never overcommitted", () => {
    const result = plan({
      vms: [vm("a", { memoryMb: 3000 }), vm("b", { memoryMb: 3000 }), vm("c", { memoryMb: 2000 })],
      nodes: [node("n1", { capacity: { vcpus: 64, memoryMb: 5000 } })],
    });
    assert.deepEqual(placement(result), { a: "n1", c: "n1" });
    assert.deepEqual(
      result.unplaceable.map((entry) => entry.vm),
      ["b"],
    );
  });

  test("a random cluster never ends up over capacity on any node", () => {
    const random = seededRandom(7);
    const nodes = Array.from({ length: 12 }, (_, i) =>
      node(`n${i}`, {
        capacity: { vcpus: 8 + Math.floor(random() * 24), memoryMb: 8192 * (1 + Math.floor(random() * 4)) },
      }),
    );
    const vms = Array.from({ length: 400 }, (_, i) =>
      vm(`v${i}`, {
        vcpus: 1 + Math.floor(random() * 4),
        memoryMb: 512 * (1 + Math.floor(random() * 8)),
        priority: Math.floor(random() * 3),
        stickiness: 100,
      }),
    );
    const runtime = Object.fromEntries(
      vms
        .filter(() => random() < 0.5)
        .map((guest) => [guest.name, runningOn(`n${Math.floor(random() * 12)}`)]),
    );
    const result = plan({ vms, nodes, runtime });
    const used = new Map<string, { vcpus: number; memoryMb: number }>();
    for (const action of result.actions) {
      if (!action.to) continue;
      const guest = vms.find((candidate) => candidate.name === action.vm)!;
      const sum = used.get(action.to) ?? { vcpus: 0, memoryMb: 0 };
      used.set(action.to, { vcpus: sum.vcpus + guest.vcpus, memoryMb: sum.memoryMb + guest.memoryMb });
    }
    for (const target of nodes) {
      const sum = used.get(target.name) ?? { vcpus: 0, memoryMb: 0 };
      assert.ok(sum.vcpus <= target.capacity.vcpus, `${target.name} vCPUs ${sum.vcpus}`);
      assert.ok(sum.memoryMb <= target.capacity.memoryMb, `${target.name} memory ${sum.memoryMb}`);
    }
    assert.ok(result.unplaceable.length > 0, "the workload is meant to exceed the cluster");
    const decided = result.actions.filter((action) => action.to).length + result.unplaceable.length;
    assert.equal(decided, vms.length, "every guest is placed or explained");
  });
});

describe("priority", () => {
  test("a higher priority wins contested room", () => {
    const result = plan({
      vms: [vm("a"), vm("b", { priority: 5 })],
      nodes: [node("n1", { capacity: { vcpus: 1, memoryMb: 8192 } })],
    });
    assert.deepEqual(placement(result), { b: "n1" });
    assert.equal(result.unplaceable[0]!.vm, "a");
  });

  test("a higher-priority guest displaces a lower-priority running one, which moves elsewhere", () => {
    const result = plan({
      vms: [vm("low"), vm("high", { memoryMb: 2048, priority: 10 })],
      nodes: [
        node("n1", { capacity: { vcpus: 8, memoryMb: 2048 } }),
        node("n2", { capacity: { vcpus: 8, memoryMb: 1024 } }),
      ],
      runtime: { low: runningOn("n1") },
    });
    assert.equal(actionOf(result, "high")?.to, "n1");
    assert.deepEqual(actionOf(result, "low"), {
      type: "migrate",
      vm: "low",
      from: "n1",
      to: "n2",
      reason: "n1: not enough free capacity for 1 vCPUs and 1024 MB; live-migrate to n2 (score 0)",
    });
  });

  test("a displaced guest with nowhere to go is stopped", () => {
    const result = plan({
      vms: [vm("low"), vm("high", { memoryMb: 2048, priority: 10 })],
      nodes: [node("n1", { capacity: { vcpus: 8, memoryMb: 2048 } })],
      runtime: { low: runningOn("n1") },
    });
    assert.deepEqual(
      result.actions.map((action) => [action.type, action.vm]),
      [
        ["stop", "low"],
        ["start", "high"],
      ],
    );
    assert.match(actionOf(result, "low")!.reason, /^cannot run: no node can take it/);
  });

  test("an equal priority never displaces a running guest", () => {
    const result = plan({
      vms: [vm("running"), vm("newcomer", { memoryMb: 2048 })],
      nodes: [node("n1", { capacity: { vcpus: 8, memoryMb: 2048 } })],
      runtime: { running: runningOn("n1") },
    });
    assert.equal(actionOf(result, "running")?.type, "keep");
    assert.equal(result.unplaceable[0]!.vm, "newcomer");
  });
});

describe("stickiness", () => {
  const nodes = [node("n1"), node("n2")];
  const prefersN2 = (score: number): Constraint => ({
    type: "location",
    id: "likes-n2",
    vm: "a",
    node: "n2",
    score,
  });

  test("a running guest stays while stickiness outweighs a better node", () => {
    const result = plan({
      vms: [vm("a", { stickiness: 100 })],
      nodes,
      constraints: [prefersN2(50)],
      runtime: { a: runningOn("n1") },
    });
    assert.deepEqual(actionOf(result, "a"), {
      type: "keep",
      vm: "a",
      to: "n1",
      reason: "stays on n1 (score 100)",
    });
  });

  test("it live-migrates when the better node outweighs stickiness", () => {
    const result = plan({
      vms: [vm("a", { stickiness: 100 })],
      nodes,
      constraints: [prefersN2(200)],
      runtime: { a: runningOn("n1") },
    });
    assert.deepEqual(actionOf(result, "a"), {
      type: "migrate",
      vm: "a",
      from: "n1",
      to: "n2",
      reason: "n2 scores 200, more than 100 on n1; live-migrate to n2 (score 200)",
    });
  });

  test("without allow-migrate it moves by stop and start", () => {
    const result = plan({
      vms: [vm("a", { stickiness: 100, allowMigrate: false })],
      nodes,
      constraints: [prefersN2(200)],
      runtime: { a: runningOn("n1") },
    });
    assert.equal(actionOf(result, "a")?.type, "move");
    assert.match(actionOf(result, "a")!.reason, /stop and start on n2 .*allow-migrate is off/);
  });

  test("on equal scores a running guest stays, even with stickiness 0 and more room elsewhere", () => {
    const result = plan({
      vms: [vm("a"), vm("b")],
      nodes,
      runtime: { a: runningOn("n1"), b: runningOn("n1") },
    });
    assert.deepEqual(placement(result), { a: "n1", b: "n1" });
    assert.ok(result.actions.every((action) => action.type === "keep"));
  });
});

describe("migration-threshold and failure-timeout", () => {
  const nodes = [node("n1"), node("n2")];
  const failures = (count: number, lastFailureMs = 0): VmFailures[] => [{ node: "n1", count, lastFailureMs }];

  test("a node where the guest failed migration-threshold times is banned", () => {
    const result = plan({
      vms: [vm("a", { migrationThreshold: 3, stickiness: 100 })],
      nodes,
      runtime: { a: runningOn("n1", failures(3)) },
    });
    assert.deepEqual(actionOf(result, "a"), {
      type: "migrate",
      vm: "a",
      from: "n1",
      to: "n2",
      reason: "n1: 3 failures reached migration-threshold 3; live-migrate to n2 (score 0)",
    });
  });

  test("fewer failures, or a threshold of 0, leave the node allowed", () => {
    for (const [count, threshold] of [
      [2, 3],
      [50, 0],
    ] as const) {
      const result = plan({
        vms: [vm("a", { migrationThreshold: threshold })],
        nodes,
        runtime: { a: runningOn("n1", failures(count)) },
      });
      assert.equal(actionOf(result, "a")?.type, "keep", `${count} failures, threshold ${threshold}`);
    }
  });

  test("failures older than failure-timeout are forgotten", () => {
    const setup = (nowMs: number): Setup => ({
      vms: [vm("a", { migrationThreshold: 1, failureTimeoutS: 60 })],
      nodes,
      runtime: { a: runningOn("n1", failures(1, 1_000)) },
      nowMs,
    });
    assert.equal(actionOf(plan(setup(60_999)), "a")?.type, "migrate");
    assert.equal(actionOf(plan(setup(61_000)), "a")?.type, "keep");
  });

  test("a guest that is not running avoids the banned node too", () => {
    const result = plan({
      vms: [vm("a", { migrationThreshold: 1 })],
      nodes,
      runtime: { a: { node: null, running: false, failures: failures(1) } },
    });
    assert.equal(actionOf(result, "a")?.to, "n2");
  });
});

describe("standby and offline nodes", () => {
  test("a standby node takes no new guests", () => {
    const result = plan({ vms: [vm("a"), vm("b")], nodes: [node("n1", { standby: true }), node("n2")] });
    assert.deepEqual(placement(result), { a: "n2", b: "n2" });
  });

  test("guests leave a standby node: live when allowed, else by stop and start", () => {
    const result = plan({
      vms: [vm("a", { stickiness: INFINITY }), vm("b", { allowMigrate: false })],
      nodes: [node("n1", { standby: true }), node("n2")],
      runtime: { a: runningOn("n1"), b: runningOn("n1") },
    });
    assert.deepEqual(actionOf(result, "a"), {
      type: "migrate",
      vm: "a",
      from: "n1",
      to: "n2",
      reason: "n1: in standby; live-migrate to n2 (score 0)",
    });
    assert.equal(actionOf(result, "b")?.type, "move");
  });

  test("a guest of an offline node is recovered elsewhere with a start", () => {
    const result = plan({
      vms: [vm("a")],
      nodes: [node("n1", { online: false }), node("n2")],
      runtime: { a: runningOn("n1") },
    });
    assert.deepEqual(actionOf(result, "a"), {
      type: "start",
      vm: "a",
      from: "n1",
      to: "n2",
      reason: "recovery: node n1 is offline; start on n2 (score 0)",
    });
  });

  test("a guest placed on a node nobody knows any more is recovered too", () => {
    const result = plan({ vms: [vm("a")], nodes: [node("n2")], runtime: { a: runningOn("old") } });
    assert.match(actionOf(result, "a")!.reason, /^recovery: node old is gone; start on n2/);
  });

  test("a placed guest that is not running is started where it is placed", () => {
    const result = plan({
      vms: [vm("a")],
      nodes: [node("n1"), node("n2", { capacity: { vcpus: 64, memoryMb: 65536 } })],
      runtime: { a: { node: "n1", running: false, failures: [] } },
    });
    assert.equal(actionOf(result, "a")?.to, "n2", "not running: no stickiness, so the roomier node wins");
    assert.equal(
      actionOf(result, "a")!.reason,
      "n2 and n1 both score 0; n2 has more free capacity; start on n2 (score 0)",
    );
  });

  test("a guest that can run nowhere says why, node by node", () => {
    const result = plan({
      vms: [vm("a")],
      nodes: [node("n1", { online: false }), node("n2", { standby: true }), node("n3", { online: false })],
    });
    assert.deepEqual(result.unplaceable, [
      { vm: "a", reason: "no node can take it (n1, n3: offline; n2: in standby)" },
    ]);
    assert.deepEqual(result.actions, []);
  });

  test("an empty cluster is reported as such", () => {
    assert.deepEqual(plan({ vms: [vm("a")], nodes: [] }).unplaceable, [
      { vm: "a", reason: "no nodes are known" },
    ]);
  });
});

describe("stopped guests", () => {
  test("a running guest whose target state is stopped is stopped", () => {
    const result = plan({
      vms: [vm("a", { state: "stopped" }), vm("b", { state: "stopped" })],
      nodes: [node("n1")],
      runtime: { a: runningOn("n1") },
    });
    assert.deepEqual(result.actions, [
      { type: "stop", vm: "a", from: "n1", reason: "target state is stopped" },
    ]);
    assert.deepEqual(result.unplaceable, [], "a stopped guest is not unplaceable");
  });
});

describe("the plan", () => {
  test("lists stops, then migrations, moves, starts and guests that stay", () => {
    const result = plan({
      vms: [
        vm("keep"),
        vm("start"),
        vm("stop", { state: "stopped" }),
        vm("migrate"),
        vm("move", { allowMigrate: false }),
      ],
      nodes: [node("n1", { standby: true }), node("n2")],
      runtime: {
        keep: runningOn("n2"),
        stop: runningOn("n2"),
        migrate: runningOn("n1"),
        move: runningOn("n1"),
      },
    });
    assert.deepEqual(
      result.actions.map((action) => action.type),
      ["stop", "migrate", "move", "start", "keep"],
    );
  });

  test("the same input in another order gives the same plan", () => {
    const random = seededRandom(11);
    const nodes = Array.from({ length: 6 }, (_, i) => node(`n${i}`, { attributes: { rack: `r${i % 2}` } }));
    const vms = Array.from({ length: 60 }, (_, i) =>
      vm(`v${i}`, { priority: i % 3, memoryMb: 512 * (1 + (i % 4)) }),
    );
    const constraints: Constraint[] = vms.flatMap((guest, i) => [
      { type: "location-rule", id: `rack-${i}`, vm: guest.name, rule: `rack eq r${i % 2}`, score: 10 },
      ...(i % 3 === 2
        ? [
            {
              type: "colocation" as const,
              id: `apart-${i}`,
              vm: guest.name,
              withVm: `v${i - 1}`,
              score: MINUS_INFINITY,
            },
          ]
        : []),
    ]);
    const runtime = Object.fromEntries(
      vms.filter((_, i) => i % 4 === 0).map((guest) => [guest.name, runningOn("n1")]),
    );
    const first = plan({ vms, nodes, constraints, runtime });
    const shuffle = <T>(items: T[]) => [...items].sort(() => random() - 0.5);
    const second = plan({ vms: shuffle(vms), nodes: shuffle(nodes), constraints, runtime });
    assert.deepEqual(second, first);
    assert.deepEqual(plan({ vms, nodes, constraints, runtime }), first);
  });
});

describe("explain", () => {
  const setup: Setup = {
    vms: [vm("db"), vm("web", { stickiness: 100 })],
    nodes: [node("n1"), node("n2", { standby: true }), node("n3")],
    constraints: [
      { type: "location", id: "web-likes-n3", vm: "web", node: "n3", score: 50 },
      { type: "colocation", id: "web-apart-db", vm: "web", withVm: "db", score: MINUS_INFINITY },
    ],
    runtime: { db: runningOn("n3"), web: runningOn("n1") },
  };

  test("shows each node's score with its contributions and the verdict", () => {
    const explanation = explain(config(setup), state(setup), "web");
    assert.equal(explanation.chosen, "n1");
    assert.equal(explanation.verdict, "stays on n1 (score 100)");
    assert.deepEqual(explanation.action, {
      type: "keep",
      vm: "web",
      to: "n1",
      reason: "stays on n1 (score 100)",
    });
    assert.deepEqual(
      explanation.nodes.map((row) => [row.node, row.total, row.eligible]),
      [
        ["n1", 100, true],
        ["n2", MINUS_INFINITY, false],
        ["n3", MINUS_INFINITY, false],
      ],
    );
    assert.deepEqual(explanation.nodes[0]!.contributions, [
      { source: "stickiness", score: 100, detail: "runs here now" },
    ]);
    assert.deepEqual(explanation.nodes[1]!.contributions, [
      { source: "standby", score: MINUS_INFINITY, detail: "in standby" },
    ]);
    assert.deepEqual(explanation.nodes[2]!.contributions, [
      { source: "web-likes-n3", score: 50, detail: "location web-likes-n3 (50)" },
      {
        source: "web-apart-db",
        score: MINUS_INFINITY,
        detail: "must not run with db (web-apart-db), which runs here",
      },
    ]);
    assert.deepEqual(explanation.nodes[0]!.free, { vcpus: 8, memoryMb: 8192 });
    assert.deepEqual(explanation.nodes[2]!.free, { vcpus: 7, memoryMb: 7168 }, "db is placed before web");
  });

  test("explains a guest that cannot run", () => {
    const blocked: Setup = { ...setup, nodes: [node("n3")] };
    const explanation = explain(config(blocked), state(blocked), "web");
    assert.equal(explanation.chosen, null);
    assert.equal(explanation.action, null);
    assert.match(explanation.verdict, /n3: must not run with db/);
  });

  test("a stopped guest is not scored", () => {
    const stopped: Setup = { ...setup, vms: [vm("db"), vm("web", { state: "stopped" })] };
    const explanation = explain(config(stopped), state(stopped), "web");
    assert.equal(explanation.verdict, "target state is stopped");
    assert.deepEqual(explanation.nodes, []);
    assert.equal(explanation.action?.type, "stop");
  });

  test("an unknown guest is a not-found error", () => {
    assert.throws(
      () => explain(config(setup), state(setup), "nope"),
      (error: unknown) => error instanceof HavenError && error.code === "NOT_FOUND",
    );
  });
});
