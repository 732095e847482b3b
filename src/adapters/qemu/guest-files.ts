// The per-VM directory of a daemonized QEMU, and how to tell from /proc that a pid is still *our* QEMU.
// A daemonized QEMU is not our child (it is reparented to init), so there is no exit event to wait for:
// liveness is read from /proc, and a pid is trusted only while its command line still names this VM and
// this pidfile, so neither a recycled pid nor the same VM run by another node's agent on this host (local
// clusters share one kernel) is mistaken for it.
import { readFileSync, rmSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { isAlive, pidFileText } from "../../lib/process.js";
import { rbdKeyFile, rbdSecrets } from "./cmdline.js";
import type { GuestLaunch } from "./port.js";

export interface GuestFiles {
  dir: string;
  pidFile: string;
  qmpSocket: string;
  consoleSocket: string;
  guestAgentSocket: string;
  serialLog: string;
  /** QMP transcript: one JSON line per message, kept across restarts. */
  transcript: string;
  /** The GuestLaunch, startedAt and pid of the QEMU that runs now (or ran last). */
  launchFile: string;
}

export function guestFiles(runDir: string, vm: string): GuestFiles {
  const dir = join(runDir, vm);
  return {
    dir,
    pidFile: join(dir, "qemu.pid"),
    qmpSocket: join(dir, "qmp.sock"),
    consoleSocket: join(dir, "console.sock"),
    guestAgentSocket: join(dir, "qga.sock"),
    serialLog: join(dir, "serial.log"),
    transcript: join(dir, "qmp.log"),
    launchFile: join(dir, "launch.json"),
  };
}

/** The pid in the pidfile, or undefined if there is none (or it is garbage). */
export async function readPid(pidFile: string): Promise<number | undefined> {
  return parsePid(await pidFileText(pidFile));
}

function parsePid(text: string): number | undefined {
  const pid = Number(text.trim());
  return Number.isSafeInteger(pid) && pid > 1 ? pid : undefined;
}

/**
 * The argv of `pid` if it is a live (not zombie) QEMU started for `vm` with this pidfile; otherwise
 * undefined. Zombies count as dead: an init that reaps lazily must not make an exited QEMU look alive.
 */
export async function ourQemuArgv(pid: number, vm: string, pidFile: string): Promise<string[] | undefined> {
  try {
    if (!isAlive(pid)) return undefined;
    const argv = (await readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0");
    const name = argAfter(argv, "-name")?.split(",")[0];
    return name === vm && argAfter(argv, "-pidfile") === pidFile ? argv : undefined;
  } catch {
    return undefined;
  }
}

/**
 * True while a QEMU that was killed is still tearing down: its memory (and with it /proc/PID/cmdline) is
 * already gone, but the process is not yet a zombie. It is not gone until then: a caller that waits for a
 * killed QEMU to be gone must not return in that window.
 */
export function isExitingQemu(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return (
      comm.startsWith("qemu") &&
      state !== "Z" &&
      state !== "X" &&
      readFileSync(`/proc/${pid}/cmdline`).length === 0
    );
  } catch {
    return false;
  }
}

export function argAfter(argv: string[], flag: string): string | undefined {
  const index = argv.indexOf(flag);
  return index >= 0 ? argv[index + 1] : undefined;
}

/**
 * Removes the pidfile and sockets of an exited QEMU, keeping serial.log, qmp.log and launch.json for
 * post-mortems. Synchronous on purpose: it runs inside the exit handler, before anything can start a new
 * QEMU for the same VM. `pid` guards against deleting the files of a newer QEMU.
 */
export function removeRuntimeFiles(files: GuestFiles, pid?: number): void {
  if (pid !== undefined) {
    let current: number | undefined;
    try {
      current = parsePid(readFileSync(files.pidFile, "utf8"));
    } catch {
      current = undefined;
    }
    if (current !== undefined && current !== pid) return;
  }
  for (const path of [files.pidFile, files.qmpSocket, files.consoleSocket, files.guestAgentSocket])
    rmSync(path, { force: true });
}

/** Sends a signal; false if the process was already gone. */
export function signal(pid: number, name: NodeJS.Signals): boolean {
  try {
    process.kill(pid, name);
    return true;
  } catch {
    return false;
  }
}

/**
 * For each rbd disk with a keyring, writes the bare base64 key of its Ceph user to a 0600 file that QEMU
 * reads through `-object secret` (see cmdline.ts). Returns the files, to delete once QEMU has read them.
 */
export async function writeRbdKeys(launch: GuestLaunch, dir: string): Promise<string[]> {
  const written: string[] = [];
  for (const [index, { keyring, user }] of rbdSecrets(launch).entries()) {
    const key = cephKeyFor(await readFile(keyring, "utf8"), user);
    if (key === undefined) throw new Error(`keyring ${keyring} has no key for client.${user}`);
    const path = rbdKeyFile(dir, index);
    rmSync(path, { force: true });
    // No trailing newline: QEMU decodes the file as strict base64.
    await writeFile(path, key, { mode: 0o600 });
    written.push(path);
  }
  return written;
}

/** The `key = ...` of section [client.<user>] in a Ceph keyring (an INI file). */
export function cephKeyFor(keyring: string, user: string): string | undefined {
  const wanted = user.startsWith("client.") ? user : `client.${user}`;
  let section = "";
  for (const raw of keyring.split("\n")) {
    const line = raw.trim();
    const header = /^\[(.+)\]$/.exec(line);
    if (header) section = header[1] ?? "";
    const key = /^key\s*=\s*(\S+)$/.exec(line);
    if (key && section === wanted) return key[1];
  }
  return undefined;
}
