// The scheduler's constraints: locations and rules, colocation and anti-affinity (pairs and sets,
// mandatory and scored), start order, and what it does with bad or contradictory input.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { explain } from "../../src/core/scheduler/scheduler.js";
import { INFINITY, MINUS_INFINITY } from "../../src/core/scheduler/scores.js";
import type { Constraint, Plan } from "../../src/core/scheduler/types.js";
import {
  actionOf,
  colocation,
  colocationSet,
  config,
  location,
  order,
  placement,
  plan,
  roomyNode as node,
  rule,
  runningOn,
  state,
  vm,
  type Setup,
} from "./scheduler-fixtures.js";

const unplaceable = (result: Plan) => result.unplaceable.map((entry) => entry.vm);

const threeNodes = [node("n1"), node("n2"), node("n3")];

describe("location constraints", () => {
  test("a positive score draws the guest to the node", () => {
    const result = plan({ vms: [vm("a")], nodes: threeNodes, constraints: [location("l", "a", "n3", 10)] });
    assert.equal(actionOf(result, "a")?.to, "n3");
    assert.match(actionOf(result, "a")!.reason, /score 10/);
  });

  test("-INFINITY bans a node even against +INFINITY stickiness", () => {
    const result = plan({
      vms: [vm("a", { stickiness: INFINITY })],
      nodes: threeNodes,
      constraints: [location("ban", "a", "n1", MINUS_INFINITY)],
      runtime: { a: runningOn("n1") },
    });
    assert.deepEqual(actionOf(result, "a"), {
      type: "migrate",
      vm: "a",
      from: "n1",
      to: "n2",
      reason: "n1: location ban (-INFINITY); live-migrate to n2 (score 0)",
    });
  });

  test("a negative score means cannot run there, as in Pacemaker", () => {
    const result = plan({
      vms: [vm("a")],
      nodes: [node("n1")],
      constraints: [location("avoid", "a", "n1", -10)],
    });
    assert.deepEqual(result.unplaceable, [
      { vm: "a", reason: "no node can take it (n1: score -10 is negative (avoid -10))" },
    ]);
  });

  test("+INFINITY on an offline node is a preference, not a requirement", () => {
    const result = plan({
      vms: [vm("a")],
      nodes: [node("n1", { online: false }), node("n2")],
      constraints: [location("must", "a", "n1", INFINITY)],
    });
    assert.equal(actionOf(result, "a")?.to, "n2");
  });
});

describe("location rules", () => {
  const nodes = [
    node("n1", { attributes: { hw: "vm", zone: "a" } }),
    node("n2", { attributes: { hw: "gpu", zone: "a" } }),
    node("n3", { attributes: { zone: "b" } }),
  ];

  test("a -INFINITY rule keeps a guest to matching nodes", () => {
    const result = plan({
      vms: [vm("a"), vm("b")],
      nodes,
      constraints: [rule("gpu-only", "a", "hw ne gpu", MINUS_INFINITY)],
    });
    assert.equal(actionOf(result, "a")?.to, "n2");
    const explanation = explain(
      config({ vms: [vm("a")], nodes, constraints: [rule("gpu-only", "a", "hw ne gpu", MINUS_INFINITY)] }),
      state({ vms: [], nodes, constraints: [] }),
      "a",
    );
    assert.deepEqual(explanation.nodes[2]!.contributions, [
      { source: "gpu-only", score: MINUS_INFINITY, detail: 'rule "hw ne gpu" of gpu-only holds (-INFINITY)' },
    ]);
  });

  test("scored rules add up with other constraints", () => {
    const result = plan({
      vms: [vm("a")],
      nodes,
      constraints: [
        rule("zone-a", "a", "zone eq a", 100),
        rule("not-n1", "a", "#uname ne n1 and defined hw", 50),
      ],
    });
    assert.equal(actionOf(result, "a")?.to, "n2");
    assert.match(actionOf(result, "a")!.reason, /score 150/);
  });
});

describe("colocation", () => {
  test("+INFINITY: the dependent runs where its partner runs", () => {
    const result = plan({
      vms: [vm("app"), vm("db")],
      nodes: threeNodes,
      constraints: [location("db-on-n3", "db", "n3", 10), colocation("app-with-db", "app", "db", INFINITY)],
    });
    assert.deepEqual(placement(result), { app: "n3", db: "n3" });
  });

  test("+INFINITY: the dependent cannot run while its partner cannot; the partner does not care", () => {
    const partnerDown = plan({
      vms: [vm("app"), vm("db", { state: "stopped" })],
      nodes: threeNodes,
      constraints: [colocation("app-with-db", "app", "db", INFINITY)],
    });
    assert.deepEqual(partnerDown.unplaceable, [
      { vm: "app", reason: "it must run with db (app-with-db), which will not run" },
    ]);
    const dependentBanned = plan({
      vms: [vm("app"), vm("db")],
      nodes: threeNodes,
      constraints: [
        rule("no-app", "app", "#uname ne nowhere", MINUS_INFINITY),
        colocation("c", "app", "db", INFINITY),
      ],
    });
    assert.deepEqual(unplaceable(dependentBanned), ["app"]);
    assert.equal(actionOf(dependentBanned, "db")?.type, "start");
  });

  test("-INFINITY: never together; with one node only the dependent gives way", () => {
    const spread = plan({
      vms: [vm("a"), vm("b")],
      nodes: threeNodes,
      constraints: [colocation("apart", "b", "a", MINUS_INFINITY)],
    });
    assert.notEqual(actionOf(spread, "a")?.to, actionOf(spread, "b")?.to);
    const crowded = plan({
      vms: [vm("a"), vm("b")],
      nodes: [node("n1")],
      constraints: [colocation("apart", "a", "b", MINUS_INFINITY)],
    });
    assert.deepEqual(
      placement(crowded),
      { b: "n1" },
      "b is the primary, placed first even though a sorts first",
    );
    assert.deepEqual(unplaceable(crowded), ["a"]);
  });

  test("a negative score keeps guests apart when it can, and is dropped when it would leave no node", () => {
    const spread = plan({
      vms: [vm("a"), vm("b")],
      nodes: [node("n1"), node("n2")],
      constraints: [colocation("apart", "b", "a", -100)],
    });
    assert.notEqual(actionOf(spread, "a")?.to, actionOf(spread, "b")?.to);
    const setup: Setup = {
      vms: [vm("a"), vm("b")],
      nodes: [node("n1")],
      constraints: [colocation("apart", "b", "a", -100)],
    };
    assert.deepEqual(placement(plan(setup)), { a: "n1", b: "n1" });
    assert.deepEqual(explain(config(setup), state(setup), "b").nodes[0]!.contributions, [
      { source: "apart", score: -100, detail: "a runs here (apart, -100)", ignored: true },
    ]);
  });

  test("a positive score draws guests together unless something outweighs it", () => {
    const together = plan({
      vms: [vm("a"), vm("b")],
      nodes: threeNodes,
      constraints: [colocation("near", "b", "a", 50)],
    });
    assert.equal(actionOf(together, "b")?.to, actionOf(together, "a")?.to);
    const outweighed = plan({
      vms: [vm("a"), vm("b")],
      nodes: threeNodes,
      constraints: [colocation("near", "b", "a", 50), location("b-n2", "b", "n2", 80)],
    });
    assert.equal(actionOf(outweighed, "b")?.to, "n2");
  });

  test("a recovered primary weighs where its dependents want to be (Pacemaker's answers)", () => {
    // n1 has the most free capacity; b, which must not run with a, runs there. With stickiness 0, b does not
    // mind moving, so a takes n1 and b moves; with stickiness 100, a takes in b's preference (-100 on n1,
    // at -INFINITY over INFINITY) and goes to n2.
    const setup = (stickiness: number): Setup => ({
      vms: [vm("a"), vm("b", { stickiness })],
      nodes: [
        node("n1", { capacity: { vcpus: 64, memoryMb: 131072 } }),
        node("n2"),
        node("n3", { online: false }),
      ],
      constraints: [colocation("apart", "b", "a", MINUS_INFINITY)],
      runtime: { a: runningOn("n3"), b: runningOn("n1") },
    });
    assert.deepEqual(placement(plan(setup(0))), { a: "n1", b: "n2" });
    const sticky = plan(setup(100));
    assert.deepEqual(actionOf(sticky, "a"), {
      type: "start",
      vm: "a",
      from: "n3",
      to: "n2",
      reason: "recovery: node n3 is offline; start on n2 (score 0)",
    });
    assert.equal(actionOf(sticky, "b")?.type, "keep");
    assert.deepEqual(explain(config(setup(100)), state(setup(100)), "a").nodes[0]!.contributions, [
      { source: "apart", score: -100, detail: "b runs with it (apart) and prefers this node (-100)" },
    ]);
  });

  test("the primary still wins a node only it can use; the running partner moves", () => {
    const result = plan({
      vms: [vm("a"), vm("b")],
      nodes: [node("n1"), node("n2")],
      constraints: [
        location("a-only-n1", "a", "n2", MINUS_INFINITY),
        colocation("apart", "b", "a", MINUS_INFINITY),
      ],
      runtime: { b: runningOn("n1") },
    });
    assert.deepEqual(placement(result), { a: "n1", b: "n2" });
    assert.equal(actionOf(result, "b")?.type, "migrate");
  });
});

describe("colocation sets", () => {
  test("-INFINITY spreads the members, one per node", () => {
    const result = plan({
      vms: ["a", "b", "c", "d"].map((name) => vm(name)),
      nodes: threeNodes,
      constraints: [colocationSet("spread", ["a", "b", "c", "d"], MINUS_INFINITY)],
    });
    assert.deepEqual(placement(result), { a: "n1", b: "n2", c: "n3" });
    assert.deepEqual(unplaceable(result), ["d"]);
    assert.match(
      result.unplaceable[0]!.reason,
      /n1: must not run with a \(spread\), which runs here; n2: must not run with b/,
    );
  });

  test("a scored set keeps each member away from those before it while that leaves it a node", () => {
    // Pacemaker's answer: b avoids a; c cannot avoid both a and b, so the second preference is left out;
    // d likewise.
    const result = plan({
      vms: ["a", "b", "c", "d"].map((name) => vm(name)),
      nodes: [node("n1"), node("n2")],
      constraints: [colocationSet("spread", ["a", "b", "c", "d"], -100)],
    });
    assert.deepEqual(placement(result), { a: "n1", b: "n2", c: "n2", d: "n2" });
  });

  test("+INFINITY keeps the members together", () => {
    const result = plan({
      vms: ["a", "b", "c"].map((name) => vm(name)),
      nodes: threeNodes,
      constraints: [colocationSet("together", ["a", "b", "c"], INFINITY), location("c-n3", "c", "n3", 10)],
    });
    assert.deepEqual(placement(result), { a: "n3", b: "n3", c: "n3" });
  });

  test("running members weigh through their stickiness (Pacemaker's answers)", () => {
    // a is assigned first, as the primary of b and c; it takes in b's wish to stay on n1 (-100 there) and,
    // along b, c's wish to stay on n2 — which c's own -INFINITY colocation with a then cancels out. So a
    // takes n2 (before n3 by name) and c moves.
    const setup = (stickiness: number): Setup => ({
      vms: ["a", "b", "c"].map((name) => vm(name, { stickiness })),
      nodes: threeNodes,
      constraints: [colocationSet("spread", ["a", "b", "c"], MINUS_INFINITY)],
      runtime: { b: runningOn("n1"), c: runningOn("n2") },
    });
    assert.deepEqual(placement(plan(setup(100))), { a: "n2", b: "n1", c: "n3" });
    assert.deepEqual(placement(plan(setup(0))), { a: "n1", b: "n2", c: "n3" });
  });
});

describe("order", () => {
  test("then starts after first when both start", () => {
    const result = plan({
      vms: [vm("web"), vm("db")],
      nodes: threeNodes,
      constraints: [order("db-first", "db", "web")],
    });
    assert.deepEqual(
      result.actions.map((action) => [action.vm, action.after]),
      [
        ["db", undefined],
        ["web", ["db"]],
      ],
    );
  });

  test("a first that already runs is not waited for", () => {
    const result = plan({
      vms: [vm("web"), vm("db")],
      nodes: threeNodes,
      constraints: [order("db-first", "db", "web")],
      runtime: { db: runningOn("n1") },
    });
    assert.equal(actionOf(result, "web")?.after, undefined);
  });

  test("mandatory: then does not run while first cannot; optional: it runs anyway", () => {
    const vms = [vm("web"), vm("db", { state: "stopped" })];
    const mandatory = plan({ vms, nodes: threeNodes, constraints: [order("db-first", "db", "web")] });
    assert.deepEqual(mandatory.unplaceable, [
      { vm: "web", reason: "db must run first (db-first), and it will not run" },
    ]);
    const optional = plan({
      vms,
      nodes: threeNodes,
      constraints: [order("db-first", "db", "web", "optional")],
    });
    assert.equal(actionOf(optional, "web")?.type, "start");
  });

  test("explain lists what blocks a guest, and no node is eligible", () => {
    const setup: Setup = {
      vms: [vm("web"), vm("db", { state: "stopped" })],
      nodes: threeNodes,
      constraints: [order("db-first", "db", "web")],
    };
    const explanation = explain(config(setup), state(setup), "web");
    assert.deepEqual(explanation.blockers, ["db must run first (db-first), and it will not run"]);
    assert.equal(explanation.chosen, null);
    assert.equal(explanation.nodes.length, 3);
    assert.ok(explanation.nodes.every((row) => !row.eligible && row.total === 0));
  });
});

describe("bad input", () => {
  const problems = (constraints: Constraint[], vms = [vm("a"), vm("b")]) => {
    const result = plan({ vms, nodes: threeNodes, constraints });
    assert.equal(
      result.actions.length,
      vms.filter((guest) => guest.state === "started").length,
      "guests still get placed",
    );
    return result.problems;
  };

  test("references to unknown VMs and nodes are reported and ignored", () => {
    assert.deepEqual(
      problems([
        location("l1", "ghost", "n1", 10),
        location("l2", "a", "n9", INFINITY),
        colocation("c1", "a", "ghost", INFINITY),
        order("o1", "ghost", "a"),
      ]),
      [
        { constraint: "l1", message: "l1: unknown VM ghost; the constraint is ignored" },
        { constraint: "l2", message: "l2: unknown node n9; the constraint is ignored" },
        { constraint: "c1", message: "c1: unknown VM ghost; the constraint is ignored" },
        { constraint: "o1", message: "o1: unknown VM ghost; the constraint is ignored" },
      ],
    );
  });

  test("scores out of range are reported and ignored", () => {
    assert.deepEqual(problems([location("huge", "a", "n1", 2_000_000), colocation("odd", "a", "b", 0.5)]), [
      {
        constraint: "huge",
        message:
          "huge: score 2000000 is out of range (-INFINITY..INFINITY, INFINITY = 1000000); the constraint is ignored",
      },
      { constraint: "odd", message: "odd: score 0.5 is not an integer; the constraint is ignored" },
    ]);
  });

  test("bad rules, self references and duplicate ids are reported", () => {
    const reported = problems([
      rule("r1", "a", "hw eq", 10),
      colocation("self", "a", "a", 10),
      order("loop", "a", "a"),
      location("dup", "a", "n1", 1),
      location("dup", "b", "n1", 1),
    ]);
    assert.deepEqual(
      reported.map((problem) => problem.constraint),
      ["r1", "self", "loop", "dup"],
    );
    assert.match(reported[0]!.message, /rule "hw eq": expected a value/);
    assert.match(reported[3]!.message, /used twice/);
  });

  test("a set keeps its known members", () => {
    const result = plan({
      vms: [vm("a"), vm("b")],
      nodes: threeNodes,
      constraints: [colocationSet("s", ["a", "ghost", "b"], MINUS_INFINITY)],
    });
    assert.deepEqual(result.problems, [
      { constraint: "s", message: "s: unknown VM ghost left out of the set" },
    ]);
    assert.notEqual(actionOf(result, "a")?.to, actionOf(result, "b")?.to);
  });

  test("duplicate guests and nodes are reported; the first one counts", () => {
    const result = plan({
      vms: [vm("a"), vm("a", { memoryMb: 999_999 })],
      nodes: [node("n1"), node("n1", { online: false })],
      constraints: [],
    });
    assert.deepEqual(
      result.problems.map((problem) => problem.message),
      ["node n1 is listed twice; the first is used", "VM a is listed twice; the first is used"],
    );
    assert.deepEqual(placement(result), { a: "n1" });
  });

  test("invalid resources make a guest unplaceable instead of breaking the plan", () => {
    const result = plan({
      vms: [vm("a", { memoryMb: Number.NaN }), vm("b")],
      nodes: threeNodes,
      constraints: [],
    });
    assert.deepEqual(unplaceable(result), ["a"]);
    assert.match(result.problems[0]!.message, /VM a: needs an invalid amount/);
  });

  test("a stickiness beyond the range is clamped; a priority that is not a number counts as 0", () => {
    const result = plan({
      vms: [vm("a", { stickiness: 5_000_000 }), vm("b", { priority: Number.NaN })],
      nodes: threeNodes,
      constraints: [],
      runtime: { a: runningOn("n2") },
    });
    assert.deepEqual(
      result.problems.map((problem) => problem.message),
      [
        "VM a: stickiness 5000000 is not a score; 1000000 is used",
        "VM b: priority NaN is not a number; 0 is used",
      ],
    );
    assert.match(actionOf(result, "a")!.reason, /score INFINITY/);
  });
});

describe("contradictions", () => {
  test("mandatory colocation and anti-affinity of the same pair: reported, -INFINITY wins, no loop", () => {
    // As in Pacemaker: a is assigned after b (its primary), whose +INFINITY colocation with a is skipped in
    // the loop, so both run, apart.
    const result = plan({
      vms: [vm("a"), vm("b")],
      nodes: threeNodes,
      constraints: [colocation("with", "b", "a", INFINITY), colocation("apart", "a", "b", MINUS_INFINITY)],
    });
    assert.deepEqual(result.problems, [
      {
        constraint: "apart",
        message: "apart (-INFINITY) contradicts with (INFINITY) for a and b; -INFINITY wins",
      },
    ]);
    assert.deepEqual(placement(result), { a: "n2", b: "n1" });
  });

  test("a set contradicting a pair is reported too", () => {
    const result = plan({
      vms: [vm("a"), vm("b"), vm("c")],
      nodes: threeNodes,
      constraints: [
        colocationSet("spread", ["a", "b", "c"], MINUS_INFINITY),
        colocation("pair", "c", "a", INFINITY),
      ],
    });
    assert.deepEqual(
      result.problems.map((problem) => problem.constraint),
      ["pair"],
    );
  });

  test("+INFINITY and -INFINITY for the same node: reported, the node is banned", () => {
    const result = plan({
      vms: [vm("a")],
      nodes: threeNodes,
      constraints: [location("want", "a", "n1", INFINITY), location("ban", "a", "n1", MINUS_INFINITY)],
    });
    assert.equal(result.problems[0]!.constraint, "ban");
    assert.notEqual(actionOf(result, "a")?.to, "n1");
  });

  test("order cycles are reported and ignored; every guest still starts", () => {
    const result = plan({
      vms: [vm("a"), vm("b"), vm("c"), vm("d")],
      nodes: threeNodes,
      constraints: [
        order("ab", "a", "b"),
        order("bc", "b", "c"),
        order("ca", "c", "a"),
        order("cd", "c", "d"),
      ],
    });
    assert.deepEqual(
      result.problems.map((problem) => problem.constraint),
      ["ab", "bc", "ca"],
    );
    assert.match(result.problems[0]!.message, /cycle/);
    assert.equal(result.actions.filter((action) => action.type === "start").length, 4);
    assert.deepEqual(actionOf(result, "d")?.after, ["c"], "the order outside the cycle still holds");
  });

  test("colocation cycles are fine: each guest follows the other", () => {
    const result = plan({
      vms: [vm("a"), vm("b")],
      nodes: threeNodes,
      constraints: [colocation("ab", "a", "b", INFINITY), colocation("ba", "b", "a", INFINITY)],
    });
    assert.deepEqual(result.problems, []);
    assert.equal(actionOf(result, "a")?.to, actionOf(result, "b")?.to);
  });

  test("long dependency chains do not overflow the stack", () => {
    const count = 5000;
    const vms = Array.from({ length: count }, (_, i) => vm(`v${i}`, { memoryMb: 1 }));
    const constraints: Constraint[] = vms
      .slice(1)
      .flatMap((guest, i) => [
        colocation(`c${i}`, `v${i}`, guest.name, INFINITY),
        order(`o${i}`, guest.name, `v${i}`),
      ]);
    const result = plan({
      vms,
      nodes: [node("n1", { capacity: { vcpus: count, memoryMb: 1_000_000 } }), node("n2")],
      constraints,
    });
    assert.equal(new Set(Object.values(placement(result))).size, 1);
    assert.equal(result.unplaceable.length, 0);
  });
});
