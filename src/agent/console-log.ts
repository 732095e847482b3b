// The serial console logs of this node's guests, where a canary guest prints `ack N` after each fsync. QEMU
// appends to one log per guest across all its runs on the node (logappend=on), so the agent reads only what
// was written since the current QEMU started.
import { open, stat } from "node:fs/promises";

export interface ConsoleLogs {
  /** How many bytes the guest's log holds now (0 when there is none). */
  size(vm: string): Promise<number>;
  /** Up to `bytes` bytes from the end of the log, none from before offset `from`. */
  tail(vm: string, from: number, bytes: number): Promise<string>;
}

/** The log files QEMU writes (the hypervisor's consolePaths). */
export function consoleLogFiles(pathOf: (vm: string) => string): ConsoleLogs {
  return {
    size: (vm) =>
      stat(pathOf(vm)).then(
        (s) => s.size,
        () => 0,
      ),
    tail: (vm, from, bytes) => readTail(pathOf(vm), from, bytes),
  };
}

async function readTail(path: string, from: number, bytes: number): Promise<string> {
  const file = await open(path, "r").catch(() => undefined);
  if (!file) return "";
  try {
    const { size } = await file.stat();
    // A log shorter than `from` was replaced meanwhile: all of it is new.
    const start = Math.max(from <= size ? from : 0, size - bytes, 0);
    const length = Math.max(size - start, 0);
    const buffer = Buffer.alloc(length);
    await file.read(buffer, 0, length, start);
    return buffer.toString("latin1");
  } finally {
    await file.close();
  }
}
