// A local 3-node cluster on a real Ceph that Haven bootstraps: canary guests on RBD, Ceph health through
// Haven, and a lost OSD that the guest survives.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { startLocalCephDaemon, stopLocalCephDaemon } from "../../src/adapters/ceph/bootstrap.js";
import type { CephStatus } from "../../src/adapters/ceph/status.js";
import type { RbdStorageConfig } from "../../src/adapters/storage/config.js";
import type { CanaryReport } from "../../src/core/canary.js";
import { highestAckInLog, verifyCanaryImage } from "../../src/core/canary.js";
import type { VmView } from "../../src/core/model.js";
import { eventually, TestCluster } from "./harness.js";

describe("cluster on Ceph RBD", { timeout: 900_000 }, () => {
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
  after(async () => {
    await cluster?.stop();
  });

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

  test("one OSD down: pool degraded, the guest keeps writing and verifies clean, health recovers", async () => {
    const before = await ackAbove("canary", 0);
    await stopLocalCephDaemon(ceph.localDir!, "osd", "0", "SIGKILL");
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
    await startLocalCephDaemon(ceph.localDir!, "osd", "0");
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

  test("bad input: missing pool, names, in-use disk", async () => {
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
});
