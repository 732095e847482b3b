// The HA simulator (src/sim): every scenario in test/sim/scenarios against its golden file, with the
// simulator's own invariant checks; scenario parse errors; the invariant checker itself.
// HAVEN_SIM_UPDATE=1 rewrites the golden files (except the known failures', which are written by hand) —
// then read every changed one before committing: the golden files are the contract.
import assert from "node:assert/strict";
import { NO_RULES } from "../../src/core/placement-rules.js";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { diffLines } from "../../src/sim/diff.js";
import { simulate } from "../../src/sim/run.js";
import { parseScenario, ScenarioError } from "../../src/sim/scenario.js";
import { World } from "../../src/sim/world.js";

const DIR = join(process.cwd(), "test/sim/scenarios");
const UPDATE = process.env.HAVEN_SIM_UPDATE === "1";

/**
 * Scenarios whose golden file describes the correct behaviour, which Haven does not have yet. Each is a bug
 * found with the simulator; remove it from this list once fixed (and check its log matches).
 */
const KNOWN_FAILURES: Record<string, string> = {};

const scenarios = readdirSync(DIR)
  .filter((file) => file.endsWith(".scenario"))
  .map((file) => file.slice(0, -".scenario".length))
  .sort();

describe("simulator scenarios", () => {
  test("there are at least 40 scenarios, each with a golden file", () => {
    assert.ok(scenarios.length >= 40, `only ${scenarios.length} scenarios`);
    const missing = scenarios.filter((name) => !existsSync(join(DIR, `${name}.expected`)));
    assert.deepEqual(missing, [], "scenarios without a golden file (run with HAVEN_SIM_UPDATE=1)");
    for (const name of Object.keys(KNOWN_FAILURES)) assert.ok(scenarios.includes(name), `${name} is listed`);
  });

  for (const name of scenarios) {
    const known = KNOWN_FAILURES[name];
    test(name, known ? { skip: `known failure: ${known}` } : {}, async () => {
      const result = await simulate(readFileSync(join(DIR, `${name}.scenario`), "utf8"));
      const expectedFile = join(DIR, `${name}.expected`);
      if (UPDATE) writeFileSync(expectedFile, result.lines.join("\n") + "\n");
      const expected = readFileSync(expectedFile, "utf8").replace(/\n$/, "").split("\n");
      const diff = diffLines(expected, result.lines);
      assert.ok(
        diff.length === 0,
        `the log differs from ${name}.expected (- expected, + actual):\n${diff.join("\n")}`,
      );
      assert.deepEqual(result.violations, [], "invariant violations");
    });
  }

  test("a run is deterministic", async () => {
    const source = readFileSync(join(DIR, "migrate-source-dies.scenario"), "utf8");
    assert.deepEqual((await simulate(source)).lines, (await simulate(source)).lines);
  });
});

describe("scenario files", () => {
  const error = (source: string): string => {
    try {
      parseScenario(source);
    } catch (err) {
      if (err instanceof ScenarioError) return err.message;
      throw err;
    }
    return assert.fail("no error");
  };

  test("errors name the line and column of the offending word", () => {
    assert.equal(error("vm a\n"), "1:1: the scenario must begin with 'cluster nodes=N ...'");
    assert.equal(
      error("cluster nodes=3\nvm a\nat 5s power-off node9\nrun until 10s\n"),
      "3:17: unknown node 'node9' (the cluster has node1, node2, node3)",
    );
    assert.equal(
      error("cluster nodes=2\nat 1s start web\n"),
      "2:13: unknown VM 'web' (declare it with 'vm web ...' first)",
    );
    assert.equal(
      error("cluster nodes=2\nvm a memory=lots\n"),
      "2:13: memory must be a whole number, got 'lots'",
    );
    assert.equal(
      error("cluster nodes=2\nvm a colour=red\n"),
      "2:6: unknown setting 'colour' (expected one of: memory, vcpus, disks, restart-limit, relocate-limit, failure-timeout, priority, stickiness, ha, migrate, canary, state, on, start-time, incoming-time, stop-time, migrate-time, downtime)",
    );
    assert.equal(
      error("cluster nodes=2\nvm a\nat soon start a\n"),
      "3:4: 'soon' is not a duration (like 10s, 500ms, 2m)",
    );
    assert.equal(error("cluster nodes=2\nvm a\n  at 1s fly a\n"), "3:9: unknown command 'fly'");
    assert.equal(error("cluster nodes=2\nvm a\nat 1s start a b\n"), "3:15: unexpected 'b'");
    assert.equal(
      error("cluster nodes=2\nvm a\nat 5s start a\nat 2s stop a\nrun until 9s\n"),
      "4:4: steps must be in time order (line 3 is at 5.000s)",
    );
    assert.equal(error('cluster nodes=2\nvm a\nat 1s migration-fail a "oops\n'), "3:24: unterminated quote");
    assert.equal(error("cluster nodes=2\nvm a\nat 1s start a\n"), "3:1: missing 'run until TIME' at the end");
    assert.equal(error("cluster nodes=2\nrun until 5s\nvm a\n"), "3:1: nothing may follow 'run until'");
    assert.equal(error("cluster nodes=2 ttl=5 margin=6s\n"), "1:23: the margin must be shorter than the TTL");
  });

  test("stickiness, start order and placement rules changed during a run: errors", () => {
    const head = "cluster nodes=2\nvm a\nvm b\n";
    assert.equal(
      error("cluster nodes=2\nvm a stickiness=lots\n"),
      '2:17: stickiness: score "lots" is not an integer, INFINITY or -INFINITY',
    );
    assert.equal(
      error(head + "at 1s set a stickiness=2000000\n"),
      "4:24: stickiness: score 2000000 is out of range: scores go from -INFINITY to INFINITY (±1000000)",
    );
    assert.equal(
      error(head + "constraint o1 order a\n"),
      "4:21: expected: constraint ID order FIRST THEN [mandatory|optional]",
    );
    assert.match(error(head + "constraint o1 order a b sometimes\n"), /^4:25: .*"mandatory"\|"optional"/);
    assert.equal(
      error(head + "constraint o1 order a ghost\n"),
      "4:23: unknown VM 'ghost' (declare it with 'vm ghost ...' first)",
    );
    assert.equal(
      error(head + "constraint c1 spread a b\n"),
      "4:15: expected: constraint ID location|rule|colocation|order ...",
    );
    assert.equal(error(head + "constraint c1 location a node1 5 extra\n"), "4:34: unexpected 'extra'");
    assert.equal(
      error(head + "constraint c1 location a node1 lots\n"),
      '4:32: score "lots" is not an integer, INFINITY or -INFINITY',
    );
    assert.equal(
      error(head + "constraint c1 order a b\nconstraint c1 colocation a b 5\n"),
      "5:12: constraint c1 is declared twice",
    );
    assert.equal(
      error(head + "at 1s constraint c1 colocation a ghost 5\n"),
      "4:34: unknown VM 'ghost' (declare it with 'vm ghost ...' first)",
    );
    assert.equal(error(head + "at 1s constraint-delete\n"), "4:7: 'constraint-delete' needs 1 argument");
    assert.equal(error(head + "at 1s attribute node1\n"), "4:17: expected KEY=VALUE after the node name");
    assert.equal(error(head + "at 1s attribute node1 hw\n"), "4:23: expected KEY=VALUE");
    assert.equal(error(head + "at 1s attribute node9 hw=vm\n"), "4:17: expected a node name (node1, node2)");
  });

  test("initial states, node processes, members and failing stops: what parses and what is refused", () => {
    const scenario = parseScenario(
      [
        "cluster nodes=3 etcd=5",
        "vm a state=running on=node2",
        "vm b state=error on=node1",
        "vm c state=started canary=on",
        "at 1s havend-kill leader",
        "at 2s havend-start node1",
        "at 3s reboot node3 down=1m",
        "at 4s etcd-kill etcd5",
        'at 5s fail-stop c times=2 on=node2 "stuck"',
        "at 6s migration-fail c times=3",
        "at 7s show c",
        "run until 8s",
      ].join("\n"),
    );
    assert.deepEqual(
      scenario.vms.map((vm) => vm.initial),
      [{ state: "running", node: "node2" }, { state: "error", node: "node1" }, { state: "started" }],
    );
    assert.equal(scenario.etcdMembers, 5);
    assert.deepEqual(
      scenario.steps.map((step) => step.command),
      [
        { type: "havend-kill", node: "leader" },
        { type: "havend-start", node: "node1" },
        { type: "reboot", node: "node3", downMs: 60_000 },
        { type: "etcd-kill", member: "etcd5" },
        { type: "fail-stop", vm: "c", times: 2, node: "node2", message: "stuck" },
        {
          type: "migration-fail",
          vm: "c",
          times: 3,
          message: "Unable to write to socket: Connection reset by peer",
        },
        { type: "show", vm: "c" },
      ],
    );
    assert.equal(error("cluster nodes=2\nvm a state=running\n"), "2:6: state=running needs on=NODE");
    assert.equal(
      error("cluster nodes=2\nvm a on=node1\n"),
      "2:6: 'on' goes with state=running or state=error",
    );
    assert.equal(
      error("cluster nodes=2\nvm a\nat 1s thaw leader\n"),
      "3:12: 'thaw' needs a node name, not 'leader'",
    );
    assert.equal(
      error("cluster nodes=2\nvm a\nat 1s etcd-kill etcd4\n"),
      "3:17: unknown etcd member 'etcd4' (the cluster has etcd1, etcd2, etcd3)",
    );
  });

  test("the new statements parse into the scheduler's shapes", () => {
    const scenario = parseScenario(
      [
        "cluster nodes=2",
        "vm a stickiness=INFINITY",
        "vm b",
        "constraint o1 order a b",
        "at 1s set b stickiness=-100",
        "at 2s constraint o2 order b a optional",
        "at 3s constraint-delete o1",
        "at 4s attribute node2 hw=vm rack=r1",
        "run until 5s",
      ].join("\n"),
    );
    assert.equal(scenario.vms[0]!.stickiness, 1_000_000);
    assert.equal(scenario.vms[1]!.stickiness, 0);
    assert.deepEqual(scenario.rules.constraints, [
      { type: "order", id: "o1", first: "a", then: "b", kind: "mandatory" },
    ]);
    assert.deepEqual(
      scenario.steps.map((step) => step.command),
      [
        { type: "set", vm: "b", changes: [{ key: "stickiness", value: -100 }] },
        {
          type: "constraint",
          constraint: { type: "order", id: "o2", first: "b", then: "a", kind: "optional" },
        },
        { type: "constraint-delete", id: "o1" },
        { type: "attribute", node: "node2", attributes: { hw: "vm", rack: "r1" } },
      ],
    );
  });

  test("placement rules changed during a run reach the controller; a known or unknown id is refused", async () => {
    const { lines, violations } = await simulate(
      [
        "cluster nodes=3",
        "vm a",
        "vm b",
        "constraint a-ban location a node1 -INFINITY",
        "at 1s constraint a-ban location a node2 5",
        "at 1s constraint-delete a-ban",
        "at 1s constraint-delete a-ban",
        "at 1s constraint a-on-3 location a node3 INFINITY",
        "at 1s attribute node2 hw=vm",
        "at 1s constraint b-vm rule b -INFINITY hw ne vm",
        "at 2s start a",
        "at 2s start b",
        "run until 6s",
      ].join("\n"),
    );
    assert.deepEqual(violations, []);
    const has = (pattern: RegExp) =>
      assert.ok(
        lines.some((line) => pattern.test(line)),
        String(pattern),
      );
    has(/>> constraint a-ban location a node2 5 => refused: constraint a-ban exists; delete it first/);
    has(/constraint-deleted: by user: a on node1: -INFINITY$/);
    has(/>> constraint-delete a-ban => refused: constraint a-ban does not exist$/);
    has(/constraint-added vm=a: by user: a on node3: INFINITY$/);
    has(/placed vm=a node=node3: /);
    has(/placed vm=b node=node2: /);
  });

  test("comments, blank lines, quoted messages and units are accepted", () => {
    const scenario = parseScenario(
      [
        "# a comment",
        "cluster nodes=2 ttl=10 margin=2500ms  # trailing comment",
        "",
        "vm a memory=256 failure-timeout=2m ha=off migrate=cold",
        'at 1.5s fail-start a times=2 on=node2 "no /dev/kvm here"',
        "at 2m etcd-slow all 300ms",
        "run until 3m",
      ].join("\n"),
    );
    assert.equal(scenario.ttlSeconds, 10);
    assert.equal(scenario.marginMs, 2500);
    assert.deepEqual(
      [scenario.vms[0]!.failureTimeoutSeconds, scenario.vms[0]!.ha, scenario.vms[0]!.allowMigrate],
      [120, false, false],
    );
    assert.deepEqual(scenario.steps[0]!.command, {
      type: "fail-start",
      vm: "a",
      times: 2,
      node: "node2",
      message: "no /dev/kvm here",
    });
    assert.equal(scenario.steps[1]!.at, 120_000);
    assert.equal(scenario.until, 180_000);
  });
});

describe("the simulator's invariant checks", () => {
  test("two QEMUs of one VM with write access are reported, and a blocklisted one is not a writer", () => {
    const world = new World({ ttlSeconds: 5, marginMs: 1500, watchDelayMs: 10, rules: NO_RULES });
    world.addNode("node1", { memoryMb: 1024, vcpus: 2 });
    world.addNode("node2", { memoryMb: 1024, vcpus: 2 });
    const first = world.machines.spawn("node1", "web", 1, ["web-disk0"], "running");
    world.machines.spawn("node2", "web", 2, ["web-disk0"], "running");
    world.invariants.check();
    assert.deepEqual(
      world.invariants.violations.map((v) => v.invariant),
      ["one writer"],
    );
    world.machines.blocklist.add(first.client);
    world.invariants.check();
    assert.equal(world.invariants.violations.length, 1, "reported once, and not again once fenced");
  });

  test("the event log is checked with findDoubleRuns", () => {
    const world = new World({ ttlSeconds: 5, marginMs: 1500, watchDelayMs: 10, rules: NO_RULES });
    world.invariants.finish([
      { time: "2025-01-01T00:00:01.000Z", type: "started", vm: "web", node: "node1", reason: "" },
      { time: "2025-01-01T00:00:02.000Z", type: "started", vm: "web", node: "node2", reason: "" },
    ]);
    assert.deepEqual(
      world.invariants.violations.map((v) => v.invariant),
      ["never twice"],
    );
  });
});
