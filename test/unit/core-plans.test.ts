// The controller's and the agent's decisions, as pure functions of the cluster state.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  planAgent,
  SELF_FENCE_REASON,
  type LocalGuest,
  type LocalOutcome,
} from "../../src/core/agent-plan.js";
import {
  keepAliveDue,
  keepAliveIntervalMs,
  mayRunGuests,
  selfFenceDeadline,
} from "../../src/core/self-fence.js";
import { planController, type ClusterView } from "../../src/core/controller-plan.js";
import type {
  Incoming,
  MigrationRequest,
  NodeInfo,
  Placement,
  VmSpec,
  VmStatus,
} from "../../src/core/model.js";
import { DEFAULT_MIGRATION, viewVm } from "../../src/core/model.js";
import { NO_RULES, type PlacementRules } from "../../src/core/placement-rules.js";
import { parseDurationSeconds, parseSizeMb } from "../../src/core/units.js";
import { nodeInfo, placementOn, statusOn, vmSpec } from "./fixtures.js";

const node = (name: string, memoryMb = 1024, vcpus = 4): NodeInfo =>
  nodeInfo(name, { api: `http://127.0.10.1:1/${name}`, capacity: { vcpus, memoryMb } });
const spec = vmSpec;
const placement = placementOn;
const status = statusOn;

function view(parts: {
  nodes?: NodeInfo[];
  specs?: VmSpec[];
  placements?: Record<string, Placement>;
  statuses?: Record<string, VmStatus>;
  requests?: Record<string, MigrationRequest>;
  incomings?: Record<string, Incoming>;
  maintenance?: string[];
  frozen?: string[];
  rules?: PlacementRules;
  now?: number;
}): ClusterView {
  return {
    now: parts.now ?? Date.parse("2026-01-01T00:00:00Z"),
    nodes: parts.nodes ?? [node("n1"), node("n2")],
    specs: new Map((parts.specs ?? []).map((s) => [s.name, s])),
    placements: new Map(Object.entries(parts.placements ?? {})),
    statuses: new Map(Object.entries(parts.statuses ?? {})),
    requests: new Map(Object.entries(parts.requests ?? {})),
    incomings: new Map(Object.entries(parts.incomings ?? {})),
    maintenance: new Set(parts.maintenance ?? []),
    frozen: new Set(parts.frozen ?? []),
    migrationDefaults: DEFAULT_MIGRATION,
    rules: parts.rules ?? NO_RULES,
  };
}

describe("controller plan", () => {
  test("places a started VM on the node with the most free memory", () => {
    const actions = planController(
      view({
        specs: [spec("a"), spec("b")],
        placements: { b: placement("n1") },
        nodes: [node("n1"), node("n2")],
      }),
    );
    assert.deepEqual(
      actions.map((a) => [a.type, a.vm, a.type === "place" ? a.placement.node : null]),
      [["place", "a", "n2"]],
    );
  });

  test("counts placements made in the same round against capacity", () => {
    const actions = planController(
      view({ specs: [spec("a", { memoryMb: 600 }), spec("b", { memoryMb: 600 })] }),
    );
    const nodes = actions.map((a) => (a.type === "place" ? a.placement.node : null));
    assert.deepEqual(nodes.sort(), ["n1", "n2"]);
  });

  test("explains a VM that fits nowhere, and one with no node online", () => {
    const [tooBig] = planController(view({ specs: [spec("big", { memoryMb: 4096 })] }));
    assert.equal(tooBig?.type, "unplaceable");
    assert.match(tooBig?.type === "unplaceable" ? tooBig.reason : "", /4096 MB/);
    const [noNode] = planController(view({ nodes: [], specs: [spec("a")] }));
    assert.deepEqual(noNode, { type: "unplaceable", vm: "a", reason: "no node is online" });
  });

  test("never places a VM on a node that cannot reach the storage", () => {
    const blind = { ...node("n1", 4096), storage: { ok: false, summary: "Ceph unreachable" } };
    const [onlySighted] = planController(view({ specs: [spec("a")], nodes: [blind, node("n2", 512)] }));
    assert.equal(onlySighted?.type === "place" ? onlySighted.placement.node : null, "n2");
    const [none] = planController(view({ specs: [spec("a")], nodes: [blind] }));
    assert.deepEqual(none, {
      type: "unplaceable",
      vm: "a",
      reason: "no online node can run it: n1 does not reach the storage: Ceph unreachable",
    });
  });

  test("never places a VM on a node that lacks a bridge its network cards need", () => {
    const nic = { bridge: "br-lab", mac: "52:54:00:00:00:01", model: "virtio" as const };
    const withNic = spec("a", { nics: [nic] });
    const bridged = { ...node("n1", 512), bridges: ["br-lab"] };
    const [placed] = planController(view({ specs: [withNic], nodes: [node("n2", 4096), bridged] }));
    assert.equal(placed?.type === "place" ? placed.placement.node : null, "n1");
    const [none] = planController(view({ specs: [withNic], nodes: [node("n2", 4096)] }));
    assert.deepEqual(none, {
      type: "unplaceable",
      vm: "a",
      reason: "no online node can run it: n2 has no bridge br-lab",
    });
  });

  test("a new placement's generation is above any status left from an earlier run", () => {
    const [action] = planController(
      view({ specs: [spec("a")], statuses: { a: status("n1", "crashed", 7) } }),
    );
    assert.equal(action?.type === "place" ? action.placement.generation : 0, 8);
  });

  test("restarts a crashed guest in place, counting restarts, then gives up", () => {
    const crashed = { a: status("n1", "crashed") };
    const [restart] = planController(
      view({ specs: [spec("a")], placements: { a: placement("n1") }, statuses: crashed }),
    );
    assert.ok(restart?.type === "place");
    assert.deepEqual(
      [restart.placement.node, restart.placement.generation, restart.placement.restarts],
      ["n1", 2, 1],
    );
    assert.equal(restart.expectedGeneration, 1);

    const atLimit = { a: placement("n1", { generation: 3, restarts: 2 }) };
    const [relocate] = planController(
      view({ specs: [spec("a")], placements: atLimit, statuses: { a: status("n1", "failed", 3) } }),
    );
    assert.ok(relocate?.type === "place");
    assert.deepEqual(
      [
        relocate.decision,
        relocate.placement.node,
        relocate.placement.restarts,
        relocate.placement.relocations,
      ],
      ["relocating", "n2", 0, 1],
    );

    const [giveUp] = planController(
      view({
        specs: [spec("a")],
        placements: { a: placement("n2", { generation: 5, restarts: 2, relocations: 1 }) },
        statuses: { a: status("n2", "crashed", 5) },
      }),
    );
    assert.ok(giveUp?.type === "place");
    assert.equal(giveUp.decision, "error");
    assert.equal(giveUp.placement.state, "error");
    assert.match(
      giveUp.placement.reason,
      /gave up after 2 restarts \(limit 2\) and 1 relocations \(limit 1\)/,
    );
  });

  test("gives up at the restart limit when no other node can take the guest", () => {
    const [giveUp] = planController(
      view({
        nodes: [node("n1")],
        specs: [spec("a")],
        placements: { a: placement("n1", { generation: 3, restarts: 2 }) },
        statuses: { a: status("n1", "crashed", 3) },
      }),
    );
    assert.ok(giveUp?.type === "place" && giveUp.decision === "error");
    assert.match(giveUp.placement.reason, /no other node/);
  });

  test("relocation skips the nodes the guest failed on within its failure timeout, and gives up when none is left", () => {
    const now = Date.parse("2026-01-01T00:10:00Z");
    const nodes = [node("n1", 4096), node("n2", 2048), node("n3", 1024)];
    const relocateFrom = (failedNodes: Placement["failedNodes"], timeout = 0) =>
      planController(
        view({
          nodes,
          now,
          specs: [spec("a", { restartLimit: 0, relocateLimit: 5, failureTimeoutSeconds: timeout })],
          placements: { a: placement("n2", { generation: 3, relocations: 1, failedNodes }) },
          statuses: { a: status("n2", "failed", 3) },
        }),
      )[0];
    const tried = [{ node: "n1", at: "2026-01-01T00:09:00Z" }];
    const next = relocateFrom(tried);
    assert.ok(next?.type === "place" && next.decision === "relocating");
    assert.equal(next.placement.node, "n3", "n1 has more room, but the guest failed there");
    assert.deepEqual(
      next.placement.failedNodes?.map((f) => f.node),
      ["n1", "n2"],
    );
    const expired = relocateFrom(tried, 30);
    assert.ok(expired?.type === "place");
    assert.equal(expired.placement.node, "n1", "a failure older than the failure timeout is forgotten");
    const done = relocateFrom([...tried, { node: "n3", at: "2026-01-01T00:09:30Z" }]);
    assert.ok(done?.type === "place" && done.decision === "error");
    assert.match(
      done.placement.reason,
      /1 relocations \(limit 5\); it failed on every other node too \(n1, n3\)/,
    );
  });

  test("a guest its own node self-fenced is restarted there without counting a crash", () => {
    const [restart] = planController(
      view({
        specs: [spec("a")],
        placements: { a: placement("n1", { restarts: 2 }) },
        statuses: { a: status("n1", "fenced") },
      }),
    );
    assert.ok(restart?.type === "place");
    assert.deepEqual(
      [restart.decision, restart.placement.node, restart.placement.generation, restart.placement.restarts],
      ["restarting", "n1", 2, 2],
    );
  });

  test("forgets old failures after the failure timeout, not before, and never with timeout 0", () => {
    const lastRestart = "2026-01-01T00:00:00Z";
    const running = { a: status("n1", "running", 4) };
    const scarred = {
      a: placement("n1", { generation: 4, restarts: 2, relocations: 1, updatedAt: lastRestart }),
    };
    const at = (seconds: number, timeout = 600) =>
      planController(
        view({
          specs: [spec("a", { failureTimeoutSeconds: timeout })],
          placements: scarred,
          statuses: running,
          now: Date.parse(lastRestart) + seconds * 1000,
        }),
      );
    assert.deepEqual(at(599), []);
    const [forget] = at(600);
    assert.ok(forget?.type === "place" && forget.decision === "failures-expired");
    assert.deepEqual(
      [
        forget.placement.generation,
        forget.placement.restarts,
        forget.placement.relocations,
        forget.expectedGeneration,
      ],
      [4, 0, 0, 4],
      "same generation: the running guest is not restarted",
    );
    assert.deepEqual(at(10 * 24 * 3600, 0), []);
    const clean = planController(
      view({
        specs: [spec("a", { failureTimeoutSeconds: 1 })],
        placements: { a: placement("n1") },
        statuses: { a: status("n1", "running") },
        now: Date.parse(lastRestart) + 3600_000,
      }),
    );
    assert.deepEqual(clean, [], "nothing to forget");
  });

  test("recovers higher-priority guests first when a failed node's guests do not all fit", () => {
    const specs = [
      spec("a-low", { memoryMb: 600 }),
      spec("z-high", { memoryMb: 600, priority: 10 }),
      spec("m-mid", { memoryMb: 600, priority: 5 }),
    ];
    const onDead = { generation: 1 };
    const actions = planController(
      view({
        nodes: [node("n2", 1300)],
        specs,
        placements: {
          "a-low": placement("n1", onDead),
          "z-high": placement("n1", onDead),
          "m-mid": placement("n1", onDead),
        },
      }),
    );
    assert.deepEqual(
      actions.map((a) => [a.type, a.vm]),
      [
        ["recover", "z-high"],
        ["recover", "m-mid"],
        ["unplaceable", "a-low"],
      ],
    );
  });

  test("a node that shut down with the freeze policy keeps its guests: nothing fenced, nothing recovered", () => {
    const parts = { nodes: [node("n2")], specs: [spec("a")], placements: { a: placement("n1") } };
    assert.deepEqual(
      planController(view({ ...parts, frozen: ["n1"] })).map((a) => [
        a.type,
        a.vm,
        a.type === "unplaceable" && a.reason,
      ]),
      [["unplaceable", "a", "node n1 shut down with the freeze policy; the guest waits for it"]],
    );
    assert.deepEqual(
      planController(view(parts)).map((a) => a.type),
      ["recover"],
      "the same node gone without the freeze: recovered",
    );
  });

  test("ignores a crash report of an older generation", () => {
    const actions = planController(
      view({
        specs: [spec("a")],
        placements: { a: placement("n1", { generation: 2 }) },
        statuses: { a: status("n1", "crashed", 1) },
      }),
    );
    assert.deepEqual(actions, []);
  });

  test("releases a stopped VM's placement only once its guest is gone", () => {
    const stopped = spec("a", { state: "stopped" });
    const stillRunning = planController(
      view({
        specs: [stopped],
        placements: { a: placement("n1") },
        statuses: { a: status("n1", "stopping") },
      }),
    );
    assert.deepEqual(stillRunning, []);
    const gone = planController(
      view({
        specs: [stopped],
        placements: { a: placement("n1") },
        statuses: { a: status("n1", "stopped") },
      }),
    );
    assert.deepEqual(gone, [{ type: "release", vm: "a", expectedGeneration: 1, reason: "stopped by user" }]);
    // Safety: a node that went silent may still run the guest; its placement stays.
    assert.deepEqual(planController(view({ specs: [stopped], placements: { a: placement("n1") } })), []);
  });
});

describe("agent plan", () => {
  const agentView = (parts: {
    specs?: VmSpec[];
    placements?: Record<string, Placement>;
    running?: Record<string, LocalGuest>;
    outcomes?: Record<string, LocalOutcome>;
    leaseValid?: boolean;
    incomings?: Record<string, Incoming>;
    outgoing?: string[];
    node?: string;
  }) => ({
    node: parts.node ?? "n1",
    specs: new Map((parts.specs ?? []).map((s) => [s.name, s])),
    placements: new Map(Object.entries(parts.placements ?? {})),
    running: new Map(Object.entries(parts.running ?? {})),
    outcomes: new Map(Object.entries(parts.outcomes ?? {})),
    leaseValid: parts.leaseValid ?? true,
    incomings: new Map(Object.entries(parts.incomings ?? {})),
    outgoing: new Set(parts.outgoing ?? []),
    failedIncoming: new Set<string>(),
  });

  test("starts what is placed here, leaves other nodes' guests alone", () => {
    const actions = planAgent(
      agentView({ specs: [spec("a"), spec("b")], placements: { a: placement("n1"), b: placement("n2") } }),
    );
    assert.deepEqual(actions, [{ type: "start", vm: "a", generation: 1 }]);
  });

  test("never restarts a crashed generation by itself", () => {
    const actions = planAgent(
      agentView({
        specs: [spec("a")],
        placements: { a: placement("n1") },
        outcomes: { a: { generation: 1, state: "crashed" } },
      }),
    );
    assert.deepEqual(actions, []);
    const next = planAgent(
      agentView({
        specs: [spec("a")],
        placements: { a: placement("n1", { generation: 2 }) },
        outcomes: { a: { generation: 1, state: "crashed" } },
      }),
    );
    assert.deepEqual(next, [{ type: "start", vm: "a", generation: 2 }]);
  });

  test("stops guests that are stopped, deleted, moved away or in error", () => {
    const running = {
      a: { vm: "a", generation: 1 },
      b: { vm: "b", generation: 1 },
      c: { vm: "c", generation: 1 },
      d: { vm: "d", generation: 1 },
    };
    const actions = planAgent(
      agentView({
        specs: [spec("a", { state: "stopped" }), spec("c"), spec("d")],
        placements: { a: placement("n1"), c: placement("n2"), d: placement("n1", { state: "error" }) },
        running,
      }),
    );
    assert.deepEqual(actions, [
      { type: "stop", vm: "a", reason: "stopped by user" },
      { type: "stop", vm: "b", reason: "VM was deleted" },
      { type: "stop", vm: "c", reason: "placed on n2" },
      { type: "stop", vm: "d", reason: "placement is in state error" },
    ]);
  });

  test("without a valid lease: kills every guest and starts nothing (invariant 2)", () => {
    const actions = planAgent(
      agentView({
        specs: [spec("a"), spec("b")],
        placements: { a: placement("n1"), b: placement("n1") },
        running: { a: { vm: "a", generation: 1 } },
        leaseValid: false,
      }),
    );
    assert.deepEqual(actions, [{ type: "kill", vm: "a", reason: SELF_FENCE_REASON }]);
  });

  test("the self-fencing deadline counts from when the last good keep-alive was sent", () => {
    assert.equal(selfFenceDeadline(10_000, 5, 1500), 13_500);
    assert.equal(selfFenceDeadline(0, 5, 1500), 0, "never renewed: no right to run");
    assert.ok(mayRunGuests(13_499, 13_500));
    assert.ok(!mayRunGuests(13_500, 13_500));
    assert.equal(keepAliveIntervalMs(5), 500);
  });

  test("keep-alives go out every second tick, and every tick while the last one sent is unanswered", () => {
    assert.ok(!keepAliveDue(1, true), "answered: half an interval is too soon");
    assert.ok(keepAliveDue(2, true));
    assert.ok(keepAliveDue(1, false), "unanswered: retried after half an interval");
  });

  test("kills a guest superseded by a newer generation", () => {
    const actions = planAgent(
      agentView({
        specs: [spec("a")],
        placements: { a: placement("n1", { generation: 3 }) },
        running: { a: { vm: "a", generation: 2 } },
      }),
    );
    assert.deepEqual(actions, [{ type: "kill", vm: "a", reason: "superseded by a newer start" }]);
  });
});

describe("views and units", () => {
  test("a VM's visible state combines spec, placement and status", () => {
    assert.equal(viewVm(spec("a"), undefined, undefined).state, "pending");
    assert.equal(viewVm(spec("a", { state: "stopped" }), undefined, undefined).state, "stopped");
    assert.equal(viewVm(spec("a"), placement("n1"), undefined).state, "unknown");
    assert.equal(viewVm(spec("a"), placement("n1"), status("n1", "running")).state, "running");
    assert.equal(viewVm(spec("a"), placement("n1"), status("n2", "running")).state, "unknown");
    assert.equal(viewVm(spec("a"), placement("n1", { state: "error", reason: "r" }), undefined).reason, "r");
  });

  test("sizes in megabytes with suffixes", () => {
    assert.equal(parseSizeMb("1024"), 1024);
    assert.equal(parseSizeMb("2G"), 2048);
    assert.equal(parseSizeMb("1T"), 1024 * 1024);
    assert.equal(parseSizeMb("1.5G"), 1536);
    assert.deepEqual(parseSizeMb("0"), { error: 'size "0" must be greater than zero' });
    assert.ok(typeof parseSizeMb("-5") === "object");
    assert.ok(typeof parseSizeMb("ten") === "object");
    assert.ok(typeof parseSizeMb("0.1") === "object");
  });

  test("durations as Pacemaker writes them", () => {
    for (const [text, seconds] of [
      ["300", 300],
      ["300s", 300],
      ["5min", 300],
      ["1h", 3600],
      ["30000ms", 30],
      ["0", 0],
      ["1ms", 1],
    ] as const)
      assert.equal(parseDurationSeconds(text), seconds, text);
    for (const bad of ["", "-5", "5 parsecs", "1.5h", "m"])
      assert.ok(typeof parseDurationSeconds(bad) === "object", bad);
  });
});
