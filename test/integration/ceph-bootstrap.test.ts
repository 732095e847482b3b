// A real local Ceph (3 monitors, 3 file-backed OSDs, 1 manager, cephx on) from Debian's packages:
// bootstrap to HEALTH_OK, cephx users and their caps, clear errors for a wrong key and an unreachable
// cluster, one OSD killed and brought back, bootstrap again (idempotent, restarts what is missing), and a
// stop that leaves no process. Every daemon's argv holds the temp dir, so the suite's leak check sees them.
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  bootstrapLocalCeph,
  localCephDaemonPid,
  startLocalCephDaemon,
  stopLocalCeph,
  stopLocalCephDaemon,
  waitForCephHealth,
  type LocalCephInfo,
  type LocalCephOptions,
} from "../../src/setup/ceph/bootstrap.js";
import { cephExec, type CephIdentity } from "../../src/adapters/ceph/exec.js";
import { CommandError, run } from "../../src/lib/command.js";
import { cephStatus, formatCephStatus, type CephStatus } from "../../src/adapters/ceph/status.js";
import { waitFor } from "../../src/lib/async.js";
import { processesMatching } from "../../src/lib/process.js";

// Loopback addresses of their own, so a local cluster someone runs on 127.0.10.x does not matter.
const NODES = [1, 2, 3].map((i) => ({ name: `node${i}`, host: `127.0.41.${i}` }));

let root: string;
let dir: string;
let ceph: LocalCephInfo;
let options: LocalCephOptions;
const progress: string[] = [];

const nodeIdentity = (node: string): CephIdentity => ({
  conf: ceph.conf,
  keyring: ceph.clientKeyrings[node]!,
  id: `haven-${node}`,
});

const seconds = (since: number) => Number(((Date.now() - since) / 1000).toFixed(1));

describe("local Ceph", () => {
  // Started before the cluster and checked later: a client of an address where no monitor listens
  // waits out its whole connect timeout (10 s), which can overlap with the bootstrap.
  let unreachable: Promise<unknown>;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "haven-test-ceph-"));
    dir = join(root, "ceph");
    options = {
      dir,
      mons: NODES,
      clients: NODES.map((n) => n.name),
      progress: (line) => progress.push(line),
    };
    const conf = join(root, "nowhere.conf");
    await writeFile(conf, "[global]\nmon_host = [v2:127.0.41.250:3300]\n");
    unreachable = cephStatus({ conf, keyring: "/dev/null", id: "admin" }).then(
      () => assert.fail("cephStatus answered for a cluster that does not exist"),
      (err: unknown) => err,
    );
  });

  after(async () => {
    await stopLocalCeph(dir);
    await rm(root, { recursive: true, force: true });
  });

  it("bootstraps 3 monitors, 3 OSDs and a manager to HEALTH_OK with cephx on", async (t) => {
    // What an interrupted bootstrap leaves: Haven's ceph.conf without a completed record. It is redone.
    await mkdir(join(dir, "mon", "node1"), { recursive: true });
    await writeFile(join(dir, "ceph.conf"), "# Written by Haven (interrupted)\n[global]\n");
    const started = Date.now();
    ceph = await bootstrapLocalCeph(options);
    t.diagnostic(`bootstrap took ${seconds(started)} s`);
    for (const line of progress) t.diagnostic(line);
    assert.ok(progress.some((line) => line.includes("HEALTH_OK")));
    assert.match(progress[0]!, /found an unfinished Ceph bootstrap/);

    const status = await cephStatus(ceph.admin);
    assert.equal(status.health, "HEALTH_OK", formatCephStatus(status).join("\n"));
    assert.equal(status.fsid, ceph.fsid);
    assert.equal(status.mons.total, 3);
    assert.deepEqual([...status.mons.inQuorum].sort(), ["node1", "node2", "node3"]);
    assert.deepEqual(status.osds, { total: 3, up: 3, in: 3 });
    assert.equal(status.cephx, true);
    assert.equal(status.managerAvailable, true);
    assert.deepEqual(
      status.pools.map(({ name, size, minSize, application }) => ({ name, size, minSize, application })),
      [{ name: "rbd", size: 2, minSize: 1, application: ["rbd"] }],
    );
    assert.ok(status.usage.totalBytes >= 3 * 10 * 1024 ** 3 * 0.95, `total ${status.usage.totalBytes}`);
    assert.ok(status.usage.availBytes > 0 && status.usage.usedBytes > 0);

    const lines = formatCephStatus(status);
    assert.equal(lines[0], "health: HEALTH_OK");
    assert.ok(lines.some((line) => line.startsWith("mons: 3/3 in quorum")));
    assert.ok(lines.some((line) => line.startsWith("osds: 3/3 up, 3/3 in")));
    assert.ok(lines.some((line) => /^pool rbd: size 2, min_size 1, 32 PGs, application rbd/.test(line)));

    // Monitors listen on their own node's address with v2 and v1; cephx is in the conf, keyrings are private.
    const conf = await readFile(ceph.conf, "utf8");
    assert.match(conf, /^mon_host = \[v2:127\.0\.41\.1:\d+,v1:127\.0\.41\.1:\d+\],\[v2:127\.0\.41\.2:/m);
    for (const key of ["auth_cluster_required", "auth_service_required", "auth_client_required"])
      assert.match(conf, new RegExp(`^${key} = cephx$`, "m"));
    for (const keyring of [ceph.adminKeyring, ...Object.values(ceph.clientKeyrings)])
      assert.equal((await stat(keyring)).mode & 0o777, 0o600, keyring);
    assert.deepEqual(Object.keys(ceph.clientKeyrings).sort(), ["node1", "node2", "node3"]);
  });

  it("gives each node a cephx user that can use RBD images and nothing more", async () => {
    const node1 = nodeIdentity("node1");
    assert.equal(await cephExec("rbd", node1, ["ls", "--pool", "rbd", "--format", "json"]), "[]\n");
    await assert.rejects(cephExec("ceph", node1, ["osd", "pool", "create", "stolen", "8"]), (err) => {
      assert.ok(err instanceof CommandError);
      assert.match(err.stderr, /access denied|EACCES/i);
      return true;
    });
    await assert.rejects(cephExec("ceph", node1, ["auth", "ls"]), CommandError);
    // The status is readable with the node's key too (cephx then judged from the client's own conf).
    const status = await cephStatus(node1);
    assert.equal(status.health, "HEALTH_OK");
    assert.equal(status.cephx, true);
  });

  it("says authentication failed for a wrong key and unreachable for a cluster that is not there", async () => {
    const wrong = join(root, "wrong.keyring");
    const key = (await run("ceph-authtool", ["--gen-print-key"])).trim();
    await writeFile(wrong, `[client.haven-node1]\n\tkey = ${key}\n`, { mode: 0o600 });
    await assert.rejects(cephStatus({ conf: ceph.conf, keyring: wrong, id: "haven-node1" }), (err: Error) => {
      assert.match(err.message, /^Ceph authentication failed for client\.haven-node1 .*wrong\.keyring/);
      return true;
    });
    await assert.rejects(
      cephStatus({ conf: ceph.conf, keyring: join(root, "missing"), id: "admin" }),
      (err: Error) => {
        assert.match(
          err.message,
          /authentication failed for client\.admin: no usable key/,
          JSON.stringify((err.cause as CommandError | undefined)?.stderr),
        );
        return true;
      },
    );
    const err = (await unreachable) as Error;
    assert.match(err.message, /^Ceph is unreachable: .*mon_host \[v2:127\.0\.41\.250:3300\]/);
  });

  it("keeps serving I/O with one OSD down, warns, and returns to HEALTH_OK when it is back", async (t) => {
    const node1 = nodeIdentity("node1");
    await cephExec("rbd", node1, ["create", "rbd/degraded", "--size", "64M"]);
    await cephExec("rbd", node1, ["bench", "--io-type", "write", "--io-total", "8M", "rbd/degraded"], {
      timeoutMs: 60_000,
    });
    const osd = ceph.osds.find((o) => o.node === "node2")!;

    const killed = Date.now();
    await stopLocalCephDaemon(dir, "osd", String(osd.id), "SIGKILL");
    const down = await waitFor(
      "OSD_DOWN",
      async () => {
        const status = await cephStatus(ceph.admin);
        return status.checks.some((c) => c.code === "OSD_DOWN") ? status : undefined;
      },
      60_000,
      250,
    );
    t.diagnostic(`OSD_DOWN reported ${seconds(killed)} s after SIGKILL`);
    assert.equal(down.health, "HEALTH_WARN");
    assert.deepEqual(down.osds, { total: 3, up: 2, in: 3 });
    assert.ok(
      formatCephStatus(down).some((line) => line.startsWith("  OSD_DOWN (HEALTH_WARN): 1 osds down")),
    );

    // min_size 1: writes still complete with one copy of each object.
    const wrote = Date.now();
    await cephExec("rbd", node1, ["bench", "--io-type", "write", "--io-total", "8M", "rbd/degraded"], {
      timeoutMs: 60_000,
    });
    t.diagnostic(`8 MiB written with one OSD down in ${seconds(wrote)} s`);
    const degraded = await waitFor(
      "PG_DEGRADED",
      async () => {
        const status = await cephStatus(ceph.admin);
        return status.checks.some((c) => c.code === "PG_DEGRADED") ? status : undefined;
      },
      30_000,
      250,
    );
    assert.equal(degraded.health, "HEALTH_WARN");

    const restarted = Date.now();
    await startLocalCephDaemon(dir, "osd", String(osd.id));
    await waitForCephHealth(ceph.admin, { timeoutMs: 120_000, expectOsds: 3 });
    t.diagnostic(`HEALTH_OK again ${seconds(restarted)} s after the OSD restarted`);
    const back: CephStatus = await cephStatus(ceph.admin);
    assert.equal(back.health, "HEALTH_OK");
    assert.deepEqual(back.osds, { total: 3, up: 3, in: 3 });
  });

  it("bootstraps again, restarting only what is not running", async (t) => {
    const daemonPids = () =>
      Promise.all([
        ...ceph.mons.map((mon) => localCephDaemonPid(dir, "mon", mon.name)),
        localCephDaemonPid(dir, "mgr", ceph.mgr.id),
        ...ceph.osds.map((osd) => localCephDaemonPid(dir, "osd", String(osd.id))),
      ]);
    const running = await daemonPids();
    const quick = Date.now();
    const again = await bootstrapLocalCeph(options);
    t.diagnostic(`bootstrap of a running cluster took ${seconds(quick)} s`);
    assert.deepEqual(again, ceph);
    assert.deepEqual(await daemonPids(), running, "no daemon was restarted");

    await stopLocalCephDaemon(dir, "mon", "node3", "SIGKILL");
    await stopLocalCephDaemon(dir, "mgr", ceph.mgr.id);
    assert.equal(await localCephDaemonPid(dir, "mon", "node3"), undefined);
    const restarted = Date.now();
    const lines: string[] = [];
    const third = await bootstrapLocalCeph({ ...options, progress: (line) => lines.push(line) });
    t.diagnostic(`bootstrap restarting a monitor and the manager took ${seconds(restarted)} s`);
    assert.equal(third.fsid, ceph.fsid);
    assert.ok(
      lines.some((line) => line.includes("started mon.node3, mgr.node1")),
      lines.join("\n"),
    );
    const status = await cephStatus(ceph.admin);
    assert.equal(status.health, "HEALTH_OK");
    assert.equal(status.mons.inQuorum.length, 3);
  });

  it("refuses addresses outside loopback and the lab range, and a ceph.conf it did not write, before touching anything", async () => {
    const elsewhere = join(root, "elsewhere");
    await assert.rejects(
      bootstrapLocalCeph({ ...options, dir: elsewhere, mons: [{ name: "node1", host: "10.0.0.1" }] }),
      /loopback or 198\.18\.0\.0\/15 addresses only/,
    );
    await assert.rejects(stat(elsewhere), { code: "ENOENT" });
    const foreign = join(root, "foreign");
    await mkdir(foreign);
    await writeFile(join(foreign, "ceph.conf"), "[global]\nfsid = 00000000-0000-0000-0000-000000000000\n");
    await assert.rejects(bootstrapLocalCeph({ ...options, dir: foreign }), /was not written by Haven/);
    assert.deepEqual(await readdir(foreign), ["ceph.conf"]);
  });

  it("stops every daemon, and starts them all again", async (t) => {
    const stopped = Date.now();
    await stopLocalCeph(dir);
    t.diagnostic(`stop took ${seconds(stopped)} s`);
    assert.deepEqual(await processesMatching(dir), []);

    const started = Date.now();
    const again = await bootstrapLocalCeph(options);
    t.diagnostic(`start of the stopped cluster took ${seconds(started)} s`);
    assert.equal(again.fsid, ceph.fsid);
    const status = await cephStatus(ceph.admin);
    assert.equal(status.health, "HEALTH_OK");
    assert.equal(status.mons.inQuorum.length, 3);
    assert.deepEqual(status.osds, { total: 3, up: 3, in: 3 });
    assert.deepEqual(
      await cephExec("rbd", nodeIdentity("node3"), ["ls", "--pool", "rbd", "--format", "json"]),
      '["degraded"]\n',
    );

    await stopLocalCeph(dir);
    assert.deepEqual(await processesMatching(dir), []);
  });
});
