import { test } from "node:test";
import assert from "node:assert/strict";
import {
  CANARY_SLOT_BYTES,
  crc32Posix,
  highestAckInLog,
  verifyCanaryImage,
  type CanaryReport,
} from "../../src/core/canary.js";

const encoder = new TextEncoder();
const bytes = (text: string): Uint8Array => encoder.encode(text);

/** The record line (without newline) the guest writes for these fields. */
function recordLine(seq: number, time: number, bootId: string, prevCrc: number): string {
  const body = `HVN1 ${seq} ${time} ${bootId} ${prevCrc}`;
  return `${body} ${crc32Posix(bytes(body))}`;
}

function crcOf(line: string): number {
  return Number(line.split(" ").at(-1));
}

function image(slots: number): Uint8Array {
  const disk = new Uint8Array(slots * CANARY_SLOT_BYTES);
  putSlot(disk, 0, "HAVEN-CANARY v1\n");
  return disk;
}

function putSlot(disk: Uint8Array, slot: number, text: string): void {
  const start = slot * CANARY_SLOT_BYTES;
  disk.fill(0, start, start + CANARY_SLOT_BYTES);
  disk.set(bytes(text), start);
}

/** Writes records from..to as one writer would; returns the crc of the last one. */
function writeChain(
  disk: Uint8Array,
  from: number,
  to: number,
  prevCrc: number,
  bootId = "0badcafe",
): number {
  let prev = prevCrc;
  for (let seq = from; seq <= to; seq++) {
    const line = recordLine(seq, 1_700_000_000 + seq, bootId, prev);
    putSlot(disk, seq, `${line}\n`);
    prev = crcOf(line);
  }
  return prev;
}

const clean: Omit<CanaryReport, "highestSeq" | "records"> = { gaps: [], corrupt: [], forks: [] };

void test("crc32Posix matches POSIX cksum", () => {
  // Values printed by `printf '...' | cksum` (GNU coreutils).
  assert.equal(crc32Posix(bytes("")), 4294967295);
  assert.equal(crc32Posix(bytes("123456789")), 930766865);
  assert.equal(crc32Posix(bytes("HVN1 1 0 deadbeef 0")), 1827199253);
  assert.equal(crc32Posix(bytes("HVN1 2 1700000000 0badcafe 1827199253")), 3887951065);
  assert.equal(crc32Posix(bytes("a".repeat(300))), 1664553091); // two length bytes
});

void test("a clean image verifies, trailing zeros and all", () => {
  const disk = image(4096);
  writeChain(disk, 1, 50, 0);
  assert.deepEqual(verifyCanaryImage(disk), { highestSeq: 50, records: 50, ...clean });
});

void test("records written by guest/canary.sh verify", () => {
  // Copied from a disk written by the guest (busybox sh arithmetic crc), checked with GNU cksum.
  const disk = image(8);
  putSlot(disk, 1, "HVN1 1 1795526194 e9f7b7fb 0 4132639801\n");
  putSlot(disk, 2, "HVN1 2 1795526194 e9f7b7fb 4132639801 353193439\n");
  putSlot(disk, 3, "HVN1 3 1795526194 e9f7b7fb 353193439 4254625387\n");
  assert.deepEqual(verifyCanaryImage(disk), { highestSeq: 3, records: 3, ...clean });
});

void test("an empty or header-only disk has no records", () => {
  assert.deepEqual(verifyCanaryImage(new Uint8Array(0)), { highestSeq: 0, records: 0, ...clean });
  assert.deepEqual(verifyCanaryImage(new Uint8Array(64 * 1024)), { highestSeq: 0, records: 0, ...clean });
  assert.deepEqual(verifyCanaryImage(image(128)), { highestSeq: 0, records: 0, ...clean });
});

void test("missing records are gaps, merged into ranges", () => {
  const disk = image(64);
  writeChain(disk, 1, 10, 0);
  putSlot(disk, 3, "");
  putSlot(disk, 6, "");
  putSlot(disk, 7, "");
  putSlot(disk, 8, "");
  const report = verifyCanaryImage(disk);
  assert.equal(report.highestSeq, 10);
  assert.equal(report.records, 6);
  assert.deepEqual(report.gaps, [
    { from: 3, to: 3 },
    { from: 6, to: 8 },
  ]);
  assert.deepEqual(report.corrupt, []);
  assert.deepEqual(report.forks, []); // a gap hides the chain, it is not a fork
});

void test("a record with a wrong crc is corrupt and leaves a gap", () => {
  const disk = image(16);
  writeChain(disk, 1, 5, 0);
  disk[2 * CANARY_SLOT_BYTES + 8] = (disk[2 * CANARY_SLOT_BYTES + 8] ?? 0) ^ 0x01; // a digit of seq 2's time
  const report = verifyCanaryImage(disk);
  assert.equal(report.highestSeq, 5);
  assert.deepEqual(report.gaps, [{ from: 2, to: 2 }]);
  assert.equal(report.corrupt.length, 1);
  assert.equal(report.corrupt[0]?.slot, 2);
  assert.match(report.corrupt[0]?.reason ?? "", /bad crc/);
  assert.deepEqual(report.forks, []);
});

void test("a valid record in the wrong slot is corrupt", () => {
  const disk = image(16);
  writeChain(disk, 1, 3, 0);
  putSlot(disk, 9, `${recordLine(4, 1, "0badcafe", 0)}\n`);
  const report = verifyCanaryImage(disk);
  assert.equal(report.highestSeq, 3);
  assert.deepEqual(report.gaps, []); // beyond highestSeq: not a gap
  assert.equal(report.corrupt.length, 1);
  assert.equal(report.corrupt[0]?.slot, 9);
  assert.match(report.corrupt[0]?.reason ?? "", /wrong slot: seq 4 stored in slot 9/);
});

void test("unparsable slots are corrupt", () => {
  const disk = image(16);
  writeChain(disk, 1, 8, 0);
  putSlot(disk, 2, "garbage\n");
  putSlot(disk, 3, "HVN1 3 1 0badcafe 0 1"); // no newline: torn write
  putSlot(disk, 4, `${recordLine(4, 1, "0badcafe", 0)}\nx`); // trailing bytes
  putSlot(disk, 5, `${recordLine(5, 1, "0BADCAFE", 0)}\n`); // bootid must be lower-case hex
  disk[6 * CANARY_SLOT_BYTES + 300] = 0xff; // a stray byte after a valid line
  putSlot(disk, 7, "HVN1 07 1 0badcafe 0 1\n"); // leading zero
  const report = verifyCanaryImage(disk);
  assert.equal(report.highestSeq, 8);
  assert.deepEqual(
    report.corrupt.map((c) => c.slot),
    [2, 3, 4, 5, 6, 7],
  );
  for (const c of report.corrupt) assert.match(c.reason, /^unparsable/);
  assert.deepEqual(report.gaps, [{ from: 2, to: 7 }]);
});

void test("two writers show up as a fork", () => {
  const disk = image(32);
  const crc2 = writeChain(disk, 1, 2, 0, "aaaaaaaa");
  writeChain(disk, 3, 6, crc2, "aaaaaaaa"); // writer A goes on to 6...
  writeChain(disk, 3, 4, crc2, "bbbbbbbb"); // ...while writer B, resumed after 2, overwrites 3 and 4
  const report = verifyCanaryImage(disk);
  assert.equal(report.highestSeq, 6);
  assert.equal(report.records, 6);
  assert.deepEqual(report.gaps, []);
  assert.deepEqual(report.corrupt, []);
  assert.deepEqual(
    report.forks.map((f) => f.seq),
    [5],
  );
  assert.match(report.forks[0]?.reason ?? "", /does not match crc \d+ of seq 4/);
});

void test("seq 1 must chain from 0", () => {
  const disk = image(8);
  writeChain(disk, 1, 2, 12345);
  assert.deepEqual(
    verifyCanaryImage(disk).forks.map((f) => f.seq),
    [1],
  );
});

void test("slot 0 must be empty or the header", () => {
  const disk = image(8);
  writeChain(disk, 1, 2, 0);
  putSlot(disk, 0, "");
  assert.deepEqual(verifyCanaryImage(disk), { highestSeq: 2, records: 2, ...clean });
  putSlot(disk, 0, "HAVEN-CANARY v2\n");
  assert.deepEqual(
    verifyCanaryImage(disk).corrupt.map((c) => c.slot),
    [0],
  );
  putSlot(disk, 0, "HAVEN-CANARY v1\nmore");
  assert.deepEqual(
    verifyCanaryImage(disk).corrupt.map((c) => c.slot),
    [0],
  );
  putSlot(disk, 0, recordLine(0, 1, "0badcafe", 0));
  const report = verifyCanaryImage(disk);
  assert.deepEqual(
    report.corrupt.map((c) => c.slot),
    [0],
  );
  assert.equal(report.highestSeq, 2);
});

void test("unaligned views and a trailing partial slot work", () => {
  const disk = image(8);
  writeChain(disk, 1, 4, 0);
  const backing = new Uint8Array(disk.length + 3);
  backing.set(disk, 3);
  assert.deepEqual(verifyCanaryImage(backing.subarray(3)), { highestSeq: 4, records: 4, ...clean });
  const prefix = disk.subarray(0, 4 * CANARY_SLOT_BYTES + 100); // record 4 is complete in the prefix
  assert.deepEqual(verifyCanaryImage(prefix), { highestSeq: 4, records: 4, ...clean });
  const torn = disk.subarray(0, 4 * CANARY_SLOT_BYTES + 20); // record 4 is cut
  const report = verifyCanaryImage(torn);
  assert.equal(report.highestSeq, 3);
  assert.deepEqual(
    report.corrupt.map((c) => c.slot),
    [4],
  );
});

void test("a 256 MiB mostly-zero image verifies", () => {
  const disk = image((256 * 1024 * 1024) / CANARY_SLOT_BYTES);
  writeChain(disk, 1, 2000, 0);
  assert.deepEqual(verifyCanaryImage(disk), { highestSeq: 2000, records: 2000, ...clean });
});

void test("highestAckInLog takes the highest ack line", () => {
  assert.equal(highestAckInLog(""), 0);
  assert.equal(highestAckInLog("haven-guest: up\r\ncanary: resume after 0\r\n"), 0);
  assert.equal(highestAckInLog("haven-guest: up\r\ncanary: resume after 7\r\nack 8\r\nack 9\r\n"), 9);
  assert.equal(highestAckInLog("ack 10\nack 9\n"), 10); // a restarted guest may ack lower seqs later
  assert.equal(highestAckInLog("ack 3\nack 4"), 4); // last line without newline
  assert.equal(
    highestAckInLog("ck 99\nxack 98\nack 97 x\nack\nack -5\ncanary: write failed seq 50\nack 2\r"),
    2,
  );
  assert.equal(highestAckInLog("[    1.2] ack 100\nack 12\n"), 12);
});
