// One minimal configuration per way Haven's placement used to differ from Pacemaker's, each with the answer
// Pacemaker 2.1.5 gives (crm_simulate: where each guest runs, and the allocation scores it printed). The
// differential test (test/integration/pacemaker-differential.test.ts) checks the same on random ones.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { explain } from "../../src/core/scheduler/scheduler.js";
import { INFINITY, MINUS_INFINITY } from "../../src/core/scheduler/scores.js";
import type { PlacementStrategy } from "../../src/core/scheduler/types.js";
import {
  actionOf,
  colocation,
  config,
  location,
  node as fixtureNode,
  placement,
  plan,
  roomyNode as node,
  runningOn,
  state,
  vm,
  type Setup,
} from "./scheduler-fixtures.js";

const withMemory = (name: string, memoryMb: number) =>
  fixtureNode(name, { capacity: { vcpus: 64, memoryMb } });
/** Each guest's score per node at its turn, as crm_simulate --show-scores prints them. */
const scores = (setup: Setup, name: string) =>
  Object.fromEntries(explain(config(setup), state(setup), name).nodes.map((row) => [row.node, row.total]));
const planned = (setup: Setup) => placement(plan(setup));

describe("a primary takes in the preferences of the guests that follow it", () => {
  test("+INFINITY: the dependent's ban becomes the primary's, so both run", () => {
    // a must run with b and may not run on n1; b prefers n1. Pacemaker places b on n2 (-INFINITY from a on
    // n1); Haven used to put b on n1 and leave a stopped.
    const setup: Setup = {
      vms: [vm("a"), vm("b")],
      nodes: [node("n1"), node("n2")],
      constraints: [
        colocation("ab", "a", "b", INFINITY),
        location("no-a", "a", "n1", MINUS_INFINITY),
        location("b-n1", "b", "n1", 100),
      ],
    };
    assert.deepEqual(planned(setup), { a: "n2", b: "n2" });
    assert.deepEqual(scores(setup, "b"), { n1: MINUS_INFINITY, n2: 0 });
  });

  test("along a chain: c follows b, which follows a", () => {
    const setup: Setup = {
      vms: [vm("a"), vm("b"), vm("c")],
      nodes: [node("n1"), node("n2"), node("n3")],
      constraints: [
        colocation("ab", "a", "b", INFINITY),
        colocation("bc", "b", "c", INFINITY),
        location("no-a", "a", "n1", MINUS_INFINITY),
        location("c-n1", "c", "n1", 100),
        location("a-n3", "a", "n3", MINUS_INFINITY),
      ],
    };
    assert.deepEqual(planned(setup), { a: "n2", b: "n2", c: "n2" });
    assert.deepEqual(scores(setup, "c"), { n1: MINUS_INFINITY, n2: 0, n3: MINUS_INFINITY });
  });

  test("a finite colocation scales them by its score over INFINITY", () => {
    // b (with a, 500000) would rather run on n2 (1000): a takes in 500 of it and goes to n2 over its own 400
    // on n1; b then has 1000 + 500000 there.
    const setup: Setup = {
      vms: [vm("a"), vm("b")],
      nodes: [node("n1"), node("n2")],
      constraints: [
        colocation("ba", "b", "a", 500_000),
        location("b-n2", "b", "n2", 1000),
        location("a-n1", "a", "n1", 400),
      ],
    };
    assert.deepEqual(scores(setup, "a"), { n1: 400, n2: 500 });
    assert.deepEqual(scores(setup, "b"), { n1: 0, n2: 501_000 });
    assert.deepEqual(planned(setup), { a: "n2", b: "n2" });
  });
});

describe("a running partner does not pull a guest with the colocation's full score", () => {
  test("the primary's own preference wins over a running dependent without stickiness", () => {
    // b (with a, 100) runs on n1; a prefers n2 (50). Pacemaker assigns a first, with b's 0 everywhere at
    // 100/INFINITY: a goes to n2 and b follows. Haven used to give a +100 on n1 for b running there.
    const setup: Setup = {
      vms: [vm("a"), vm("b")],
      nodes: [node("n1"), node("n2")],
      constraints: [colocation("ba", "b", "a", 100), location("a-n2", "a", "n2", 50)],
      runtime: { b: runningOn("n1") },
    };
    assert.deepEqual(planned(setup), { a: "n2", b: "n2" });
    assert.deepEqual(scores(setup, "b"), { n1: 0, n2: 100 });
  });
});

describe("+INFINITY colocation", () => {
  test("takes -INFINITY on every other node and adds nothing on the partner's, so -100 there still bans", () => {
    const setup: Setup = {
      vms: [vm("a"), vm("b")],
      nodes: [node("n1"), node("n2")],
      constraints: [
        colocation("ab", "a", "b", INFINITY),
        location("a-n1", "a", "n1", -100),
        location("b-n1", "b", "n1", 1000),
      ],
    };
    assert.deepEqual(planned(setup), { b: "n1" });
    assert.deepEqual(scores(setup, "a"), { n1: -100, n2: MINUS_INFINITY });
    assert.deepEqual(scores(setup, "b"), { n1: 900, n2: 0 });
  });
});

describe("rules", () => {
  test("compare values without regard to case", () => {
    const setup: Setup = {
      vms: [vm("a")],
      nodes: [node("n1", { attributes: { hw: "VM" } }), node("n2", { attributes: { hw: "disk" } })],
      constraints: [{ type: "location-rule", id: "r", vm: "a", rule: "hw eq vm", score: 100 }],
    };
    assert.deepEqual(scores(setup, "a"), { n1: 100, n2: 0 });
  });
});

describe("a negative set of three", () => {
  test("keeps every member away from every member before it, not only from the one before", () => {
    const setup: Setup = {
      vms: [vm("a"), vm("b"), vm("c")],
      nodes: [node("n1"), node("n2")],
      constraints: [{ type: "colocation-set", id: "s", vms: ["a", "b", "c"], score: MINUS_INFINITY }],
    };
    assert.deepEqual(planned(setup), { a: "n1", b: "n2" });
    assert.deepEqual(scores(setup, "c"), { n1: MINUS_INFINITY, n2: MINUS_INFINITY });
  });
});

describe("capacity", () => {
  test("room is needed for the guest and its +INFINITY partners still to be placed", () => {
    // b prefers n1, but n1 has room for one of the pair only.
    const setup: Setup = {
      vms: [vm("a", { memoryMb: 3072 }), vm("b", { memoryMb: 3072 })],
      nodes: [withMemory("n1", 5120), withMemory("n2", 8192)],
      constraints: [colocation("ab", "a", "b", INFINITY), location("b-n1", "b", "n1", 10)],
    };
    assert.deepEqual(planned(setup), { a: "n2", b: "n2" });
  });

  test("a running guest that moves on does not hold its room against one placed before it", () => {
    // n has the higher priority and is placed first; r runs on n1 but prefers n2.
    const setup: Setup = {
      vms: [vm("r", { memoryMb: 3072 }), vm("n", { memoryMb: 3072, priority: 10 })],
      nodes: [withMemory("n1", 4096), withMemory("n2", 4096)],
      constraints: [location("r-n2", "r", "n2", 50), location("n-n1", "n", "n1", 20)],
      runtime: { r: runningOn("n1") },
    };
    assert.deepEqual(planned(setup), { n: "n1", r: "n2" });
  });

  test("under a capacity strategy the guest with the higher score is placed first", () => {
    const setup: Setup = {
      strategy: "utilization",
      vms: [vm("a", { memoryMb: 3072 }), vm("b", { memoryMb: 3072 })],
      nodes: [withMemory("n1", 4096), withMemory("n2", 4096)],
      constraints: [location("a-n1", "a", "n1", 10), location("b-n1", "b", "n1", 100)],
    };
    assert.deepEqual(planned(setup), { a: "n2", b: "n1" });
  });
});

describe("placement strategies", () => {
  const three = (strategy: PlacementStrategy): Setup => ({
    strategy,
    vms: ["a", "b", "c"].map((name) => vm(name, { memoryMb: 3072 })),
    nodes: [withMemory("n1", 4096), withMemory("n2", 65536), withMemory("n3", 8192)],
  });

  test("default: capacity is not counted; guests spread by count, then name", () => {
    const setup: Setup = { ...three("default"), nodes: [withMemory("n1", 4096), withMemory("n2", 4096)] };
    assert.deepEqual(planned(setup), { a: "n1", b: "n2", c: "n1" });
  });

  test("utilization: only where the guest fits; ties by count, then name", () => {
    assert.deepEqual(planned(three("utilization")), { a: "n1", b: "n2", c: "n3" });
  });

  test("balanced: the node with more room left (one vote per resource), then count", () => {
    // b: n2 has more memory left, n3 more vCPUs (n2 gave one to a): a tie, so the count decides.
    assert.deepEqual(planned(three("balanced")), { a: "n2", b: "n3", c: "n1" });
  });

  test("minimal: the earlier name, filling one node after the other", () => {
    assert.deepEqual(planned(three("minimal")), { a: "n1", b: "n2", c: "n2" });
  });
});

describe("stickiness and the order of sums", () => {
  test("a negative stickiness is ignored", () => {
    const setup: Setup = {
      vms: [vm("a", { stickiness: -100 })],
      nodes: [node("n1"), node("n2")],
      runtime: { a: runningOn("n1") },
    };
    assert.deepEqual(scores(setup, "a"), { n1: 0, n2: 0 });
    assert.equal(actionOf(plan(setup), "a")?.type, "keep");
  });

  test("scores add up in the order of the configuration, saturating at INFINITY", () => {
    // 600000 - 300000 + 600000 = 900000 on n1, less than 950000 on n2; adding the two 600000 first would
    // have saturated at INFINITY.
    const setup: Setup = {
      vms: [vm("a")],
      nodes: [node("n1"), node("n2")],
      constraints: [
        location("c1", "a", "n1", 600_000),
        { type: "location-rule", id: "c2", vm: "a", rule: "#uname eq n1", score: -300_000 },
        location("c3", "a", "n1", 600_000),
        location("c4", "a", "n2", 950_000),
      ],
    };
    assert.deepEqual(scores(setup, "a"), { n1: 900_000, n2: 950_000 });
    assert.deepEqual(planned(setup), { a: "n2" });
  });
});

describe("orders", () => {
  test("of two orders between the same guests, the first counts", () => {
    // a is to stay stopped, b runs. Mandatory then optional: b cannot run without a; the other way round, b
    // keeps running (Pacemaker's answers).
    const setup = (kinds: Array<"mandatory" | "optional">): Setup => ({
      vms: [vm("a", { state: "stopped" }), vm("b")],
      nodes: [node("n1"), node("n2")],
      constraints: kinds.map((kind, position) => ({
        type: "order",
        id: `o${position + 1}`,
        first: "a",
        then: "b",
        kind,
      })),
      runtime: { b: runningOn("n1") },
    });
    assert.equal(actionOf(plan(setup(["mandatory", "optional"])), "b")?.type, "stop");
    assert.equal(actionOf(plan(setup(["optional", "mandatory"])), "b")?.type, "keep");
  });
});

describe("where Haven keeps running guests in place (docs/placement.md)", () => {
  const small = (name: string, memoryMb: number) => fixtureNode(name, { capacity: { vcpus: 8, memoryMb } });

  test("a running guest stays on its node when another node only ties with it", () => {
    // Pacemaker moves b to n2, which has more room left once a is placed (both score 0).
    const setup: Setup = {
      vms: [vm("a"), vm("b")],
      nodes: [small("n1", 4096), small("n2", 4096)],
      runtime: { a: runningOn("n1"), b: runningOn("n1") },
    };
    assert.deepEqual(planned(setup), { a: "n1", b: "n1" });
    assert.deepEqual(
      planned({ ...setup, runningGuests: { ties: false } }),
      { a: "n1", b: "n2" },
      "Pacemaker's",
    );
  });

  test("a running guest is not stopped to make room for a guest of its priority placed before it", () => {
    // r runs on n1 and follows p (100); p is placed first, as r's primary. Pacemaker puts p on n1, where r
    // then has no room left, and stops r; Haven keeps r running, and p waits for room.
    const setup: Setup = {
      vms: [vm("p", { memoryMb: 2048 }), vm("r", { memoryMb: 2048 })],
      nodes: [small("n1", 3072), small("n2", 1024)],
      constraints: [colocation("r-with-p", "r", "p", 100)],
      runtime: { r: runningOn("n1") },
    };
    assert.deepEqual(planned(setup), { r: "n1" });
    assert.deepEqual(planned({ ...setup, runningGuests: { room: false } }), { p: "n1" }, "Pacemaker's");
  });
});
