// A local 3-node cluster on a real Ceph that Haven bootstraps: canary guests on RBD, Ceph health through
// Haven, and a lost OSD that the guest survives.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, test } from "node:test";
import { startLocalCephDaemon, stopLocalCephDaemon } from "../../src/setup/ceph/bootstrap.js";
import type { CephStatus } from "../../src/adapters/ceph/status.js";
import type { RbdStorageConfig } from "../../src/adapters/storage/config.js";
import type { CanaryReport } from "../../src/core/canary.js";
import { highestAckInLog, verifyCanaryImage } from "../../src/core/canary.js";
import { findDoubleRuns } from "../../src/core/history-check.js";
import type { HavenEvent, VmView } from "../../src/core/model.js";
import { isAlive } from "../../src/lib/process.js";
import { labNetworkFor } from "../../src/setup/local-network.js";
import { eventually, SUITE_TIMEOUT, TestCluster } from "./harness.js";
import { NetProbe } from "./net-probe.js";

describe("cluster on Ceph RBD", SUITE_TIMEOUT, () => {
  let cluster: TestCluster;
  let ceph: RbdStorageConfig;
  const show = (vm: string) => cluster.json<VmView & { spec: unknown }>(["vm", "show", vm]);
  const rbd = (...args: string[]) =>
    execFileSync("rbd", ["--conf", ceph.conf, "--keyring", ceph.adminKeyring, "--id", "admin", ...args], {
      encoding: "utf8",
      maxBuffer: 256 * 1024 * 1024,
    });
  const ackAbove = (vm: string, floor: number) =>
    eventually(
      `${vm} acks past ${floor}`,
      async () => {
        const view = await show(vm);
        return view.state === "running" && (view.lastAck ?? 0) > floor ? view : undefined;
      },
      120_000,
    );

  before(async () => {
    cluster = await TestCluster.start({ nodes: 3, storage: "rbd" });
    const file = JSON.parse(await readFile(join(cluster.stateDir, "cluster.json"), "utf8")) as {
      storage: RbdStorageConfig;
    };
    ceph = file.storage;
  });
  afterEach(async () => {
    await cluster.reset();
  });
  after(async () => {
    await cluster?.stop();
  });
  /** Every test that needs a running canary starts its own; the reset after each test deletes it. */
  const startCanary = async (vm: string, ...options: string[]) => {
    await ok(["vm", "create", vm, "--canary", ...options, "--start"]);
    return ackAbove(vm, 0);
  };
  const ok = (args: string[]) => cluster.ok(args);

  test("ceph status: HEALTH_OK, three monitors in quorum, cephx, pool rbd 2/1", async () => {
    const status = await cluster.json<CephStatus>(["ceph", "status"]);
    assert.equal(status.health, "HEALTH_OK");
    assert.equal(status.mons.inQuorum.length, 3);
    assert.equal(status.cephx, true);
    assert.equal(status.osds.up, 3);
    const pool = status.pools.find((p) => p.name === "rbd");
    assert.deepEqual([pool?.size, pool?.minSize], [2, 1]);
    const real = execFileSync("ceph", ["--conf", ceph.conf, "--keyring", ceph.adminKeyring, "-s"], {
      encoding: "utf8",
    });
    assert.match(real, /HEALTH_OK/);
    const human = await cluster.haven(["status"]);
    assert.match(human.stdout, /storage:\s+rbd, HEALTH_OK/);
  });

  test("a canary guest runs on RBD; rbd export shows its records; qemu-img sees the image", async () => {
    const created = await cluster.haven(["vm", "create", "canary", "--canary", "--start"]);
    assert.equal(created.code, 0, created.stderr);
    const view = await ackAbove("canary", 5);
    const status = await show("canary");
    assert.ok(
      (status as unknown as { spec: { disks: Array<{ image: string }> } }).spec.disks[0]?.image ===
        "canary-disk0",
    );
    const images = JSON.parse(rbd("ls", "--format", "json", "rbd")) as string[];
    assert.ok(images.includes("canary-disk0"));
    const exported = execFileSync(
      "rbd",
      [
        "--conf",
        ceph.conf,
        "--keyring",
        ceph.adminKeyring,
        "--id",
        "admin",
        "export",
        "--no-progress",
        "rbd/canary-disk0",
        "-",
      ],
      { maxBuffer: 256 * 1024 * 1024 },
    );
    const report = verifyCanaryImage(new Uint8Array(exported));
    assert.ok(
      report.highestSeq >= view.lastAck!,
      `rbd export shows acked records (${report.highestSeq} >= ${view.lastAck})`,
    );
    assert.deepEqual([report.gaps, report.corrupt, report.forks], [[], [], []]);
    const info = JSON.parse(
      execFileSync(
        "qemu-img",
        [
          "info",
          "--output=json",
          "-f",
          "rbd",
          `rbd:rbd/canary-disk0:id=admin:conf=${ceph.conf}:keyring=${ceph.adminKeyring}`,
        ],
        { encoding: "utf8" },
      ),
    ) as { "virtual-size": number };
    assert.equal(info["virtual-size"], 64 * 1024 * 1024);
  });

  test("the agent records the guest's RBD client address (what fencing blocklists)", async () => {
    await startCanary("canary");
    const status = await eventually("rbd clients in status", async () => {
      const raw = await cluster.haven(["vm", "show", "canary", "--json"]);
      const view = JSON.parse(raw.stdout) as VmView;
      return view.rbdClients.length > 0 ? view : undefined;
    });
    const watchers = JSON.parse(rbd("status", "--format", "json", "rbd/canary-disk0")) as {
      watchers: Array<{ address: string }>;
    };
    assert.deepEqual(status.rbdClients, watchers.watchers.map((w) => w.address).sort());
  });

  test("thin provisioning: a 1 TiB disk uses about nothing", async () => {
    assert.equal((await cluster.haven(["disk", "create", "huge", "--size", "1T"])).code, 0);
    const info = await cluster.json<{ sizeBytes: number; usedBytes: number }>(["disk", "info", "huge"]);
    assert.equal(info.sizeBytes, 1024 ** 4);
    assert.ok(info.usedBytes < 64 * 1024 * 1024, `used ${info.usedBytes}`);
    assert.equal((await cluster.haven(["disk", "delete", "huge"])).code, 0);
  });

  test("a canary on a large thin disk verifies without the disk being read whole", async () => {
    // Before, the verifier read all 16 GiB through rbd export: longer than the CLI waited, on every node.
    const view = await startCanary("big", "--disk-size", "16G");
    const report = await cluster.json<CanaryReport & { disk: string }>(["canary", "verify", "big"]);
    assert.deepEqual([report.disk, report.gaps, report.corrupt, report.forks], ["big-disk0", [], [], []]);
    assert.ok(report.highestSeq >= view.lastAck!, `${report.highestSeq} >= ${view.lastAck}`);
  });

  test("one OSD down: pool degraded, the guest keeps writing and verifies clean, health recovers", async () => {
    const before = await startCanary("canary");
    await stopLocalCephDaemon(ceph.localDir!, "osd", "0", "SIGKILL");
    try {
      await degradedWhileTheGuestWrites(before);
    } finally {
      await startLocalCephDaemon(ceph.localDir!, "osd", "0");
    }
    await eventually(
      "HEALTH_OK again",
      async () => {
        const status = await cluster.json<CephStatus>(["ceph", "status"]);
        return status.health === "HEALTH_OK" ? status : undefined;
      },
      180_000,
    );
    const view = await show("canary");
    const acked = highestAckInLog(
      await readFile(join(cluster.stateDir, "nodes", view.node!, "guests", "canary", "serial.log"), "latin1"),
    );
    const report = await cluster.json<CanaryReport>(["canary", "verify", "canary"]);
    assert.ok(report.highestSeq >= acked, `${report.highestSeq} >= ${acked}`);
    assert.deepEqual([report.gaps, report.corrupt, report.forks], [[], [], []]);
  });

  async function degradedWhileTheGuestWrites(before: VmView): Promise<void> {
    const warned = await eventually(
      "health warning",
      async () => {
        const status = await cluster.json<CephStatus>(["ceph", "status"]);
        return status.health !== "HEALTH_OK" && status.osds.up === 2 ? status : undefined;
      },
      120_000,
    );
    assert.ok(
      warned.checks.some((c) => /OSD_DOWN|PG_DEGRADED/.test(c.code)),
      JSON.stringify(warned.checks),
    );
    const human = await cluster.haven(["status"]);
    assert.match(human.stdout, /HEALTH_WARN/);
    await ackAbove("canary", before.lastAck! + 20);
  }

  test("snapshots, golden-image clones and imports through the CLI", async () => {
    await ok(["disk", "create", "golden", "--size", "10G"]);
    await ok(["disk", "snapshot", "create", "golden", "v1"]);
    const snaps = await cluster.json<Array<{ name: string }>>(["disk", "snapshot", "list", "golden"]);
    assert.deepEqual(
      snaps.map((s) => s.name),
      ["v1"],
    );
    await ok(["disk", "clone", "golden@v1", "guest1"]);
    const clone = await cluster.json<{ parent: string; sizeBytes: number }>(["disk", "info", "guest1"]);
    assert.equal(clone.parent, "rbd/golden@v1");
    assert.equal(clone.sizeBytes, 10 * 1024 ** 3);
    const busy = await cluster.haven(["disk", "snapshot", "delete", "golden", "v1"]);
    assert.equal(busy.code, 4, busy.stderr);
    await ok(["disk", "delete", "guest1"]);
    await ok(["disk", "snapshot", "delete", "golden", "v1"]);
    await ok(["disk", "delete", "golden"]);
    const qcow2 = join(cluster.stateDir, "small.qcow2");
    execFileSync("qemu-img", ["create", "-f", "qcow2", qcow2, "32M"]);
    const imported = await ok(["disk", "import", qcow2, "imported"]);
    assert.match(imported.stderr, /100%/);
    assert.equal(
      (await cluster.json<{ sizeBytes: number }>(["disk", "info", "imported"])).sizeBytes,
      32 * 1024 ** 2,
    );
    await ok(["disk", "delete", "imported"]);
    const clash = await cluster.haven(["disk", "clone", "nosuch", "x"]);
    assert.equal(clash.code, 2, clash.stderr);
  });

  test("another cluster attaches to this Ceph with --ceph-conf and --keyring; bad credentials create nothing", async () => {
    const other = await mkdtemp(join(tmpdir(), "haven-test-attach-"));
    const up = (extra: string[]) =>
      cluster.haven(["--state-dir", other, "cluster", "up", "--nodes", "1", "--accel", "tcg", ...extra]);
    try {
      const wrongKey = join(other, "wrong.keyring");
      await writeFile(wrongKey, "[client.admin]\n\tkey = AQBzZXJpb3VzbHkgbm90IGEga2V5IGF0IGFsbA==\n");
      const refused = await up(["--ceph-conf", ceph.conf, "--keyring", wrongKey]);
      assert.equal(refused.code, 5, refused.stderr);
      assert.match(refused.stderr, /cannot attach to Ceph/);
      const missing = await up(["--ceph-conf", join(other, "nope.conf"), "--keyring", wrongKey]);
      assert.equal(missing.code, 2, missing.stderr);
      assert.match(missing.stderr, /--ceph-conf: file .* does not exist/);
      await assert.rejects(readFile(join(other, "cluster.json")), "nothing was created");

      const attached = await up(["--ceph-conf", ceph.conf, "--keyring", ceph.adminKeyring]);
      assert.equal(attached.code, 0, attached.stderr);
      const created = await cluster.haven([
        "--state-dir",
        other,
        "disk",
        "create",
        "from-other",
        "--size",
        "16",
      ]);
      assert.equal(created.code, 0, created.stderr);
      assert.ok((JSON.parse(rbd("ls", "--format", "json", "rbd")) as string[]).includes("from-other"));
      assert.equal((await cluster.haven(["--state-dir", other, "disk", "delete", "from-other"])).code, 0);
    } finally {
      await cluster.haven(["--state-dir", other, "cluster", "down", "--purge"]);
    }
    // Leaving the attached cluster must not stop a Ceph it does not own.
    const status = await cluster.json<CephStatus>(["ceph", "status"]);
    assert.equal(status.osds.up, 3);
  });

  test("bad input: missing pool, names, in-use disk", async () => {
    await ok(["vm", "create", "canary", "--canary"]);
    const missing = await cluster.haven(["disk", "create", "x", "--size", "8", "--pool", "nopool"]);
    assert.equal(missing.code, 3, missing.stderr);
    assert.match(missing.stderr, /pool nopool does not exist/);
    for (const bad of ["a/b", "..", "a@b", "a b", ""]) {
      const result = await cluster.haven(["disk", "create", bad, "--size", "8"]);
      assert.equal(result.code, 2, `${bad}: ${result.stderr}`);
    }
    const inUse = await cluster.haven(["disk", "delete", "canary-disk0"]);
    assert.equal(inUse.code, 4);
    assert.match(inUse.stderr, /VM canary uses it/);
    const images = JSON.parse(rbd("ls", "--format", "json", "rbd")) as string[];
    assert.deepEqual(images.sort(), ["canary-disk0"]);
  });

  const nodeDir = (node: string) => join(cluster.stateDir, "nodes", node);
  const serialAcks = async (node: string, vm: string) =>
    highestAckInLog(
      await readFile(join(nodeDir(node), "guests", vm, "serial.log"), "latin1").catch(() => ""),
    );

  async function assertCleanAfterFailover(vm: string, nodes: string[]): Promise<void> {
    let acked = 0;
    for (const node of nodes) acked = Math.max(acked, await serialAcks(node, vm));
    const report = await cluster.json<CanaryReport>(["canary", "verify", vm]);
    assert.deepEqual([report.gaps, report.corrupt, report.forks], [[], [], []]);
    assert.ok(
      report.highestSeq >= acked,
      `every acknowledged record is on disk (${report.highestSeq} >= ${acked})`,
    );
  }

  const runningElsewhere = (than: string, what: string) =>
    eventually(
      what,
      async () => {
        const view = await show("canary");
        return view.state === "running" && view.node !== than && (view.lastAck ?? 0) > 0 ? view : undefined;
      },
      60_000,
    );
  const leader = async () => (await cluster.json<{ controller: string | null }>(["status"])).controller;
  const blocklist = () =>
    execFileSync("ceph", ["--conf", ceph.conf, "--keyring", ceph.adminKeyring, "osd", "blocklist", "ls"], {
      encoding: "utf8",
    });

  /** A clean havend restart on the leader hands leadership to another node; repeat until `node` leads. */
  async function makeLeader(node: string): Promise<void> {
    for (let attempt = 0; attempt < 12 && (await leader()) !== node; attempt++) {
      const current = await eventually("a leader", async () => (await leader()) ?? undefined);
      const pid = Number(await readFile(join(nodeDir(current), "havend.pid"), "utf8"));
      process.kill(pid, "SIGTERM");
      await eventually("havend stopped", () => Promise.resolve(isAlive(pid) ? undefined : true));
      await ok(["cluster", "up"]);
      await eventually("a new leader", async () => ((await leader()) !== current ? true : undefined));
    }
    assert.equal(await leader(), node, `${node} became the leader`);
  }

  test("the leader's node is killed: a new leader runs its fence agent, fences and recovers its guest; back, the fence is lifted", async (t) => {
    const before = await startCanary("canary", "--nic", `bridge=${labNetworkFor(cluster.stateDir).bridge}`);
    const victim = before.node!;
    const { probe, nic } = await NetProbe.startOn(cluster, "canary");
    await makeLeader(victim);
    const marker = join(cluster.stateDir, "fence-agent.log");
    const agent = join(cluster.stateDir, "fence-agent.sh");
    await writeFile(agent, `#!/bin/sh\necho "$HAVEN_FENCE_NODE $1" >> ${marker}\n`, { mode: 0o755 });
    await ok(["fence", "agent", "set", victim, "--", agent, "--off"]);

    await probe.answerAfter(0);
    const killedAt = Date.now();
    await ok(["node", "kill", victim]);
    const after = await runningElsewhere(victim, "canary acking on another node");
    const recoveredAt = Date.now();
    try {
      const answer = await probe.answerAfter(recoveredAt, "an answer over the network from the new node");
      const lastBefore = probe.answers.filter((a) => a.at < killedAt).at(-1)!;
      assert.ok(answer.seq > lastBefore.seq, `the recovered guest goes on from its disk (${answer.seq})`);
      const moved = (await show("canary")).nics[0]!;
      assert.deepEqual([moved.mac, moved.addresses], [nic.mac, nic.addresses], "same MAC and address");
      t.diagnostic(
        `acking again on ${after.node} ${Date.now() - killedAt} ms after the leader ${victim} was killed; ` +
          `a network client saw no answer for ${probe.outage(killedAt, answer.at)} ms`,
      );
    } finally {
      probe.stop();
    }
    const newLeader = await leader();
    assert.ok(newLeader && newLeader !== victim, `a new leader (${newLeader}) took over`);
    assert.equal(
      (await readFile(marker, "utf8")).trim(),
      `${victim} --off`,
      "the fence agent ran once, for the victim",
    );
    const events = await cluster.json<HavenEvent[]>(["events", "--limit", "500"]);
    const since = events.filter((e) => Date.parse(e.time) >= killedAt);
    const order = ["node-lost", "power-fenced", "fenced", "recovered"].map((type) =>
      since.findIndex((e) => e.type === type),
    );
    assert.ok(
      order.every((i, k) => i >= 0 && (k === 0 || i > order[k - 1]!)),
      `in order: ${JSON.stringify(order)}`,
    );
    const fenced = (
      await cluster.json<{ storageFences: Array<{ node: string; addresses: string[] }> }>(["fence", "list"])
    ).storageFences;
    assert.equal(fenced.length, 1);
    assert.equal(fenced[0]!.node, victim);
    for (const address of fenced[0]!.addresses)
      assert.ok(blocklist().includes(address), `${address} blocklisted`);

    await ackAbove("canary", (await show("canary")).lastAck! + 5);
    await assertCleanAfterFailover("canary", [victim, after.node!]);
    await ok(["cluster", "up"]);
    await eventually("the fence lifted once the node is back", async () => {
      const list = await cluster.json<{ storageFences: unknown[] }>(["fence", "list"]);
      return list.storageFences.length === 0 ? true : undefined;
    });
    for (const address of fenced[0]!.addresses)
      assert.ok(!blocklist().includes(address), `${address} unblocklisted`);
    assert.deepEqual(findDoubleRuns(await cluster.json<HavenEvent[]>(["events", "--limit", "10000"])), []);
  });

  test("a frozen node: recovered elsewhere; thawed, its old QEMU cannot write and is killed", async () => {
    const before = await startCanary("canary");
    await ok(["node", "freeze", before.node!]);
    try {
      const after = await runningElsewhere(before.node!, "canary recovered while its old node is frozen");
      await ackAbove("canary", after.lastAck! + 5);
    } finally {
      await ok(["node", "thaw", before.node!]);
    }
    await eventually("the old QEMU killed by its own agent", () =>
      Promise.resolve(isAlive(before.pid!) ? undefined : true),
    );
    await ackAbove("canary", (await show("canary")).lastAck! + 5);
    await assertCleanAfterFailover("canary", [before.node!, (await show("canary")).node!]);
    assert.deepEqual(findDoubleRuns(await cluster.json<HavenEvent[]>(["events", "--limit", "10000"])), []);
  });

  test("a frozen node that comes back leaves its moved guest's status alone: the guest migrates back, and that node drains", async () => {
    const before = await startCanary("canary");
    const returned = before.node!;
    await ok(["node", "freeze", returned]);
    let moved: VmView;
    try {
      moved = await runningElsewhere(returned, "canary recovered while its old node is frozen");
    } finally {
      await ok(["node", "thaw", returned]);
    }
    await eventually(`${returned} back in the cluster`, async () => {
      const nodes = await cluster.json<Array<{ name: string }>>(["node", "list"]);
      return nodes.some((n) => n.name === returned) ? true : undefined;
    });
    await eventually("the old QEMU killed by its own agent", () =>
      Promise.resolve(isAlive(before.pid!) ? undefined : true),
    );
    // The returning node re-registered with a stale view: its report (self-fenced, the old generation) must
    // not have replaced the status of the QEMU that runs the guest now.
    for (let look = 0; look < 10; look++) {
      const view = await show("canary");
      assert.deepEqual(
        [view.state, view.node, view.pid],
        ["running", moved.node, moved.pid],
        "the status stays the running QEMU's",
      );
      await new Promise((r) => setTimeout(r, 300));
    }
    try {
      await ok(["vm", "migrate", "canary", "--to", returned]);
      const back = await ackAbove("canary", (await show("canary")).lastAck!);
      assert.equal(back.node, returned, "migrated to the node that came back");
      await ok(["node", "drain", returned]);
      const drained = await ackAbove("canary", (await show("canary")).lastAck!);
      assert.notEqual(drained.node, returned, "drained off it");
    } finally {
      await cluster.haven(["node", "maintenance", "off", returned]);
    }
    await ackAbove("canary", (await show("canary")).lastAck! + 5);
    await assertCleanAfterFailover("canary", ["node1", "node2", "node3"]);
    assert.deepEqual(findDoubleRuns(await cluster.json<HavenEvent[]>(["events", "--limit", "10000"])), []);
  });
});
