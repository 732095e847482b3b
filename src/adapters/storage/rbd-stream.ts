// Reading image bytes: `rbd export POOL/IMAGE -` streams the whole image to stdout, which cephExec (text,
// collected to the end) cannot carry. This reads the stream as binary and stops the export as soon as the
// requested range has arrived, so a prefix read costs only the prefix.
import { spawn } from "node:child_process";
import { CommandError } from "../../lib/command.js";
import type { CephIdentity } from "../ceph/exec.js";

export interface RangeRead {
  /** rbd arguments after the identity, e.g. ["export", "--no-progress", "rbd/disk1", "-"]. */
  args: string[];
  offset: number;
  length: number;
  timeoutMs: number;
}

/** Bytes [offset, offset+length) of the command's stdout; fewer if the stream ends first. */
export function readRange(identity: CephIdentity, read: RangeRead): Promise<Buffer> {
  const argv = ["--conf", identity.conf, "--keyring", identity.keyring, "--id", identity.id, ...read.args];
  const end = read.offset + read.length;
  return new Promise((resolve, reject) => {
    const child = spawn("rbd", argv, { stdio: ["ignore", "pipe", "pipe"] });
    const chunks: Buffer[] = [];
    let position = 0; // bytes of stdout seen so far
    let stderr = "";
    let settled = false;
    const finish = (error?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error) reject(error);
      else resolve(Buffer.concat(chunks));
    };
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      finish(new CommandError(`rbd ${read.args.join(" ")}`, null, stderr));
    }, read.timeoutMs);
    child.stdout.on("data", (chunk: Buffer) => {
      if (settled) return;
      const from = Math.max(read.offset - position, 0);
      const to = Math.min(end - position, chunk.length);
      if (to > from) chunks.push(chunk.subarray(from, to));
      position += chunk.length;
      if (position >= end) {
        child.kill("SIGKILL"); // everything asked for has arrived: the rest of the export is not needed
        finish();
      }
    });
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", (err) => finish(new CommandError(`rbd ${read.args.join(" ")}`, -1, err.message)));
    child.on("close", (code, signal) => {
      if (code === 0) finish();
      else finish(new CommandError(`rbd ${read.args.join(" ")}`, signal ? null : code, stderr));
    });
  });
}
