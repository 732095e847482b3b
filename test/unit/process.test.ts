// Pidfiles: a pid counts as a live process of ours only while it runs with our marker on its command line,
// and a pidfile that its program is rewriting (truncated, not yet written) is not taken for a dead process.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { livePid } from "../../src/lib/process.js";

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "haven-pid-test-"));
});
after(() => rm(dir, { recursive: true, force: true }));

test("a live pid with the marker on its command line is ours; others are not", async () => {
  const file = join(dir, "self.pid");
  await writeFile(file, `${process.pid}\n`);
  assert.equal(await livePid(file, process.argv0), process.pid);
  assert.equal(await livePid(file, "no such marker"), undefined);
  assert.equal(await livePid(join(dir, "missing.pid"), process.argv0), undefined);
  await writeFile(file, "garbage");
  assert.equal(await livePid(file, process.argv0), undefined);
});

test("an empty pidfile being rewritten is read again instead of taken for a gone process", async () => {
  const file = join(dir, "rewritten.pid");
  await writeFile(file, "");
  // As Ceph and QEMU do: the file is truncated, and the pid arrives a moment later.
  setTimeout(() => void writeFile(file, `${process.pid}\n`), 30);
  assert.equal(await livePid(file, process.argv0), process.pid);
  await writeFile(file, "");
  assert.equal(await livePid(file, process.argv0), undefined, "a file that stays empty names no process");
});
