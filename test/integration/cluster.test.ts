// End to end through the CLI on a real local cluster: real etcd, three havends, real QEMU (TCG) guests.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { CanaryReport } from "../../src/core/canary.js";
import { highestAckInLog } from "../../src/core/canary.js";
import type { VmView } from "../../src/core/model.js";
import { eventually, TestCluster } from "./harness.js";

interface NodeRow {
  name: string;
  state: string;
  accel: string;
}

describe("local 3-node cluster", { timeout: 600_000 }, () => {
  let cluster: TestCluster;
  const show = (vm: string) => cluster.json<VmView>(["vm", "show", vm]);
  const ackAbove = (vm: string, floor: number) =>
    eventually(`${vm} acks past ${floor}`, async () => {
      const view = await show(vm);
      return view.state === "running" && (view.lastAck ?? 0) > floor ? view : undefined;
    });
  const serialLog = (view: VmView) =>
    readFile(join(cluster.stateDir, "nodes", view.node!, "guests", view.name, "serial.log"), "latin1");

  before(async () => {
    cluster = await TestCluster.start({ nodes: 3 });
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
    const victim = await ackAbove("canary", 0);
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
    const running = await ackAbove("canary", 0);
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
    const stop = await cluster.haven(["vm", "stop", "flaky"]);
    assert.equal(stop.code, 0, stop.stderr);
    const del = await cluster.haven(["vm", "delete", "flaky"]);
    assert.equal(del.code, 0, del.stderr);
    const disks = await cluster.json<Array<{ name: string }>>(["disk", "list"]);
    assert.ok(!disks.some((d) => d.name === "flaky-disk0"), "deleting a VM deletes its disk");
  });

  test("the serial console log is kept under the node's state directory", async () => {
    const view = await ackAbove("canary", 0);
    const log = await serialLog(view);
    assert.match(log, /haven-guest: up/);
    assert.ok(highestAckInLog(log) >= view.lastAck!);
  });

  test("events --follow prints new events as they happen", async () => {
    const follow = cluster.haven(["events", "--follow", "--json", "--limit", "1"], { timeoutMs: 6000 });
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal((await cluster.haven(["vm", "create", "followed", "--canary"])).code, 0);
    const lines = (await follow).stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { type: string; vm?: string });
    assert.ok(
      lines.some((e) => e.type === "created" && e.vm === "followed"),
      JSON.stringify(lines),
    );
    assert.equal((await cluster.haven(["vm", "delete", "followed"])).code, 0);
  });

  test("vm console shows the serial output", async () => {
    const console = await cluster.haven(["vm", "console", "canary"], { input: "", timeoutMs: 20_000 });
    assert.equal(console.code, 0, console.stderr);
    assert.match(console.stderr, /Ctrl-]/);
    assert.match(console.stdout, /ack \d+/);
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
