// End to end through the CLI on a real local cluster: real etcd, three havends, real QEMU (TCG) guests.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, afterEach, before, describe, test } from "node:test";
import type { CanaryReport } from "../../src/core/canary.js";
import { highestAckInLog } from "../../src/core/canary.js";
import type { VmView } from "../../src/core/model.js";
import { eventually, SUITE_TIMEOUT, TestCluster } from "./harness.js";

interface NodeRow {
  name: string;
  state: string;
  accel: string;
}

describe("local 3-node cluster", SUITE_TIMEOUT, () => {
  let cluster: TestCluster;
  const show = (vm: string) => cluster.json<VmView>(["vm", "show", vm]);
  const ackAbove = (vm: string, floor: number) =>
    eventually(`${vm} acks past ${floor}`, async () => {
      const view = await show(vm);
      return view.state === "running" && (view.lastAck ?? 0) > floor ? view : undefined;
    });
  const serialLog = (view: VmView) =>
    readFile(join(cluster.stateDir, "nodes", view.node!, "guests", view.name, "serial.log"), "latin1");
  const ok = (args: string[]) => cluster.ok(args);
  /** Every test that needs a running canary starts its own. */
  const startCanary = async (vm: string) => {
    await ok(["vm", "create", vm, "--canary", "--start"]);
    return ackAbove(vm, 0);
  };

  before(async () => {
    cluster = await TestCluster.start({ nodes: 3 });
  });
  afterEach(async () => {
    await cluster.reset();
  });
  after(async () => {
    await cluster?.stop();
  });

  test("three nodes are online with an accelerator", async () => {
    const nodes = await cluster.json<NodeRow[]>(["node", "list"]);
    assert.deepEqual(
      nodes.map((n) => [n.name, n.state]),
      [
        ["node1", "online"],
        ["node2", "online"],
        ["node3", "online"],
      ],
    );
    assert.ok(nodes.every((n) => n.accel === "tcg"));
    const status = await cluster.json<{ controller: string | null }>(["status"]);
    assert.match(status.controller ?? "", /^node[123]$/);
  });

  test("a canary guest boots, runs on a node and acks fsynced records", async () => {
    const created = await cluster.haven(["vm", "create", "canary", "--canary", "--start", "--json"]);
    assert.equal(created.code, 0, created.stderr);
    const view = await ackAbove("canary", 3);
    assert.match(view.node ?? "", /^node[123]$/);
    assert.ok(view.pid && view.pid > 0);
    const disks = await cluster.json<Array<{ name: string; location: string }>>(["disk", "list"]);
    const disk = disks.find((d) => d.name === "canary-disk0");
    assert.ok(disk, "the canary's disk exists");
    const info = JSON.parse(
      execFileSync("qemu-img", ["info", "--output=json", "-U", disk.location], { encoding: "utf8" }),
    ) as {
      format: string;
      "virtual-size": number;
    };
    assert.equal(info.format, "raw");
    assert.equal(info["virtual-size"], 64 * 1024 * 1024);
  });

  test("stop and start: the sequence resumes after the highest record", async () => {
    await startCanary("canary");
    const stop = await cluster.haven(["vm", "stop", "canary"]);
    assert.equal(stop.code, 0, stop.stderr);
    const stopped = await show("canary");
    assert.equal(stopped.state, "stopped");
    assert.equal(stopped.node, null);
    const before = await cluster.json<CanaryReport>(["canary", "verify", "canary"]);
    const start = await cluster.haven(["vm", "start", "canary"]);
    assert.equal(start.code, 0, start.stderr);
    await ackAbove("canary", before.highestSeq + 2);
    await assertCleanCanary("canary");
  });

  test("kill -9 of QEMU: the controller restarts it and the sequence continues", async () => {
    const victim = await startCanary("canary");
    process.kill(victim.pid!, "SIGKILL");
    const restarted = await eventually("canary restarted", async () => {
      const view = await show("canary");
      return view.state === "running" && view.pid !== victim.pid && view.restarts === 1 ? view : undefined;
    });
    assert.ok(restarted.generation! > victim.generation!);
    await ackAbove("canary", victim.lastAck! + 3);
    await assertCleanCanary("canary");
    const events = await cluster.json<Array<{ type: string; vm?: string }>>(["events"]);
    assert.ok(events.some((e) => e.type === "crashed" && e.vm === "canary"));
    assert.ok(events.some((e) => e.type === "restarting" && e.vm === "canary"));
  });

  test("restarting havend re-attaches to the running QEMU without restarting it", async () => {
    const running = await startCanary("canary");
    const pidFile = join(cluster.stateDir, "nodes", running.node!, "havend.pid");
    const havendPid = Number(await readFile(pidFile, "utf8"));
    process.kill(havendPid, "SIGKILL");
    const up = await cluster.haven(["cluster", "up"]);
    assert.equal(up.code, 0, up.stderr);
    assert.notEqual(Number(await readFile(pidFile, "utf8")), havendPid, "a new havend runs");
    const after = await ackAbove("canary", running.lastAck! + 5);
    assert.equal(after.pid, running.pid, "the same QEMU keeps running");
    assert.equal(after.generation, running.generation);
  });

  test("a guest that keeps crashing: restarted in place, relocated, restarted there, then error", async () => {
    const created = await cluster.haven([
      "vm",
      "create",
      "flaky",
      "--canary",
      "--restart-limit",
      "1",
      "--relocate-limit",
      "1",
      "--start",
    ]);
    assert.equal(created.code, 0, created.stderr);
    const crashUntil = async (what: string, previous: VmView, check: (view: VmView) => boolean) => {
      process.kill(previous.pid!, "SIGKILL");
      return eventually(what, async () => {
        const view = await show("flaky");
        return view.pid !== previous.pid && check(view) ? view : undefined;
      });
    };
    const first = await ackAbove("flaky", 0);
    const inPlace = await crashUntil("restarted in place", first, (v) => v.state === "running");
    assert.equal(inPlace.node, first.node);
    const moved = await crashUntil(
      "relocated",
      inPlace,
      (v) => v.state === "running" && v.node !== first.node,
    );
    assert.equal(moved.restarts, 0, "restarts count anew on the new node");
    const again = await crashUntil("restarted on the new node", moved, (v) => v.state === "running");
    assert.equal(again.node, moved.node);
    const failed = await crashUntil("in error", again, (v) => v.state === "error");
    assert.match(failed.reason ?? "", /gave up after 1 restarts \(limit 1\) and 1 relocations \(limit 1\)/);
    const events = await cluster.json<Array<{ type: string; vm?: string }>>(["events", "--limit", "500"]);
    for (const type of ["restarting", "relocating", "error"]) {
      assert.ok(
        events.some((e) => e.type === type && e.vm === "flaky"),
        type,
      );
    }
    await ok(["vm", "stop", "flaky"]);
    await ok(["vm", "delete", "flaky"]);
    const disks = await cluster.json<Array<{ name: string }>>(["disk", "list"]);
    assert.ok(!disks.some((d) => d.name === "flaky-disk0"), "deleting a VM deletes its disk");
  });

  test("the serial console log is kept under the node's state directory", async () => {
    const view = await startCanary("canary");
    const log = await serialLog(view);
    assert.match(log, /haven-guest: up/);
    assert.ok(highestAckInLog(log) >= view.lastAck!);
  });

  test("events --follow prints new events as they happen", async () => {
    const follow = cluster.follow(["events", "--follow", "--json", "--limit", "1"]);
    const events = () =>
      follow
        .output()
        .split("\n")
        .filter((line) => line.endsWith("}"))
        .map((line) => JSON.parse(line) as { type: string; vm?: string });
    try {
      // The newest event comes first: from then on the follower is listening.
      await eventually("the newest event", () => Promise.resolve(events().length > 0 ? true : undefined));
      await ok(["vm", "create", "followed", "--canary"]);
      await eventually("the created event, followed", () =>
        Promise.resolve(events().some((e) => e.type === "created" && e.vm === "followed") ? true : undefined),
      );
    } finally {
      await follow.stop();
    }
  });

  test("vm console shows the serial output", async () => {
    await startCanary("canary");
    const console = cluster.follow(["vm", "console", "canary"]);
    try {
      await eventually("an ack on the console", () =>
        Promise.resolve(/ack \d+/.test(console.output()) ? true : undefined),
      );
    } finally {
      const { stderr } = await console.stop();
      assert.match(stderr, /Ctrl-]/);
    }
  });

  async function assertCleanCanary(vm: string): Promise<void> {
    // Acks first, disk second: the guest keeps writing, so the disk can only be ahead of the log.
    const acked = highestAckInLog(await serialLog(await show(vm)));
    const report = await cluster.json<CanaryReport>(["canary", "verify", vm]);
    assert.deepEqual(report.gaps, []);
    assert.deepEqual(report.corrupt, []);
    assert.deepEqual(report.forks, []);
    assert.ok(
      report.highestSeq >= acked,
      `every acknowledged record is on disk (${report.highestSeq} >= ${acked})`,
    );
  }
});
