// RbdStorage against a real local Ceph that bootstrapLocalCeph starts in a temp dir: the image lifecycle,
// thin provisioning, snapshots and rollback, golden-image clones, raw and qcow2 imports with progress, reads
// through the backend, watchers (a paused QEMU holds the image open), and the bad inputs: names, a missing
// pool, a wrong keyring, an unreachable cluster. Timings are printed with `t:` so the numbers can be quoted.
import assert from "node:assert/strict";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { bootstrapLocalCeph, stopLocalCeph } from "../../src/setup/ceph/bootstrap.js";
import type { CephIdentity } from "../../src/adapters/ceph/exec.js";
import { openRbdStorage, RbdStorage } from "../../src/adapters/storage/rbd.js";
import { waitFor } from "../../src/lib/async.js";
import { processesMatching, terminate } from "../../src/lib/process.js";
import { SUITE_TIMEOUT } from "./harness.js";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;
// Local "hosts" on their own loopback addresses, as a 3-node local cluster would have them.
const NODES = [
  { name: "node1", host: "127.0.31.1" },
  { name: "node2", host: "127.0.31.2" },
  { name: "node3", host: "127.0.31.3" },
];

const timing = (label: string, ms: number, extra = "") =>
  console.log(`t: ${label}: ${Math.round(ms)} ms${extra ? ` (${extra})` : ""}`);

async function timed<T>(label: string, work: () => Promise<T>, extra?: (ms: number) => string): Promise<T> {
  const start = performance.now();
  const value = await work();
  const ms = performance.now() - start;
  timing(label, ms, extra?.(ms));
  return value;
}

describe("RBD storage on a real local Ceph", SUITE_TIMEOUT, () => {
  let root: string;
  let cephDir: string;
  let admin: CephIdentity;
  let nodeIdentities: Record<string, CephIdentity>;
  let storage: RbdStorage;
  const qemus: ChildProcess[] = [];

  /** qemu-io on an image with the admin identity, e.g. `write -P 0xaa 0 1M`. */
  const qemuIo = (image: string, command: string) =>
    execFileSync("qemu-io", ["-f", "raw", "-c", command, storage.qemuUri(image)], { encoding: "utf8" });
  const rbdCli = (...args: string[]) =>
    execFileSync("rbd", ["--conf", admin.conf, "--keyring", admin.keyring, "--id", admin.id, ...args], {
      encoding: "utf8",
    });
  const filled = (byte: number, length: number) => Buffer.alloc(length, byte);

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "haven-test-"));
    cephDir = join(root, "ceph");
    const ceph = await timed("bootstrap local Ceph (3 mons, 3 OSDs)", () =>
      bootstrapLocalCeph({
        dir: cephDir,
        mons: NODES,
        clients: NODES.map((node) => node.name),
        progress: (line: string) => console.log(`ceph: ${line}`),
      }),
    );
    admin = { conf: ceph.conf, keyring: ceph.adminKeyring, id: "admin" };
    nodeIdentities = Object.fromEntries(
      Object.entries(ceph.clientKeyrings).map(([node, keyring]) => [
        node,
        { conf: ceph.conf, keyring, id: `haven-${node}` },
      ]),
    );
    storage = await openRbdStorage({
      pool: ceph.pool,
      admin,
      nodeIdentity: (node) => nodeIdentities[node] ?? admin,
    });
  });

  after(async () => {
    for (const qemu of qemus) qemu.kill("SIGKILL");
    if (cephDir) await stopLocalCeph(cephDir).catch((err: unknown) => console.error(err));
    const leftovers = root ? await processesMatching(root) : [];
    await Promise.all(leftovers.map(({ pid }) => terminate(pid, 2000)));
    if (root) await rm(root, { recursive: true, force: true });
    assert.deepEqual(
      leftovers.map((p) => p.cmdline),
      [],
      "processes left behind",
    );
  });

  test("health is ok on a fresh cluster", async () => {
    const health = await storage.health();
    assert.equal(health.ok, true, health.summary);
    assert.match(health.summary, /^HEALTH_(OK|WARN)/);
  });

  test("lifecycle: a thin 1 TiB disk, info, grow, refused shrink, list, delete", async () => {
    const before = await storage.usage();
    const created = await timed("create 1 TiB", () => storage.create("life", TiB));
    assert.deepEqual(created, {
      name: "life",
      pool: "rbd",
      sizeBytes: TiB,
      usedBytes: 0,
      format: "raw",
      location: "rbd:rbd/life",
      parent: null,
    });
    await assert.rejects(storage.create("life", GiB), {
      code: "CONFLICT",
      message: "disk life already exists",
    });

    const usage = await storage.usage();
    assert.equal(usage.provisionedBytes - before.provisionedBytes, TiB);
    assert.equal(usage.images - before.images, 1);
    assert.ok(usage.usedBytes - before.usedBytes < MiB, `a 1 TiB thin disk uses ${usage.usedBytes} bytes`);

    assert.equal((await storage.resize("life", 2 * TiB)).sizeBytes, 2 * TiB);
    await assert.rejects(storage.resize("life", GiB), { code: "INPUT", message: /--allow-shrink/ });
    assert.equal((await storage.info("life")).sizeBytes, 2 * TiB);
    assert.equal((await storage.resize("life", GiB, { allowShrink: true })).sizeBytes, GiB);

    const listed = await storage.list();
    assert.deepEqual(
      listed.find((image) => image.name === "life"),
      { ...created, sizeBytes: GiB },
    );
    assert.ok(rbdCli("ls").split("\n").includes("life"), "the real rbd sees the image");

    await storage.delete("life");
    await assert.rejects(storage.info("life"), { code: "NOT_FOUND", message: "disk life does not exist" });
    await assert.rejects(storage.delete("life"), { code: "NOT_FOUND" });
    await assert.rejects(storage.resize("life", 2 * GiB), { code: "NOT_FOUND" });
  });

  test("snapshots: create, list, rollback restores the data, delete", async () => {
    await storage.create("snappy", 64 * MiB);
    qemuIo("snappy", "write -P 0xaa 0 1M");
    const snap = await storage.createSnapshot("snappy", "before");
    assert.deepEqual(
      { ...snap, createdAt: typeof snap.createdAt },
      { name: "before", image: "snappy", sizeBytes: 64 * MiB, protected: false, createdAt: "string" },
    );
    await assert.rejects(storage.createSnapshot("snappy", "before"), {
      code: "CONFLICT",
      message: "snapshot snappy@before already exists",
    });
    qemuIo("snappy", "write -P 0xbb 0 1M");
    assert.deepEqual(Buffer.from(await storage.read("snappy", 0, MiB)), filled(0xbb, MiB));

    await timed("rollback 64 MiB", () => storage.rollbackSnapshot("snappy", "before"));
    assert.deepEqual(Buffer.from(await storage.read("snappy", 0, MiB)), filled(0xaa, MiB));
    await assert.rejects(storage.rollbackSnapshot("snappy", "nope"), {
      code: "NOT_FOUND",
      message: "snapshot snappy@nope does not exist",
    });

    assert.deepEqual(
      (await storage.listSnapshots("snappy")).map((s) => s.name),
      ["before"],
    );
    await assert.rejects(storage.delete("snappy"), { code: "CONFLICT", message: /has snapshots \(before\)/ });
    await storage.deleteSnapshot("snappy", "before");
    assert.deepEqual(await storage.listSnapshots("snappy"), []);
    await storage.delete("snappy");
  });

  test("golden image: a 10 GiB template cloned from a protected snapshot in about a second", async () => {
    await storage.create("golden", 10 * GiB);
    qemuIo("golden", "write -P 0x5a 0 4M");
    qemuIo("golden", "write -P 0x6b 9G 4M");
    await storage.createSnapshot("golden", "base");
    const clone = await timed("clone of a 10 GiB template", () => storage.clone("golden", "base", "guest1"));
    assert.equal(clone.parent, "rbd/golden@base");
    assert.equal(clone.sizeBytes, 10 * GiB);
    assert.ok(clone.usedBytes < 4 * MiB, `a fresh clone uses ${clone.usedBytes} bytes`);
    assert.deepEqual(Buffer.from(await storage.read("guest1", 0, 4096)), filled(0x5a, 4096));
    assert.equal((await storage.listSnapshots("golden"))[0]?.protected, true);

    // A second clone of the now protected snapshot (no protect step): the steady-state cost.
    await timed("second clone of the same snapshot", () => storage.clone("golden", "base", "guest2"));
    await assert.rejects(storage.clone("golden", "base", "guest2"), { code: "CONFLICT" });
    await assert.rejects(storage.clone("golden", "nope", "guest3"), { code: "NOT_FOUND" });
    assert.equal((await storage.list()).find((i) => i.name === "guest2")?.parent, "rbd/golden@base");

    await assert.rejects(storage.deleteSnapshot("golden", "base"), {
      code: "CONFLICT",
      message: "snapshot golden@base has clones (rbd/guest1, rbd/guest2); delete or flatten them first",
    });
    await storage.delete("guest1");
    await storage.delete("guest2");
    await storage.deleteSnapshot("golden", "base");
    await storage.delete("golden");
  });

  test("read: the whole 64 MiB disk the canary verifier reads, and ranges", async () => {
    const data = randomBytes(64 * MiB);
    const file = join(root, "random64.raw");
    writeFileSync(file, data);
    await storage.importFile(file, "disk64");
    const whole = await timed("read 64 MiB through read()", () => storage.read("disk64", 0, 64 * MiB));
    assert.ok(Buffer.from(whole).equals(data), "whole-disk read matches");
    const prefix = await timed("read first 4 KiB", () => storage.read("disk64", 0, 4096));
    assert.ok(Buffer.from(prefix).equals(data.subarray(0, 4096)));
    const middle = await storage.read("disk64", 33 * MiB + 7, 10_000);
    assert.ok(Buffer.from(middle).equals(data.subarray(33 * MiB + 7, 33 * MiB + 7 + 10_000)));
    const tail = await storage.read("disk64", 64 * MiB - 100, 4096);
    assert.equal(tail.length, 100, "a read past the end returns what exists");
    await assert.rejects(storage.read("absent", 0, 512), { code: "NOT_FOUND" });
    await storage.delete("disk64");
  });

  test("import: raw and qcow2 files with progress; conflicts and failures leave nothing behind", async () => {
    const size = 256 * MiB;
    const raw = join(root, "import.raw");
    const data = Buffer.alloc(size);
    randomBytes(96 * MiB).copy(data, 16 * MiB); // some data, some holes
    writeFileSync(raw, data);
    const qcow2 = join(root, "import.qcow2");
    execFileSync("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", raw, qcow2]);

    const rawProgress: number[] = [];
    const fromRaw = await timed(
      "import 256 MiB raw (96 MiB data)",
      () => storage.importFile(raw, "from-raw", (f) => rawProgress.push(f)),
      (ms) => `${Math.round(size / MiB / (ms / 1000))} MiB/s of virtual size`,
    );
    assert.equal(fromRaw.sizeBytes, size);
    const qcowProgress: number[] = [];
    const fromQcow2 = await timed(
      "import 256 MiB qcow2 (96 MiB data)",
      () => storage.importFile(qcow2, "from-qcow2", (f) => qcowProgress.push(f)),
      (ms) => `${Math.round(size / MiB / (ms / 1000))} MiB/s of virtual size`,
    );
    assert.equal(fromQcow2.sizeBytes, size);
    for (const [what, progress] of [
      ["raw", rawProgress],
      ["qcow2", qcowProgress],
    ] as const) {
      assert.ok(progress.length >= 3, `${what} progress: ${progress.join(",")}`);
      assert.equal(progress.at(-1), 1);
      assert.ok(
        progress.every((f, i) => f >= 0 && f <= 1 && (i === 0 || f >= (progress[i - 1] ?? 0))),
        `${what} progress is monotonic: ${progress.join(",")}`,
      );
    }
    for (const image of ["from-raw", "from-qcow2"]) {
      assert.ok(Buffer.from(await storage.read(image, 0, size)).equals(data), `${image} content matches`);
      assert.ok((await storage.info(image)).usedBytes < 160 * MiB, `${image} stayed sparse`);
    }

    // An existing target: CONFLICT, and the existing image is untouched.
    await assert.rejects(storage.importFile(raw, "from-qcow2"), { code: "CONFLICT" });
    await assert.rejects(storage.importFile(qcow2, "from-raw"), { code: "CONFLICT" });
    assert.ok(
      Buffer.from(await storage.read("from-raw", 16 * MiB, MiB)).equals(data.subarray(16 * MiB, 17 * MiB)),
    );
    await assert.rejects(storage.importFile(join(root, "absent.raw"), "nothing"), {
      code: "INPUT",
      message: /does not exist/,
    });
    execFileSync("qemu-img", ["create", "-f", "vmdk", join(root, "disk.vmdk"), "1M"]);
    await assert.rejects(storage.importFile(join(root, "disk.vmdk"), "nothing"), {
      code: "INPUT",
      message: /vmdk.*raw or qcow2/,
    });

    // A qcow2 whose first L2 table pointer is corrupt: qemu-img fails mid-import, the target is removed.
    const corrupt = join(root, "corrupt.qcow2");
    execFileSync("qemu-img", ["create", "-f", "qcow2", corrupt, "64M"]);
    execFileSync("qemu-io", ["-f", "qcow2", "-c", "write -P 0x11 0 8M", corrupt]);
    corruptFirstL2Pointer(corrupt);
    await assert.rejects(storage.importFile(corrupt, "half"), { code: "INPUT", message: /cannot import/ });
    await assert.rejects(storage.info("half"), { code: "NOT_FOUND" }, "a failed import leaves no image");

    // qemu-img sees Haven's image through a node's own cephx identity.
    const node = storage.driveSource("from-qcow2", "node1");
    assert.equal(node.driver, "rbd");
    const uri = `rbd:rbd/from-qcow2:id=haven-node1:conf=${nodeIdentities.node1?.conf}:keyring=${nodeIdentities.node1?.keyring}`;
    const info = JSON.parse(
      execFileSync("qemu-img", ["info", "--output=json", "-f", "rbd", uri], { encoding: "utf8" }),
    ) as {
      "virtual-size": number;
      format: string;
    };
    assert.deepEqual([info.format, info["virtual-size"]], ["rbd", size]);

    await storage.delete("from-raw");
    await storage.delete("from-qcow2");
  });

  test("a disk that a QEMU has open has a watcher; delete and rollback are refused until it exits", async () => {
    await storage.create("busy", 64 * MiB);
    await storage.createSnapshot("busy", "s1");
    assert.deepEqual(await storage.watchers("busy"), []);
    const identity = nodeIdentities.node2!;
    const qemu = spawn(
      "qemu-system-x86_64",
      [
        "-S",
        "-display",
        "none",
        "-nodefaults",
        "-machine",
        "none",
        "-drive",
        `file=rbd:rbd/busy:id=${identity.id}:conf=${identity.conf}:keyring=${identity.keyring},format=raw,if=none,id=d0`,
      ],
      { stdio: "ignore" },
    );
    qemus.push(qemu);
    const watchers = await waitFor(
      "a watcher on busy",
      async () => {
        const found = await storage.watchers("busy");
        return found.length > 0 ? found : undefined;
      },
      30_000,
    );
    assert.match(watchers[0] ?? "", /^127\.\d+\.\d+\.\d+:\d+\/\d+$/);
    await assert.rejects(storage.delete("busy"), {
      code: "CONFLICT",
      message: new RegExp(`disk busy is in use by ${watchers[0]?.replaceAll(".", "\\.")}`),
    });
    await assert.rejects(storage.rollbackSnapshot("busy", "s1"), { code: "CONFLICT", message: /in use/ });
    assert.equal((await storage.info("busy")).name, "busy", "nothing was deleted");

    qemu.kill("SIGTERM");
    await waitFor(
      "QEMU gone",
      () => (qemu.exitCode !== null || qemu.signalCode !== null ? true : undefined),
      10_000,
    );
    await waitFor(
      "no watchers",
      async () => ((await storage.watchers("busy")).length === 0 ? true : undefined),
      45_000,
    );
    await storage.rollbackSnapshot("busy", "s1");
    await storage.deleteSnapshot("busy", "s1");
    await storage.delete("busy");
  });

  test("bad names are refused before rbd runs, and nothing is created", async () => {
    const before = (await storage.list()).map((i) => i.name);
    for (const bad of ["a/b", "..", "@x", "a b", "", "x@y", "../etc"]) {
      await assert.rejects(storage.create(bad, GiB), { code: "INPUT" }, JSON.stringify(bad));
      await assert.rejects(storage.createSnapshot("anything", bad), { code: "INPUT" });
    }
    for (const size of [0, -1, 2 ** 60])
      await assert.rejects(storage.create("sized", size), { code: "INPUT" });
    assert.deepEqual(
      (await storage.list()).map((i) => i.name),
      before,
    );
  });

  test("a missing pool is NOT_FOUND", async () => {
    await assert.rejects(openRbdStorage({ pool: "nopool", admin, nodeIdentity: () => admin }), {
      code: "NOT_FOUND",
      message: "pool nopool does not exist",
    });
    const unchecked = new RbdStorage({ pool: "nopool", admin, nodeIdentity: () => admin });
    await assert.rejects(unchecked.create("x", GiB), {
      code: "NOT_FOUND",
      message: "pool nopool does not exist",
    });
  });

  test("a wrong keyring is UNAVAILABLE with a clear message", async () => {
    const keyring = join(root, "wrong.keyring");
    execFileSync("ceph-authtool", ["--create-keyring", keyring, "--gen-key", "-n", "client.admin"]);
    const wrong = new RbdStorage({ pool: "rbd", admin: { ...admin, keyring }, nodeIdentity: () => admin });
    await assert.rejects(wrong.list(), {
      code: "UNAVAILABLE",
      message: new RegExp(
        `^Ceph refused the credentials in ${keyring.replaceAll(".", "\\.")} for client\\.admin`,
      ),
    });
    await assert.rejects(wrong.create("never", GiB), { code: "UNAVAILABLE" });
    const health = await wrong.health();
    assert.equal(health.ok, false);
    assert.match(health.summary, /refused the credentials/);
    await assert.rejects(storage.info("never"), { code: "NOT_FOUND" }, "nothing was created");
  });

  test("an unreachable cluster is UNAVAILABLE within about ten seconds", async () => {
    const conf = join(root, "dead.conf");
    // A monitor address where nothing listens (and that no test uses).
    writeFileSync(
      conf,
      readFileSync(admin.conf, "utf8").replace(/^\s*mon[ _]host\s*=.*$/m, "mon_host = v2:127.0.31.250:3300"),
    );
    const dead = new RbdStorage({ pool: "rbd", admin: { ...admin, conf }, nodeIdentity: () => admin });
    const health = await timed("health of an unreachable cluster", () => dead.health());
    assert.equal(health.ok, false);
    assert.match(health.summary, /^Ceph is unreachable/);
    await assert.rejects(dead.list(), { code: "UNAVAILABLE", message: /^Ceph is unreachable/ });
  });
});

/** Points the first L1 entry of a qcow2 at an unaligned L2 table, which QEMU reports as corruption. */
function corruptFirstL2Pointer(path: string): void {
  const bytes = readFileSync(path);
  const l1Offset = Number(bytes.readBigUInt64BE(40));
  bytes.writeBigUInt64BE((1n << 63n) | 0x40200n, l1Offset);
  writeFileSync(path, bytes);
}
