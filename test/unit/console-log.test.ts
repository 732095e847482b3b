// The agent reads canary acks from a guest's console log, which QEMU appends to across runs: only what the
// current QEMU wrote counts.
import assert from "node:assert/strict";
import { appendFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { consoleLogFiles } from "../../src/agent/console-log.js";
import { highestAckInLog } from "../../src/core/canary.js";

test("the tail of a console log starts no earlier than the current run's offset", async () => {
  const dir = mkdtempSync(join(tmpdir(), "haven-console-"));
  try {
    const logs = consoleLogFiles((vm) => join(dir, `${vm}.log`));
    assert.equal(await logs.size("web"), 0, "no log yet");
    appendFileSync(join(dir, "web.log"), "ack 1\nack 2\nack 3\n");
    const from = await logs.size("web");
    assert.equal(highestAckInLog(await logs.tail("web", from, 4096)), 0, "nothing of the new run yet");
    appendFileSync(join(dir, "web.log"), "boot\nack 4\n");
    assert.equal(highestAckInLog(await logs.tail("web", from, 4096)), 4);
    assert.equal(await logs.tail("web", from, 6), "ack 4\n", "at most the last bytes");
    assert.equal(
      await logs.tail("web", 10_000, 4096),
      "ack 1\nack 2\nack 3\nboot\nack 4\n",
      "a log shorter than the offset was replaced: all of it is new",
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
