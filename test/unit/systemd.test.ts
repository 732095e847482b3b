// The havend unit passes systemd's own check, and says what a restart and a shutdown do.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, test } from "node:test";
import { promisify } from "node:util";
import { havendUnit } from "../../src/setup/systemd.js";

describe("systemd unit", () => {
  test("havend.service passes systemd-analyze verify", async () => {
    const dir = await mkdtemp(join(tmpdir(), "haven-unit-"));
    try {
      const unit = havendUnit({
        node: process.execPath,
        havend: resolve("bin/havend.js"),
        config: "/etc/haven/havend.json",
        shutdownMigrateSeconds: 300,
      });
      assert.match(unit, /^KillMode=process$/m, "a restart of havend leaves the guests running");
      assert.match(unit, /^TimeoutStopSec=360$/m, "room for the migrate policy");
      const file = join(dir, "havend.service");
      await writeFile(file, unit);
      const { stderr } = await promisify(execFile)("systemd-analyze", ["verify", file]);
      assert.equal(stderr.trim(), "", "no warnings");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
