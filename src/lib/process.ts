// Process helpers for pidfiles: a pid only counts as ours while its command line still names our state
// directory, so a recycled pid is never signalled.
import { readFileSync, readdirSync } from "node:fs";
import { readFile, readdir } from "node:fs/promises";
import { sleep } from "./async.js";

/**
 * True until every thread of the process has exited; a zombie waiting to be reaped counts as gone (this
 * machine's init can be slow to reap). Neither the command line nor the main thread's state says when a
 * killed process is done: the kernel empties /proc/PID/cmdline and shows the main thread as a zombie while
 * other threads are still exiting and hold the process's files and locks (a Ceph monitor's store, a QEMU's
 * disk), so a successor started then finds them taken.
 */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  return !isZombie(pid) || threadCount(pid) > 1;
}

function threadCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/task`).length;
  } catch {
    return 0;
  }
}

export function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
  } catch {
    return "";
  }
}

/** The pid in `pidFile` if that process is alive and its command line contains `marker`. */
export async function livePid(pidFile: string, marker: string): Promise<number | undefined> {
  const pid = Number(await pidFileText(pidFile));
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return undefined;
  return commandLine(pid).includes(marker) ? pid : undefined;
}

const PIDFILE_REREADS = 10;
const PIDFILE_REREAD_MS = 10;

/**
 * A pidfile's content. Ceph daemons and QEMU truncate their pidfile before they write their pid into it, so
 * a file that exists but is empty is read again a moment later rather than taken for a process that is gone.
 */
export async function pidFileText(pidFile: string): Promise<string> {
  for (let reread = 0; ; reread++) {
    const text = await readFile(pidFile, "utf8").catch(() => undefined);
    if (text === undefined) return "";
    if (text.trim() !== "" || reread === PIDFILE_REREADS) return text.trim();
    await sleep(PIDFILE_REREAD_MS);
  }
}

/** The state letter of /proc/PID/stat (R, S, D, T, Z, …), or undefined when there is no such process. */
export function processState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The state follows the ") " that closes the command name (which may itself contain ")").
    return stat.charAt(stat.lastIndexOf(")") + 2);
  } catch {
    return undefined;
  }
}

function isZombie(pid: number): boolean {
  const state = processState(pid);
  return state === "Z" || state === "X" || state === "x";
}

/** SIGTERM, then SIGKILL after graceMs; resolves when the process is gone. */
export async function terminate(pid: number, graceMs: number): Promise<void> {
  const signalIfAlive = (signal: NodeJS.Signals) => {
    try {
      process.kill(pid, signal);
    } catch {
      /* already gone */
    }
  };
  signalIfAlive("SIGTERM");
  const deadline = Date.now() + graceMs;
  while (isAlive(pid) && Date.now() < deadline) await sleep(50);
  if (!isAlive(pid)) return;
  signalIfAlive("SIGKILL");
  while (isAlive(pid)) await sleep(50);
}

/** Every live process whose command line contains `marker` (for leak checks and cleanup). */
export async function processesMatching(marker: string): Promise<Array<{ pid: number; cmdline: string }>> {
  const entries = await readdir("/proc");
  return entries
    .filter((entry) => /^\d+$/.test(entry) && Number(entry) !== process.pid)
    .map((entry) => ({ pid: Number(entry), cmdline: commandLine(Number(entry)) }))
    .filter(({ pid, cmdline }) => cmdline.includes(marker) && isAlive(pid));
}
