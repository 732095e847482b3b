// The canary guest's verifier: pure functions over the raw bytes of its disk and its serial log.
//
// Disk layout (written by guest/canary.sh), 512-byte slots:
//   slot 0   "HAVEN-CANARY v1\n", zero padded
//   slot N   "HVN1 <seq> <unixtime> <bootid> <prevcrc> <crc>\n", zero padded, with seq === N >= 1
// crc is the POSIX cksum CRC (decimal) of "HVN1 <seq> <unixtime> <bootid> <prevcrc>", and prevcrc the
// crc of record seq-1 (0 for seq 1). The guest prints "ack <seq>" only after the record was fsynced, so
// every HA test ends with: highestSeq >= the highest ack, no gaps, no corrupt records, no forks.

export interface CanaryReport {
  /** Highest seq with a valid record (0 if there is none). */
  highestSeq: number;
  /** Number of valid records. */
  records: number;
  /** Slots between 1 and highestSeq without a valid record (empty or corrupt), as merged ranges. */
  gaps: Array<{ from: number; to: number }>;
  /** Non-empty slots that are not valid records (and slot 0 if it is non-empty and not the header). */
  corrupt: Array<{ slot: number; reason: string }>;
  /** Valid records whose prevcrc is not the crc of the valid record before them: two writers. */
  forks: Array<{ seq: number; reason: string }>;
}

export const CANARY_SLOT_BYTES = 512;
export const CANARY_HEADER = "HAVEN-CANARY v1\n";

const CRC_TABLE = makeCrcTable();

function makeCrcTable(): Uint32Array {
  const table = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 24;
    for (let k = 0; k < 8; k++) c = c & 0x80000000 ? (c << 1) ^ 0x04c11db7 : c << 1;
    table[i] = c >>> 0;
  }
  return table;
}

function crcStep(crc: number, byte: number): number {
  return ((crc << 8) ^ (CRC_TABLE[((crc >>> 24) ^ byte) & 0xff] ?? 0)) >>> 0;
}

/** The CRC that POSIX `cksum` prints (polynomial 0x04C11DB7, length appended, complemented). */
export function crc32Posix(bytes: Uint8Array): number {
  let crc = 0;
  for (const byte of bytes) crc = crcStep(crc, byte);
  for (let length = bytes.length; length > 0; length = Math.floor(length / 256))
    crc = crcStep(crc, length % 256);
  return ~crc >>> 0;
}

interface ValidRecord {
  prevCrc: number;
  crc: number;
}

type SlotResult = { kind: "valid"; record: ValidRecord } | { kind: "corrupt"; reason: string };

const RECORD_LINE =
  /^HVN1 ([1-9][0-9]{0,14}) (0|[1-9][0-9]*) [0-9a-f]{8} (0|[1-9][0-9]{0,9}) (0|[1-9][0-9]{0,9})$/;
const NEWLINE = 0x0a;
const MAX_CRC = 0xffffffff;

/** Verifies a whole canary disk (or a prefix of it; a trailing partial slot is checked as far as it goes). */
export function verifyCanaryImage(bytes: Uint8Array): CanaryReport {
  const slots = Math.ceil(bytes.length / CANARY_SLOT_BYTES);
  const words =
    bytes.byteOffset % 4 === 0
      ? new Int32Array(bytes.buffer, bytes.byteOffset, Math.floor(bytes.length / 4))
      : undefined;
  const valid = new Map<number, ValidRecord>();
  const corrupt: CanaryReport["corrupt"] = [];

  for (let slot = 0; slot < slots; slot++) {
    const start = slot * CANARY_SLOT_BYTES;
    const end = Math.min(start + CANARY_SLOT_BYTES, bytes.length);
    if (isZero(bytes, words, start, end)) continue;
    const data = bytes.subarray(start, end);
    if (slot === 0) {
      if (!isHeader(data)) corrupt.push({ slot, reason: "slot 0 is not the HAVEN-CANARY v1 header" });
      continue;
    }
    const result = checkSlot(slot, data);
    if (result.kind === "valid") valid.set(slot, result.record);
    else corrupt.push({ slot, reason: result.reason });
  }

  let highestSeq = 0;
  for (const seq of valid.keys()) highestSeq = Math.max(highestSeq, seq);

  const gaps: CanaryReport["gaps"] = [];
  for (let seq = 1; seq <= highestSeq; seq++) {
    if (valid.has(seq)) continue;
    const last = gaps.at(-1);
    if (last && last.to === seq - 1) last.to = seq;
    else gaps.push({ from: seq, to: seq });
  }

  const forks: CanaryReport["forks"] = [];
  for (const [seq, record] of [...valid].sort(([a], [b]) => a - b)) {
    if (seq === 1) {
      if (record.prevCrc !== 0)
        forks.push({ seq, reason: `seq 1 has prevcrc ${record.prevCrc}, expected 0` });
      continue;
    }
    const before = valid.get(seq - 1);
    if (before && before.crc !== record.prevCrc) {
      forks.push({
        seq,
        reason: `prevcrc ${record.prevCrc} does not match crc ${before.crc} of seq ${seq - 1}`,
      });
    }
  }

  return { highestSeq, records: valid.size, gaps, corrupt, forks };
}

function isZero(bytes: Uint8Array, words: Int32Array | undefined, start: number, end: number): boolean {
  let i = start;
  if (words) {
    // start is a multiple of 512, so word-aligned relative to the view.
    const wordEnd = Math.floor(end / 4);
    for (let w = start / 4; w < wordEnd; w++) if (words[w] !== 0) return false;
    i = wordEnd * 4;
  }
  for (; i < end; i++) if (bytes[i] !== 0) return false;
  return true;
}

function isHeader(data: Uint8Array): boolean {
  for (let i = 0; i < data.length; i++) {
    const expected = i < CANARY_HEADER.length ? CANARY_HEADER.charCodeAt(i) : 0;
    if (data[i] !== expected) return false;
  }
  return data.length >= CANARY_HEADER.length;
}

function checkSlot(slot: number, data: Uint8Array): SlotResult {
  const newline = data.indexOf(NEWLINE);
  if (newline < 0) return { kind: "corrupt", reason: "unparsable: no newline-terminated record" };
  for (let i = newline + 1; i < data.length; i++) {
    if (data[i] !== 0) return { kind: "corrupt", reason: "unparsable: non-zero bytes after the record line" };
  }
  let line = "";
  for (let i = 0; i < newline; i++) {
    const byte = data[i] ?? 0;
    if (byte < 0x20 || byte > 0x7e)
      return { kind: "corrupt", reason: "unparsable: non-printable byte in record" };
    line += String.fromCharCode(byte);
  }
  const match = RECORD_LINE.exec(line);
  if (!match) return { kind: "corrupt", reason: `unparsable: ${JSON.stringify(line.slice(0, 80))}` };
  const seq = Number(match[1]);
  const prevCrc = Number(match[3]);
  const storedCrc = Number(match[4]);
  if (prevCrc > MAX_CRC || storedCrc > MAX_CRC) {
    return { kind: "corrupt", reason: "unparsable: crc field out of range" };
  }
  const computed = crc32Posix(data.subarray(0, line.lastIndexOf(" ")));
  if (computed !== storedCrc) {
    return { kind: "corrupt", reason: `bad crc: record says ${storedCrc}, computed ${computed}` };
  }
  if (seq !== slot) return { kind: "corrupt", reason: `wrong slot: seq ${seq} stored in slot ${slot}` };
  return { kind: "valid", record: { prevCrc, crc: storedCrc } };
}

/** The highest N over lines `ack N` of a serial console log (CR/LF tolerant), 0 if there is none. */
export function highestAckInLog(serialLog: string): number {
  let highest = 0;
  for (const line of serialLog.split(/\r\n|\r|\n/)) {
    const match = /^\s*ack ([0-9]+)\s*$/.exec(line);
    if (match) highest = Math.max(highest, Number(match[1]));
  }
  return highest;
}
