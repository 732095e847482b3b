// Haven's units pass systemd's own check, and say what a restart and a shutdown do.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, test } from "node:test";
import { promisify } from "node:util";
import { etcdUnit, havendUnit, UNITS } from "../../src/setup/systemd.js";

async function verify(name: string, unit: string): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "haven-unit-"));
  try {
    const file = join(dir, name);
    await writeFile(file, unit);
    const { stderr } = await promisify(execFile)("systemd-analyze", ["verify", file]);
    assert.equal(stderr.trim(), "", "no warnings");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe("systemd units", () => {
  test("havend.service passes systemd-analyze verify", async () => {
    const unit = havendUnit({
      node: process.execPath,
      havend: resolve("bin/havend.js"),
      config: "/etc/haven/havend.json",
      shutdownMigrateSeconds: 300,
    });
    assert.match(unit, /^KillMode=process$/m, "a restart of havend leaves the guests running");
    assert.match(unit, /^TimeoutStopSec=360$/m, "room for the migrate policy");
    assert.match(unit, new RegExp(`^After=.*${UNITS.etcd}`, "m"), "stopped before its etcd member");
    await verify(UNITS.havend, unit);
  });

  test("haven-etcd.service runs the member over TLS and passes systemd-analyze verify", async () => {
    const unit = etcdUnit({
      etcd: "/usr/bin/etcd",
      member: {
        name: "etcd1",
        host: "198.18.0.1",
        clientPort: 2379,
        peerPort: 2380,
        dataDir: '/var/lib/haven/etcd "data"',
        tlsDir: "/etc/haven/etcd-tls",
        initialCluster: "etcd1=https://198.18.0.1:2380",
      },
    });
    assert.match(unit, /^Type=notify$/m);
    assert.match(unit, /--listen-client-urls=https:\/\/198\.18\.0\.1:2379 /);
    assert.match(unit, / --client-cert-auth /);
    assert.match(
      unit,
      / "--data-dir=\/var\/lib\/haven\/etcd \\"data\\"" /,
      "a path with a space or a quote stays one word",
    );
    await verify(UNITS.etcd, unit);
  });
});
