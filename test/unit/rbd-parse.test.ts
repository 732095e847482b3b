// The RBD backend without Ceph: schemas and error mapping on answers recorded from Ceph 16.2.15 (pacific),
// and RbdStorage against a fake `rbd`/`ceph` on PATH that logs its argv and replays a recorded answer per
// subcommand — so the tests also prove that bad names and sizes are refused before any tool runs.
import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, beforeEach, describe, it } from "node:test";
import { HavenError } from "../../src/core/errors.js";
import type { CephIdentity } from "../../src/adapters/ceph/exec.js";
import { CommandError } from "../../src/lib/command.js";
import { RbdStorage } from "../../src/adapters/storage/rbd.js";
import {
  cephHealthSchema,
  cephPoolLsSchema,
  headUsedBytes,
  healthVerdict,
  isProtected,
  mapCephError,
  meaningfulStderr,
  parentName,
  parseJson,
  qemuImgInfoSchema,
  rbdChildrenSchema,
  rbdDuSchema,
  rbdInfoSchema,
  rbdLsLongSchema,
  rbdSnapLsSchema,
  rbdStatusSchema,
} from "../../src/adapters/storage/rbd-parse.js";

// ---- Recorded answers (Ceph 16.2.15, QEMU 7.2, Debian 12) ----
const INFO_PLAIN = `{"name":"img1","id":"102420479f86","size":1073741824,"objects":256,"order":22,"object_size":4194304,"snapshot_count":0,"block_name_prefix":"rbd_data.102420479f86","format":2,"features":["layering","exclusive-lock","object-map","fast-diff","deep-flatten"],"op_features":[],"flags":[],"create_timestamp":"Tue Nov 24 13:44:47 2026","access_timestamp":"Tue Nov 24 13:44:47 2026","modify_timestamp":"Tue Nov 24 13:44:47 2026"}`;
const INFO_CLONE = `{"name":"c1","id":"103eda3b96d5","size":1073741824,"objects":256,"order":22,"object_size":4194304,"snapshot_count":0,"block_name_prefix":"rbd_data.103eda3b96d5","format":2,"features":["layering","exclusive-lock","object-map","fast-diff","deep-flatten"],"op_features":[],"flags":[],"create_timestamp":"Tue Nov 24 13:44:48 2026","access_timestamp":"Tue Nov 24 13:44:48 2026","modify_timestamp":"Tue Nov 24 13:44:48 2026","parent":{"pool":"rbd","pool_namespace":"","image":"img1","id":"102420479f86","snapshot":"s1","trash":false,"overlap":1073741824}}`;
const LS_LONG = `[{"image":"c1","id":"103eda3b96d5","size":1073741824,"parent":{"pool":"rbd","pool_namespace":"","image":"img1","snapshot":"s1"},"format":2},{"image":"img1","id":"102420479f86","size":1073741824,"format":2},{"image":"img1","id":"102420479f86","snapshot":"s1","snapshot_id":4,"size":1073741824,"format":2,"protected":"true"},{"image":"odd","id":"10263c1b2df4","size":1000,"format":2}]`;
const DU_POOL = `{"images":[{"name":"c1","id":"103eda3b96d5","provisioned_size":1073741824,"used_size":0},{"name":"img1","id":"102420479f86","snapshot":"s1","snapshot_id":4,"provisioned_size":1073741824,"used_size":4194304},{"name":"img1","id":"102420479f86","provisioned_size":1073741824,"used_size":8388608},{"name":"odd","id":"10263c1b2df4","provisioned_size":1000,"used_size":0}],"total_provisioned_size":2147484648,"total_used_size":12582912}`;
const DU_IMAGE = `{"images":[{"name":"img1","id":"102420479f86","provisioned_size":1073741824,"used_size":0}]}`;
const SNAP_LS = `[{"id":4,"name":"s1","size":1073741824,"protected":"true","timestamp":"Tue Nov 24 13:44:48 2026"},{"id":5,"name":"s2","size":1073741824,"protected":"false","timestamp":"Tue Nov 24 13:50:33 2026"}]`;
const CHILDREN = `[{"pool":"rbd","pool_namespace":"","image":"c1"}]`;
const STATUS_WATCHED = `{"watchers":[{"address":"127.0.0.1:0/3337720066","client":4188,"cookie":140340942083264}]}`;
const STATUS_IDLE = `{"watchers":[]}`;
const HEALTH_OK = `{"status":"HEALTH_OK","checks":{},"mutes":[]}`;
const HEALTH_WARN = `{"status":"HEALTH_WARN","checks":{"AUTH_INSECURE_GLOBAL_ID_RECLAIM_ALLOWED":{"severity":"HEALTH_WARN","summary":{"message":"mon is allowing insecure global_id reclaim","count":1},"muted":false}},"mutes":[]}`;
const HEALTH_STALE = `{"status":"HEALTH_WARN","checks":{"OSD_DOWN":{"severity":"HEALTH_WARN","summary":{"message":"1 osds down","count":1},"muted":false},"OSD_HOST_DOWN":{"severity":"HEALTH_WARN","summary":{"message":"1 host (1 osds) down","count":1},"muted":false},"OSD_ROOT_DOWN":{"severity":"HEALTH_WARN","summary":{"message":"1 root (1 osds) down","count":1},"muted":false},"PG_AVAILABILITY":{"severity":"HEALTH_WARN","summary":{"message":"Reduced data availability: 33 pgs stale","count":33},"muted":false}},"mutes":[]}`;
const POOL_LS = `["rbd","device_health_metrics"]`;
const QEMU_IMG_QCOW2 = `{"virtual-size": 67108864, "filename": "q.qcow2", "cluster-size": 65536, "format": "qcow2", "actual-size": 200704, "dirty-flag": false}`;
const QEMU_IMG_RAW = `{"virtual-size": 67108864, "filename": "r64.raw", "format": "raw", "actual-size": 67108864, "dirty-flag": false}`;

const CEPH_NOISE = `2026-11-24T13:44:41.007+0000 7f1c5e9ff6c0 -1 auth: unable to find a keyring on /etc/ceph/ceph.client.admin.keyring,/etc/ceph/ceph.keyring,/etc/ceph/keyring,/etc/ceph/keyring.bin,: (2) No such file or directory
2026-11-24T13:44:41.007+0000 7f1c5e9ff6c0 -1 AuthRegistry(0x7f1c5805b630) no keyring found at /etc/ceph/ceph.client.admin.keyring,/etc/ceph/ceph.keyring,/etc/ceph/keyring,/etc/ceph/keyring.bin,, disabling cephx
`;
const ERR = {
  createExists: `rbd: create error: 2026-11-24T13:44:47.547+0000 7f0653c93380 -1 librbd: rbd image img1 already exists\n(17) File exists\n`,
  noPool: `rbd: error opening pool 'nopool': (2) No such file or directory\n`,
  noImage: `rbd: error opening image nothere: (2) No such file or directory\n`,
  snapExists: `rbd: failed to create snapshot: (17) File exists\n`,
  noSnapRollback: `2026-11-24T13:44:49.075+0000 7f7089c8f380 -1 librbd::Operations: No such snapshot found.\n\nrbd: rollback failed: (2) No such file or directory\n`,
  watchers: `2026-11-24T13:45:08.539+0000 7f12cf7fe6c0 -1 librbd::image::PreRemoveRequest: 0x55a01a72d220 check_image_watchers: image has watchers - not removing\n\nrbd: error: image still has watchers\nThis means the image is still open or the client using it crashed. Try again after closing/unmapping it or waiting 30s for the crashed client to timeout.\n`,
  unprotectBusy: `2026-11-24T13:44:49.011+0000 7f3bba07f6c0 -1 librbd::SnapshotUnprotectRequest: cannot unprotect: at least 1 child(ren) [103eda3b96d5] in pool 'rbd'\n\nrbd: unprotecting snap failed: (16) Device or resource busy\n`,
  wrongKeyRbd: `2026-11-24T13:45:12.579+0000 7f1baccb36c0 -1 monclient(hunting): handle_auth_bad_method server allowed_methods [2] but i only support [2]\n\nrbd: couldn't connect to the cluster!\nrbd: listing images failed: (13) Permission denied\n`,
  wrongKeyCeph: `${CEPH_NOISE}2026-11-24T13:45:12.651+0000 7fa17ffff6c0 -1 monclient(hunting): handle_auth_bad_method server allowed_methods [2] but i only support [2]\n[errno 13] RADOS permission denied (error connecting to the cluster)\n`,
  missingKeyring: `2026-11-24T13:45:12.683+0000 7f24a241f380 -1 auth: unable to find a keyring on /tmp/x/nofile.keyring: (2) No such file or directory\n\n2026-11-24T13:45:12.683+0000 7f24a241f380 -1 AuthRegistry(0x5608748130b8) no keyring found at /tmp/x/nofile.keyring, disabling cephx\n\nrbd: couldn't connect to the cluster!\nrbd: listing images failed: (2) No such file or directory\n`,
  missingConf: `global_init: unable to open config file from search list /tmp/x/noconf.conf\n`,
  unreachableRbd: `2026-11-24T13:45:22.475+0000 7f7d5c8b8380  0 monclient(hunting): authenticate timed out after 5\n\nrbd: couldn't connect to the cluster!\nrbd: listing images failed: (110) Connection timed out\n`,
  unreachableCeph: `${CEPH_NOISE}\n\ntimed out\n`,
  osdTimeout: `2026-11-24T13:55:57.891+0000 7f9559cb76c0 -1 librbd::image::OpenRequest: failed to stat v2 image header: (110) Connection timed out\n\n2026-11-24T13:55:57.891+0000 7f955a4b86c0 -1 librbd::ImageState: 0x55bc35a24040 failed to open image: (110) Connection timed out\n\nrbd: error opening image r64: (110) Connection timed out\n`,
  shrink: `rbd: shrinking an image is only allowed with the --allow-shrink flag\n`,
};

const identity: CephIdentity = { conf: "/tmp/x/ceph.conf", keyring: "/tmp/x/admin.keyring", id: "admin" };
const context = { pool: "rbd", identity };
const failure = (stderr: string, exitCode: number | null = 1) =>
  new CommandError("rbd --conf /tmp/x/ceph.conf ls", exitCode, stderr);

function mapped(err: unknown): HavenError {
  assert.ok(err instanceof HavenError, `expected a HavenError, got ${String(err)}`);
  assert.ok(!err.message.includes("\n"), `message is not one line: ${err.message}`);
  return err;
}

void describe("rbd JSON schemas on recorded answers", () => {
  void it("parses rbd info, with and without a parent", () => {
    const plain = parseJson(rbdInfoSchema, INFO_PLAIN, "rbd info");
    assert.equal(plain.size, 1073741824);
    assert.ok(plain.features.includes("exclusive-lock"));
    assert.equal(parentName(plain.parent), null);
    const clone = parseJson(rbdInfoSchema, INFO_CLONE, "rbd info");
    assert.equal(parentName(clone.parent), "rbd/img1@s1");
  });

  void it("spells a parent in a namespace as pool/namespace/image@snap", () => {
    assert.equal(
      parentName({ pool: "rbd", pool_namespace: "ns1", image: "gold", snapshot: "base" }),
      "rbd/ns1/gold@base",
    );
  });

  void it("parses rbd ls -l: images and their snapshots", () => {
    const entries = parseJson(rbdLsLongSchema, LS_LONG, "rbd ls");
    assert.deepEqual(
      entries.filter((e) => e.snapshot === undefined).map((e) => e.image),
      ["c1", "img1", "odd"],
    );
    assert.equal(parentName(entries[0]?.parent), "rbd/img1@s1");
  });

  void it("parses rbd du and picks the head's used bytes, not its snapshot's", () => {
    const du = parseJson(rbdDuSchema, DU_POOL, "rbd du");
    assert.equal(headUsedBytes(du, "img1"), 8388608);
    assert.equal(headUsedBytes(du, "c1"), 0);
    assert.equal(headUsedBytes(du, "absent"), 0);
    assert.equal(du.total_provisioned_size, 2147484648);
    // A single image's du has no totals.
    const one = parseJson(rbdDuSchema, DU_IMAGE, "rbd du");
    assert.equal(one.total_used_size, undefined);
    assert.equal(headUsedBytes(one, "img1"), 0);
  });

  void it("parses rbd snap ls with Ceph's string booleans", () => {
    const snaps = parseJson(rbdSnapLsSchema, SNAP_LS, "rbd snap ls");
    assert.deepEqual(
      snaps.map((s) => [s.name, isProtected(s.protected)]),
      [
        ["s1", true],
        ["s2", false],
      ],
    );
  });

  void it("parses rbd children, rbd status and ceph osd pool ls", () => {
    assert.equal(parseJson(rbdChildrenSchema, CHILDREN, "rbd children")[0]?.image, "c1");
    const watched = parseJson(rbdStatusSchema, STATUS_WATCHED, "rbd status");
    assert.deepEqual(
      watched.watchers.map((w) => w.address),
      ["127.0.0.1:0/3337720066"],
    );
    assert.deepEqual(parseJson(rbdStatusSchema, STATUS_IDLE, "rbd status").watchers, []);
    assert.deepEqual(parseJson(rbdStatusSchema, "{}", "rbd status").watchers, []);
    assert.ok(parseJson(cephPoolLsSchema, POOL_LS, "ceph osd pool ls").includes("rbd"));
  });

  void it("parses qemu-img info for raw and qcow2", () => {
    assert.equal(parseJson(qemuImgInfoSchema, QEMU_IMG_RAW, "qemu-img info").format, "raw");
    const qcow2 = parseJson(qemuImgInfoSchema, QEMU_IMG_QCOW2, "qemu-img info");
    assert.deepEqual([qcow2.format, qcow2["virtual-size"]], ["qcow2", 67108864]);
  });

  void it("turns a malformed answer into UNAVAILABLE, not a crash", () => {
    assert.throws(() => parseJson(rbdInfoSchema, "not json", "rbd info"), { code: "UNAVAILABLE" });
    assert.throws(() => parseJson(rbdInfoSchema, `{"name":"x"}`, "rbd info"), {
      code: "UNAVAILABLE",
      message: /rbd info answered unexpected JSON \(size/,
    });
  });
});

void describe("ceph health verdict", () => {
  void it("is ok for HEALTH_OK and a harmless warning, with the reasons in one line", () => {
    assert.deepEqual(healthVerdict(parseJson(cephHealthSchema, HEALTH_OK, "h")), {
      ok: true,
      summary: "HEALTH_OK",
    });
    assert.deepEqual(healthVerdict(parseJson(cephHealthSchema, HEALTH_WARN, "h")), {
      ok: true,
      summary: "HEALTH_WARN: mon is allowing insecure global_id reclaim",
    });
  });

  void it("is not ok when PGs are unavailable or every OSD is down", () => {
    const verdict = healthVerdict(parseJson(cephHealthSchema, HEALTH_STALE, "h"));
    assert.equal(verdict.ok, false);
    assert.match(verdict.summary, /^HEALTH_WARN: 1 osds down; .*Reduced data availability: 33 pgs stale$/);
    assert.equal(healthVerdict({ status: "HEALTH_ERR", checks: {} }).ok, false);
  });
});

void describe("mapCephError on recorded stderr", () => {
  const disk = { missing: "disk img1 does not exist", exists: "disk img1 already exists" };

  void it("maps EEXIST, a missing image and a missing pool", () => {
    assert.deepEqual(pick(mapCephError(failure(ERR.createExists, 17), { ...context, ...disk })), [
      "CONFLICT",
      "disk img1 already exists",
    ]);
    assert.deepEqual(pick(mapCephError(failure(ERR.noImage, 2), { ...context, ...disk })), [
      "NOT_FOUND",
      "disk img1 does not exist",
    ]);
    assert.deepEqual(pick(mapCephError(failure(ERR.noPool, 2), { ...context, ...disk })), [
      "NOT_FOUND",
      "pool rbd does not exist",
    ]);
  });

  void it("maps snapshot errors with the meaning the caller gives", () => {
    const snap = { missing: "snapshot img1@s9 does not exist", exists: "snapshot img1@s1 already exists" };
    assert.equal(mapped(mapCephError(failure(ERR.snapExists, 17), { ...context, ...snap })).code, "CONFLICT");
    assert.equal(
      mapped(mapCephError(failure(ERR.noSnapRollback, 2), { ...context, ...snap })).message,
      "snapshot img1@s9 does not exist",
    );
  });

  void it("maps watchers and busy snapshots to CONFLICT", () => {
    const busy = { busy: "disk img1 is in use" };
    assert.deepEqual(pick(mapCephError(failure(ERR.watchers, 16), { ...context, ...busy })), [
      "CONFLICT",
      "disk img1 is in use",
    ]);
    assert.equal(
      mapped(mapCephError(failure(ERR.unprotectBusy, 16), { ...context, ...busy })).code,
      "CONFLICT",
    );
  });

  void it("maps a wrong keyring (rbd and ceph) to UNAVAILABLE naming the keyring", () => {
    for (const stderr of [ERR.wrongKeyRbd, ERR.wrongKeyCeph]) {
      const err = mapped(mapCephError(failure(stderr, 13), context));
      assert.equal(err.code, "UNAVAILABLE");
      assert.match(
        err.message,
        /^Ceph refused the credentials in \/tmp\/x\/admin\.keyring for client\.admin/,
      );
    }
    const missing = mapped(mapCephError(failure(ERR.missingKeyring, 2), { ...context, ...disk }));
    assert.deepEqual(
      [missing.code, missing.message],
      ["UNAVAILABLE", "Ceph refused the credentials in /tmp/x/admin.keyring: the keyring cannot be read"],
    );
  });

  void it("maps unreachable monitors, a missing conf and our own timeout to UNAVAILABLE", () => {
    for (const stderr of [ERR.unreachableRbd, ERR.unreachableCeph]) {
      const err = mapped(mapCephError(failure(stderr, 110), context));
      assert.equal(err.code, "UNAVAILABLE");
      assert.match(err.message, /^Ceph is unreachable: the monitors in \/tmp\/x\/ceph\.conf did not answer/);
    }
    const osd = mapped(
      mapCephError(failure(ERR.osdTimeout, 110), { ...context, missing: "disk r64 does not exist" }),
    );
    assert.deepEqual(
      [osd.code, osd.message],
      [
        "UNAVAILABLE",
        "Ceph is unreachable: requests to pool rbd timed out (rbd: error opening image r64: (110) Connection timed out)",
      ],
    );
    assert.match(
      mapped(mapCephError(failure(ERR.missingConf, 1), context)).message,
      /cannot read the Ceph config/,
    );
    assert.match(
      mapped(mapCephError(failure("", null), context)).message,
      /^Ceph is unreachable: rbd got no answer/,
    );
    assert.match(mapped(mapCephError(failure("spawn rbd ENOENT", -1), context)).message, /^cannot run rbd/);
  });

  void it("ignores the ceph CLI's default-keyring noise, and leaves unknown failures alone", () => {
    assert.equal(meaningfulStderr(`${CEPH_NOISE}timed out\n`), "timed out");
    const unknown = failure(ERR.shrink, 22);
    assert.equal(mapCephError(unknown, context), unknown);
    const bug = new TypeError("x");
    assert.equal(mapCephError(bug, context), bug);
  });
});

function pick(err: unknown): [string, string] {
  const e = mapped(err);
  return [e.code, e.message];
}

// ---- RbdStorage against a fake rbd/ceph ----
// The fake logs each argv (one line) and answers from reply-<subcommand>.{out,err,code} in $HAVEN_FAKE_RBD.
const FAKE = `#!/bin/sh
echo "$(basename "$0") $*" >> "$HAVEN_FAKE_RBD/calls"
sub=""
for arg in "$@"; do
  case "$arg" in
    create|info|du|ls|status|rm|resize|clone|children|import|export|protect|unprotect|rollback|health|pool) sub="$arg"; break ;;
  esac
done
case " $* " in *" snap ls "*) sub="snapls" ;; *" snap create "*) sub="snapcreate" ;; *" snap rm "*) sub="snaprm" ;; esac
[ -f "$HAVEN_FAKE_RBD/reply-$sub.out" ] && cat "$HAVEN_FAKE_RBD/reply-$sub.out"
[ -f "$HAVEN_FAKE_RBD/reply-$sub.err" ] && cat "$HAVEN_FAKE_RBD/reply-$sub.err" >&2
exit "$(cat "$HAVEN_FAKE_RBD/reply-$sub.code" 2>/dev/null || echo 0)"
`;

void describe("RbdStorage (fake rbd on PATH)", () => {
  const dir = mkdtempSync(join(tmpdir(), "haven-test-rbd-unit-"));
  const originalPath = process.env.PATH;
  process.env.PATH = `${dir}:${originalPath ?? ""}`;
  process.env.HAVEN_FAKE_RBD = dir;
  for (const tool of ["rbd", "ceph"]) {
    writeFileSync(join(dir, tool), FAKE);
    chmodSync(join(dir, tool), 0o755);
  }
  const storage = new RbdStorage({
    pool: "rbd",
    admin: identity,
    nodeIdentity: (node) => ({
      conf: "/tmp/x/ceph.conf",
      keyring: `/tmp/x/${node}.keyring`,
      id: `haven-${node}`,
    }),
  });
  const reply = (sub: string, out: string, err = "", code = 0) => {
    writeFileSync(join(dir, `reply-${sub}.out`), out);
    writeFileSync(join(dir, `reply-${sub}.err`), err);
    writeFileSync(join(dir, `reply-${sub}.code`), String(code));
  };
  const calls = (): string[] => {
    try {
      return readFileSync(join(dir, "calls"), "utf8").trim().split("\n").filter(Boolean);
    } catch {
      return [];
    }
  };

  beforeEach(() => {
    rmSync(join(dir, "calls"), { force: true });
    reply("info", INFO_PLAIN);
    reply("du", DU_IMAGE);
    reply("status", STATUS_IDLE);
    reply("snapls", "[]");
    reply("create", "");
    reply("rm", "");
  });
  after(() => {
    process.env.PATH = originalPath ?? "";
    rmSync(dir, { recursive: true, force: true });
  });

  void it("refuses bad names before any tool runs", async () => {
    for (const bad of ["a/b", "..", "a..b", "@x", "a@b", "a b", "", "-rf", "x:y", "a".repeat(64)]) {
      await assert.rejects(storage.create(bad, 1 << 20), { code: "INPUT" }, `create ${JSON.stringify(bad)}`);
      await assert.rejects(storage.info(bad), { code: "INPUT" });
      await assert.rejects(storage.delete(bad), { code: "INPUT" });
      await assert.rejects(storage.read(bad, 0, 512), { code: "INPUT" });
      await assert.rejects(storage.createSnapshot("img1", bad), { code: "INPUT" });
      await assert.rejects(storage.clone("img1", "s1", bad), { code: "INPUT" });
      await assert.rejects(storage.importFile("/nonexistent", bad), { code: "INPUT" });
      assert.throws(() => storage.driveSource(bad, "node1"), { code: "INPUT" });
    }
    assert.throws(() => new RbdStorage({ pool: "a/b", admin: identity, nodeIdentity: () => identity }), {
      code: "INPUT",
    });
    assert.deepEqual(calls(), []);
  });

  void it("refuses zero, negative, fractional, unaligned and absurd sizes before any tool runs", async () => {
    for (const size of [0, -1, 1.5, 1000, Number.NaN, 2 ** 60, 65 * 1024 ** 4]) {
      await assert.rejects(storage.create("img1", size), { code: "INPUT" }, `size ${size}`);
    }
    assert.deepEqual(calls(), []);
  });

  void it("creates a thin image with the fencing-relevant features, then reads its info", async () => {
    const info = await storage.create("img1", 1073741824);
    assert.deepEqual(info, {
      name: "img1",
      pool: "rbd",
      sizeBytes: 1073741824,
      usedBytes: 0,
      format: "raw",
      location: "rbd:rbd/img1",
      parent: null,
    });
    const create = calls().find((call) => call.includes(" create "));
    assert.ok(create, "rbd create was not called");
    assert.ok(create.startsWith("rbd --conf /tmp/x/ceph.conf --keyring /tmp/x/admin.keyring --id admin "));
    assert.match(
      create,
      / create --size 1073741824B --image-feature layering,exclusive-lock,object-map,fast-diff,deep-flatten rbd\/img1$/,
    );
    assert.ok(calls().some((call) => / info rbd\/img1 --format json$/.test(call)));
  });

  void it("maps an existing image on create to CONFLICT", async () => {
    reply("create", "", ERR.createExists, 17);
    await assert.rejects(storage.create("img1", 1 << 20), {
      code: "CONFLICT",
      message: "disk img1 already exists",
    });
  });

  void it("refuses to shrink without allowShrink, and never calls rbd resize", async () => {
    await assert.rejects(storage.resize("img1", 512 * 1024 * 1024), {
      code: "INPUT",
      message: /pass --allow-shrink$/,
    });
    assert.ok(!calls().some((call) => call.includes(" resize ")));
    reply("resize", "");
    await storage.resize("img1", 512 * 1024 * 1024, { allowShrink: true });
    assert.ok(
      calls().some((call) =>
        call.includes(" resize --no-progress --size 536870912B --allow-shrink rbd/img1"),
      ),
    );
  });

  void it("refuses to delete an image that is watched or has snapshots, naming them", async () => {
    reply("status", STATUS_WATCHED);
    await assert.rejects(storage.delete("img1"), {
      code: "CONFLICT",
      message: /disk img1 is in use by 127\.0\.0\.1:0\/3337720066/,
    });
    reply("status", STATUS_IDLE);
    reply("snapls", SNAP_LS);
    await assert.rejects(storage.delete("img1"), { code: "CONFLICT", message: /has snapshots \(s1, s2\)/ });
    assert.ok(!calls().some((call) => call.includes(" rm ")));
    reply("snapls", "[]");
    await storage.delete("img1");
    assert.ok(calls().some((call) => call.endsWith(" rm --no-progress rbd/img1")));
  });

  void it("refuses to delete a snapshot that has clones, naming them", async () => {
    reply("snapls", SNAP_LS);
    reply("children", CHILDREN);
    await assert.rejects(storage.deleteSnapshot("img1", "s1"), {
      code: "CONFLICT",
      message: "snapshot img1@s1 has clones (rbd/c1); delete or flatten them first",
    });
    assert.ok(!calls().some((call) => call.includes(" unprotect ")));
    await assert.rejects(storage.deleteSnapshot("img1", "s9"), { code: "NOT_FOUND" });
  });

  void it("spells the qemu-img target with escaped paths and librados time limits", () => {
    const odd = new RbdStorage({
      pool: "rbd",
      admin: { conf: "/tmp/a:b/ceph.conf", keyring: "/tmp/k", id: "admin" },
      nodeIdentity: () => identity,
    });
    assert.equal(
      odd.qemuUri("img1"),
      "rbd:rbd/img1:id=admin:conf=/tmp/a\\:b/ceph.conf:keyring=/tmp/k:client_mount_timeout=10:rados_mon_op_timeout=30:rados_osd_op_timeout=60",
    );
  });

  void it("gives QEMU the node's identity", () => {
    assert.deepEqual(storage.driveSource("img1", "node2"), {
      driver: "rbd",
      pool: "rbd",
      image: "img1",
      user: "haven-node2",
      conf: "/tmp/x/ceph.conf",
      keyring: "/tmp/x/node2.keyring",
    });
  });

  void it("reports health from ceph health, and a wrong keyring as not ok", async () => {
    reply("health", HEALTH_WARN);
    assert.deepEqual(await storage.health(), {
      ok: true,
      summary: "HEALTH_WARN: mon is allowing insecure global_id reclaim",
    });
    reply("health", "", ERR.wrongKeyCeph, 13);
    const health = await storage.health();
    assert.equal(health.ok, false);
    assert.match(health.summary, /^Ceph refused the credentials in \/tmp\/x\/admin\.keyring/);
  });

  void it("refuses to import a missing file", async () => {
    await assert.rejects(storage.importFile(join(dir, "absent.raw"), "img2"), {
      code: "INPUT",
      message: /does not exist$/,
    });
  });
});
