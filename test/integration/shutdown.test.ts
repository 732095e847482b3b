// A node shut down on purpose (`haven node shutdown`, as its host's shutdown or reboot would) on a real local
// cluster on Ceph, under each shutdown policy: the canary migrates away, fails over, or freezes until its node
// is back — never running twice, never losing an acknowledged write. Ceph, because a failover recovers the
// guest only after fencing its disks, which the dir backend cannot do.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import type { CanaryReport } from "../../src/core/canary.js";
import { findDoubleRuns } from "../../src/core/history-check.js";
import type { HavenEvent, VmView } from "../../src/core/model.js";
import { eventually, SUITE_TIMEOUT, TestCluster } from "./harness.js";

describe("node shutdown by the shutdown policy", SUITE_TIMEOUT, () => {
  let cluster: TestCluster;

  before(async () => {
    cluster = await TestCluster.start({ nodes: 3, storage: "rbd" });
  });
  afterEach(async () => {
    await cluster.reset();
  });
  after(async () => {
    await cluster?.stop();
  });

  const show = (vm: string) => cluster.json<VmView>(["vm", "show", vm]);
  const ok = (args: string[]) => cluster.ok(args);
  const events = () => cluster.json<HavenEvent[]>(["events", "--limit", "10000"]);
  /** The canary's events since `time`: earlier tests' canaries had the same name. */
  const canaryEventsSince = async (time: number) =>
    (await events()).filter((e) => e.vm === "canary" && Date.parse(e.time) >= time);
  const acking = (floor: number, where: (node: string) => boolean = () => true) =>
    eventually(`canary acking past ${floor}`, async () => {
      const view = await show("canary");
      return view.state === "running" && where(view.node!) && (view.lastAck ?? 0) > floor ? view : undefined;
    });
  async function assertClean(): Promise<void> {
    const report = await cluster.json<CanaryReport>(["canary", "verify", "canary"]);
    assert.deepEqual([report.gaps, report.corrupt, report.forks], [[], [], []]);
    assert.deepEqual(findDoubleRuns(await events()), []);
  }
  /** A canary acking on some node, and that node shut down under `policy`. */
  async function shutDownCanaryNode(
    policy: string,
  ): Promise<{ node: string; lastAck: number; since: number }> {
    const since = Date.now();
    await ok(["cluster", "shutdown-policy", policy]);
    await ok(["vm", "create", "canary", "--canary", "--start"]);
    const before = await acking(0);
    const shutdown = await ok(["node", "shutdown", before.node!]);
    assert.match(shutdown.stdout, new RegExp(`shut down havend of ${before.node}`));
    const online = await cluster.json<Array<{ name: string }>>(["node", "list"]);
    assert.ok(!online.some((n) => n.name === before.node), `${before.node} left the cluster`);
    return { node: before.node!, lastAck: before.lastAck!, since };
  }

  test("migrate: the canary moves away live before its node goes; back, the node leaves maintenance", async () => {
    const { node, lastAck, since } = await shutDownCanaryNode("migrate");
    const moved = await acking(lastAck, (n) => n !== node);
    const types = (await canaryEventsSince(since)).map((e) => e.type);
    assert.ok(types.includes("migrated"), `moved live: ${types.join(", ")}`);
    assert.ok(!types.includes("recovered"), "not recovered as from a failed node");
    await ok(["cluster", "up"]);
    const back = await cluster.json<Array<{ name: string; maintenance: unknown }>>(["node", "list"]);
    assert.equal(back.find((n) => n.name === node)?.maintenance, null, `${node} is back, out of maintenance`);
    assert.equal((await show("canary")).node, moved.node);
    await assertClean();
  });

  test("failover: the canary is shut down with its node and recovered on another at once", async () => {
    const { node, lastAck, since } = await shutDownCanaryNode("failover");
    await acking(lastAck, (n) => n !== node);
    const mine = await canaryEventsSince(since);
    assert.ok(
      mine.some((e) => e.type === "stopped" && /shut down \(shutdown policy failover\)/.test(e.reason)),
      "stopped by the shutdown",
    );
    assert.ok(mine.some((e) => e.type === "recovered"));
    await ok(["cluster", "up"]);
    await assertClean();
  });

  test("freeze: the canary waits for its node, unfenced; back, the node runs it again from its disk", async () => {
    const { node, lastAck, since } = await shutDownCanaryNode("freeze");
    await eventually("the controller chose to wait", async () =>
      (await canaryEventsSince(since)).find((e) => e.type === "waiting" && /freeze policy/.test(e.reason)),
    );
    const frozen = await cluster.json<{ frozen: Array<{ node: string }> }>(["cluster", "shutdown-policy"]);
    assert.deepEqual(
      frozen.frozen.map((f) => f.node),
      [node],
    );
    const waiting = await show("canary");
    assert.equal(waiting.node, node, "still placed on its node");
    assert.notEqual(waiting.state, "running");
    const mine = await canaryEventsSince(since);
    assert.ok(!mine.some((e) => ["fenced", "recovered"].includes(e.type)), "neither fenced nor recovered");
    await ok(["cluster", "up"]);
    await acking(lastAck, (n) => n === node);
    assert.deepEqual((await cluster.json<{ frozen: unknown[] }>(["cluster", "shutdown-policy"])).frozen, []);
    await assertClean();
  });

  test("bad input: an unknown policy is refused with the choices", async () => {
    const result = await cluster.haven(["cluster", "shutdown-policy", "hibernate"]);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /unknown shutdown policy "hibernate" \(migrate, failover, freeze\)/);
  });
});
