// The fence agent runner with real commands, and the watchdog on a plain file standing in for the device.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { CommandFenceRunner } from "../../src/adapters/fence/command.js";
import { Watchdog } from "../../src/adapters/fence/watchdog.js";
import { mayFeedWatchdog } from "../../src/core/self-fence.js";
import { waitFor } from "../../src/lib/async.js";

describe("fencing adapters", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "haven-fencing-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const runner = new CommandFenceRunner();

  test("a fence agent gets the node in its environment and on stdin; exit 0 is success", async () => {
    const script = join(dir, "fence-ok");
    await writeFile(script, '#!/bin/sh\nread a; read b\necho "$HAVEN_FENCE_NODE $a $b $1"\n', {
      mode: 0o755,
    });
    const outcome = await runner.run("node2", { command: [script, "--plug"], timeoutSeconds: 5 });
    assert.equal(outcome.ok, true);
    assert.equal(outcome.summary, "exited 0: node2 action=off nodename=node2 --plug");
  });

  test("a non-zero exit, a missing command and a timeout are failures that say why", async () => {
    const failing = await runner.run("n", {
      command: ["/bin/sh", "-c", "echo no power >&2; exit 3"],
      timeoutSeconds: 5,
    });
    assert.deepEqual([failing.ok, failing.summary], [false, "exited 3: no power"]);
    const missing = await runner.run("n", { command: [join(dir, "nope")], timeoutSeconds: 5 });
    assert.equal(missing.ok, false);
    assert.match(missing.summary, /could not run .*nope: .*ENOENT/);
    const slow = await runner.run("n", { command: ["sleep", "30"], timeoutSeconds: 1 });
    assert.deepEqual([slow.ok, slow.summary], [false, "timed out after 1 s"]);
    assert.ok(slow.durationMs < 30_000, "the command was killed, not waited for");
  });

  test("the watchdog is fed only while the node may run its guests, and disarmed on a clean stop", async () => {
    assert.equal(mayFeedWatchdog(true, 3), true);
    assert.equal(mayFeedWatchdog(false, 0), true, "nothing left to fence");
    assert.equal(mayFeedWatchdog(false, 1), false, "guests outlive the lease: let the machine reset");

    const device = join(dir, "watchdog");
    await writeFile(device, "");
    const watchdog = new Watchdog(device);
    watchdog.open();
    let mayFeed = true;
    let asked = 0;
    const stop = new AbortController();
    const running = watchdog.run(() => (asked++, mayFeed), 20, stop.signal);
    const fed = async () => (await readFile(device, "utf8")).length;
    await waitFor("three feeds", async () => ((await fed()) >= 3 ? true : undefined), 30_000, 10);
    mayFeed = false;
    // Two more questions: the first one answered "no", so no feed can be under way any more.
    const refusedAt = asked;
    await waitFor("a refusal", () => (asked >= refusedAt + 2 ? true : undefined), 30_000, 5);
    const fedWhileAllowed = await fed();
    const checkedAt = asked;
    await waitFor("three more questions", () => (asked >= checkedAt + 3 ? true : undefined), 30_000, 5);
    assert.equal(await fed(), fedWhileAllowed, "not fed once refused");
    stop.abort();
    await running;
    assert.match(await readFile(device, "utf8"), /^1+V$/, "magic close on a clean stop");
  });

  test("a watchdog device that cannot be opened names the device and what to do", () => {
    assert.throws(
      () => new Watchdog(join(dir, "missing", "watchdog")).open(),
      /cannot open watchdog .*softdog/,
    );
  });
});
