// Network partitions on a local cluster (`haven node partition|heal`): a node cut off from the others stops
// its guests itself before its lease can expire, the majority fences their disks and recovers them, the
// minority starts nothing, and after healing the node rejoins without running anything twice. Cutting the
// controller's node elects a new controller on the majority side.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, afterEach, before, describe, test } from "node:test";
import type { NodeView } from "../../src/api/service.js";
import { highestAckInLog, type CanaryReport } from "../../src/core/canary.js";
import { findDoubleRuns } from "../../src/core/history-check.js";
import type { HavenEvent, VmView } from "../../src/core/model.js";
import { isAlive, processesMatching } from "../../src/lib/process.js";
import { eventually, SUITE_TIMEOUT, TestCluster } from "./harness.js";

const NODES = ["node1", "node2", "node3", "node4"];
/** The guide's layout: the canary runs on a compute node, whose cut takes no OSD with it (see below). */
const GUIDE = "storage+monitor,storage+monitor,compute+monitor,compute";
/**
 * A recovery across a cut waits for the cut node's lease to expire, a new controller when the cut node led, and
 * the blocklist: generous bounds for a loaded machine. A cut Ceph OSD would also stall the recovered guest's disk
 * until Ceph marks it down (docs/ha.md), which is Ceph's timing, not Haven's: the canary runs on compute nodes.
 */
const ACROSS_A_CUT_MS = 6 * 60_000;

describe("network partitions", SUITE_TIMEOUT, () => {
  let cluster: TestCluster;
  before(async () => {
    cluster = await TestCluster.start({
      nodes: 4,
      storage: "rbd",
      extraArgs: ["--roles", GUIDE, "--etcd-members", "3"],
    });
  });
  afterEach(async () => {
    await cluster.reset();
  });
  after(async () => {
    await cluster?.stop();
  });

  const ok = (args: string[]) => cluster.ok(args);
  const show = (vm: string) => cluster.json<VmView>(["vm", "show", vm]);
  const onlineNodes = async () => (await cluster.json<NodeView[]>(["node", "list"])).map((n) => n.name);
  const controller = async () => (await cluster.json<{ controller: string | null }>(["status"])).controller;
  const guestDir = (node: string, vm: string) => join(cluster.stateDir, "nodes", node, "guests", vm);
  const highestAck = async (vm: string) => {
    const logs = NODES.map((node) =>
      readFile(join(guestDir(node, vm), "serial.log"), "latin1").catch(() => ""),
    );
    return Math.max(...(await Promise.all(logs)).map(highestAckInLog));
  };
  const acking = (vm: string, floor: number, notOn?: string) =>
    eventually(
      `${vm} acking past ${floor}${notOn ? ` off ${notOn}` : ""}`,
      async () => {
        const view = await show(vm);
        const elsewhere = view.state === "running" && view.node !== null && view.node !== notOn;
        return elsewhere && (await highestAck(vm)) > floor ? view : undefined;
      },
      ACROSS_A_CUT_MS,
    );

  test("a cut-off node stops its canary; the majority recovers it once, no ack is lost; healed, it rejoins empty", async () => {
    await ok(["vm", "create", "canary", "--canary", "--start"]);
    const before = await acking("canary", 0);
    const cutNode = before.node!;
    const cutAt = Date.now();
    const cut = await cluster.json<{ node: string; address: string; oneway: boolean }>([
      "node",
      "partition",
      cutNode,
    ]);
    assert.deepEqual([cut.node, cut.oneway], [cutNode, false]);

    const recovered = await acking("canary", await highestAck("canary"), cutNode);
    assert.notEqual(recovered.node, cutNode);
    assert.ok(!(await onlineNodes()).includes(cutNode), `${cutNode} is not online on the majority side`);
    // The cut-off node's own agent stopped the old QEMU: nothing of the canary runs there.
    assert.ok(before.pid === null || !isAlive(before.pid), "the partitioned node's QEMU is gone");
    const events = await cluster.json<HavenEvent[]>(["events", "--limit", "10000"]);
    const recoveries = events.filter((e) => e.type === "recovered" && Date.parse(e.time) >= cutAt);
    assert.equal(recoveries.length, 1, JSON.stringify(recoveries));
    assert.deepEqual(findDoubleRuns(events), []);

    assert.match(
      (await ok(["node", "heal", cutNode])).stdout,
      new RegExp(`restored ${cutNode}'s network link`),
    );
    await eventually(
      `${cutNode} online again`,
      async () => ((await onlineNodes()).includes(cutNode) ? true : undefined),
      ACROSS_A_CUT_MS,
    );
    const after = await acking("canary", await highestAck("canary"), cutNode);
    assert.equal(after.node, recovered.node, "the canary stays where it was recovered");
    const onCutNode = (await processesMatching(guestDir(cutNode, "canary"))).filter((p) =>
      p.cmdline.includes("qemu-system"),
    );
    assert.deepEqual(onCutNode, [], "the healed node runs no second canary");
    const acked = await highestAck("canary");
    const report = await cluster.json<CanaryReport>(["canary", "verify", "canary"]);
    assert.deepEqual([report.gaps, report.corrupt, report.forks], [[], [], []]);
    assert.ok(report.highestSeq >= acked, `every ack is on disk (${report.highestSeq} >= ${acked})`);
    assert.deepEqual(findDoubleRuns(await cluster.json<HavenEvent[]>(["events", "--limit", "10000"])), []);
  });

  test("cutting the controller's node elects a new controller on the majority side; one way is enough", async () => {
    const first = await eventually("a controller", async () => (await controller()) ?? undefined);
    await ok(["node", "partition", first, "--oneway"]);
    const next = await eventually(
      "a new controller",
      async () => {
        const now = await controller();
        return now !== null && now !== first ? now : undefined;
      },
      ACROSS_A_CUT_MS,
    );
    assert.ok(NODES.includes(next));
    assert.ok(!(await onlineNodes()).includes(first));
    await ok(["node", "heal", first]);
    await eventually(
      "all nodes online",
      async () => ((await onlineNodes()).length === NODES.length ? true : undefined),
      ACROSS_A_CUT_MS,
    );
    const healed = await cluster.haven(["node", "heal", first]);
    assert.match(healed.stdout, /network link was not cut/);
  });
});
