// The local Ceph's daemons as plain processes that Haven owns: `<binary> -f --conf <dir>/ceph.conf --id <id>`,
// started in their own session, output appended to <dir>/log/<kind>.<id>.out, pid in <dir>/run/<kind>.<id>.pid.
// A pid counts only while its command line still holds that exact conf path and id (livePid), so a recycled
// pid is never signalled; the conf path also puts <dir> in every daemon's argv for leak checks.
import { closeSync, openSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { sleep } from "../../lib/async.js";
import { isAlive, livePid, processesMatching, terminate } from "../../lib/process.js";
import { run } from "../../lib/command.js";
import { spawnInNamespace } from "../../lib/netns.js";
import { cephPaths, daemonNamespace, readRecord, type DaemonKind } from "./local-layout.js";

const BINARY: Record<DaemonKind, string> = { mon: "ceph-mon", mgr: "ceph-mgr", osd: "ceph-osd" };
const STOP_GRACE_MS = 10_000;

const daemonArgv = (dir: string, id: string) => ["-f", "--conf", cephPaths(dir).conf, "--id", id];
/** The part of a daemon's command line that identifies it. */
const daemonMarker = (dir: string, id: string) => daemonArgv(dir, id).slice(1).join(" ");

/** The daemon's pid if it is running (pidfile plus command-line check). */
export async function localCephDaemonPid(
  dir: string,
  kind: DaemonKind,
  id: string,
): Promise<number | undefined> {
  const pid = await livePid(cephPaths(dir).pidFile(kind, id), daemonMarker(dir, id));
  // A monitor and the manager share their id (the node name): the binary tells them apart.
  if (pid === undefined) return undefined;
  const argv0 = (await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).split("\0")[0] ?? "";
  return argv0.endsWith(BINARY[kind]) ? pid : undefined;
}

/**
 * Starts the daemon unless it already runs, in the namespace its record names; resolves with its pid (it
 * may still be booting).
 */
export async function startLocalCephDaemon(dir: string, kind: DaemonKind, id: string): Promise<number> {
  const running = await localCephDaemonPid(dir, kind, id);
  if (running !== undefined) return running;
  const paths = cephPaths(dir);
  await mkdir(paths.run, { recursive: true });
  await mkdir(paths.log, { recursive: true });
  const out = openSync(paths.outFile(kind, id), "a");
  try {
    const record = await readRecord(dir);
    const namespace = record && daemonNamespace(record, kind, id);
    const child = spawnInNamespace(namespace, [BINARY[kind], ...daemonArgv(dir, id)], {
      detached: true,
      stdio: ["ignore", out, out],
    });
    const pid = await new Promise<number>((resolve, reject) => {
      child.once("spawn", () => resolve(child.pid!));
      child.once("error", (err) => reject(new Error(`cannot run ${BINARY[kind]}: ${err.message}`)));
    });
    child.unref();
    // Ceph writes the same pid to the same file once it is up; writing it now closes the window before that.
    await writeFile(paths.pidFile(kind, id), `${pid}\n`);
    return pid;
  } finally {
    closeSync(out);
  }
}

/**
 * Whether the daemon has joined the cluster, asked over its admin socket (no cluster round trip, and no
 * stale answer: `ceph status` keeps a just-killed monitor in the quorum until its lease runs out).
 * Monitor: leader or peon; OSD: active; manager: initialised.
 */
export async function localCephDaemonReady(dir: string, kind: DaemonKind, id: string): Promise<boolean> {
  const socket = join(cephPaths(dir).run, `${kind}.${id}.asok`);
  const command = { mon: "mon_status", osd: "status", mgr: "mgr_status" }[kind];
  const answer = await run("ceph", ["--admin-daemon", socket, command], { timeoutMs: 5000 }).catch(() => "");
  const parsed = readySchema.safeParse(safeJson(answer));
  if (!parsed.success) return false;
  const { state, initialized } = parsed.data;
  if (kind === "mon") return state === "leader" || state === "peon";
  if (kind === "osd") return state === "active";
  return initialized === true;
}

const readySchema = z.looseObject({ state: z.string().optional(), initialized: z.boolean().optional() });

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Signals the daemon and waits until it is gone (SIGTERM escalates to SIGKILL after 10 s). */
export async function stopLocalCephDaemon(
  dir: string,
  kind: DaemonKind,
  id: string,
  signal: NodeJS.Signals = "SIGTERM",
): Promise<void> {
  const pid = await localCephDaemonPid(dir, kind, id);
  if (pid === undefined) return;
  if (signal === "SIGTERM") return terminate(pid, STOP_GRACE_MS);
  try {
    process.kill(pid, signal);
  } catch {
    return; // already gone
  }
  // A killed daemon is gone once all its threads are: until then its store is still locked.
  if (signal === "SIGKILL") while (isAlive(pid)) await sleep(20);
}

/** Every Ceph daemon whose command line names this directory's ceph.conf (clients and QEMUs excluded). */
export async function localCephDaemons(dir: string): Promise<Array<{ pid: number; kind: DaemonKind }>> {
  const found = await processesMatching(`--conf ${cephPaths(dir).conf} --id `);
  return found.flatMap(({ pid, cmdline }) => {
    const argv0 = cmdline.split(" ")[0] ?? "";
    const kind = (Object.keys(BINARY) as DaemonKind[]).find((k) => argv0.endsWith(BINARY[k]));
    return kind ? [{ pid, kind }] : [];
  });
}

/** Stops every daemon of the local Ceph in `dir`: OSDs and manager first, then the monitors. */
export async function stopLocalCeph(dir: string): Promise<void> {
  const stop = (pids: number[], graceMs: number) => Promise.all(pids.map((pid) => terminate(pid, graceMs)));
  const daemons = await localCephDaemons(dir);
  // OSDs tell the monitors they are going; with the monitors gone first they would wait for them.
  await stop(
    daemons.filter((d) => d.kind !== "mon").map((d) => d.pid),
    STOP_GRACE_MS,
  );
  await stop(
    daemons.filter((d) => d.kind === "mon").map((d) => d.pid),
    STOP_GRACE_MS,
  );
  // Anything started meanwhile (a restart racing with the stop) goes too.
  await stop(
    (await localCephDaemons(dir)).map((d) => d.pid),
    1000,
  );
}

/** Throws, with the end of its logs, when a daemon Haven started is no longer running. */
export async function assertDaemonsRunning(
  dir: string,
  daemons: Array<[DaemonKind, string[]]>,
): Promise<void> {
  for (const [kind, ids] of daemons) {
    for (const id of ids) {
      if ((await localCephDaemonPid(dir, kind, id)) !== undefined) continue;
      const p = cephPaths(dir);
      const tail = async (file: string) =>
        (await readFile(file, "utf8").catch(() => "")).trim().split("\n").slice(-6).join("\n");
      throw new Error(
        `ceph-${kind} ${id} exited; end of ${p.outFile(kind, id)}:\n${await tail(p.outFile(kind, id))}\nend of ${p.logFile(kind, id)}:\n${await tail(p.logFile(kind, id))}`,
      );
    }
  }
}
