// Haven's own local Ceph: one monitor and one file-backed BlueStore OSD per node (each on the node's loopback
// address), one manager, cephx on, pool `rbd` (size 2, min_size 1), a cephx user per node. Everything lives
// under one directory and every daemon is a plain process whose argv names it. Bootstrapping again is cheap:
// it only starts what is not running and waits for HEALTH_OK. See docs/ceph.md.
import { existsSync } from "node:fs";
import { readdir, readFile, rm, writeFile } from "node:fs/promises";
import { isAbsolute, resolve } from "node:path";
import { sleep } from "../../lib/async.js";
import {
  assertDaemonsRunning,
  localCephDaemonPid,
  localCephDaemonReady,
  startLocalCephDaemon,
  stopLocalCeph,
} from "./daemons.js";
import type { CephIdentity } from "../../adapters/ceph/exec.js";
import { nodeClientKeyring } from "../../adapters/ceph/clients.js";
import { waitForCephHealth } from "./health-wait.js";
import { createLocalCeph, POOL, remaining } from "./local-create.js";
import {
  cephPaths,
  type CephNode,
  type DaemonKind,
  type LocalCephRecord,
  monAddrs,
  readRecord,
} from "./local-layout.js";

export {
  localCephDaemonPid,
  localCephDaemonReady,
  startLocalCephDaemon,
  stopLocalCeph,
  stopLocalCephDaemon,
} from "./daemons.js";
export { waitForCephHealth } from "./health-wait.js";
export type { CephNode, DaemonKind } from "./local-layout.js";

export interface LocalCephOptions {
  /** Everything lives under it (e.g. STATE/ceph); made absolute. */
  dir: string;
  /**
   * One monitor per entry (the monitor-role nodes): `host` is the node's address, `namespace` its host's
   * network namespace in a local cluster of hosts.
   */
  mons: CephNode[];
  /** One OSD per entry (the storage-role nodes); default: one on every monitor's node. */
  osds?: CephNode[];
  /** Size of each OSD's sparse BlueStore file; default 10. */
  osdSizeGb?: number;
  /** Node names: each gets the cephx user client.haven-<node>. */
  clients: string[];
  progress: (line: string) => void;
  /** Bound on the whole call, HEALTH_OK included; default 180 s. */
  timeoutMs?: number;
}

export interface LocalCephInfo {
  dir: string;
  conf: string;
  adminKeyring: string;
  /** client.admin: everything, for Haven's controller and the tests. */
  admin: CephIdentity;
  /** Node name → keyring of client.haven-<node>. */
  clientKeyrings: Record<string, string>;
  fsid: string;
  mons: Array<{ name: string; host: string; addrs: string }>;
  mgr: { id: string; host: string };
  osds: Array<{ id: number; node: string; host: string }>;
  pool: "rbd";
}

const DEFAULT_TIMEOUT_MS = 180_000;
const CONF_HEADER = "# Written by Haven";

export async function bootstrapLocalCeph(opts: LocalCephOptions): Promise<LocalCephInfo> {
  const dir = resolve(opts.dir);
  const deadline = Date.now() + (opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  validate(opts);
  let record = await readRecord(dir);
  if (record ? !record.complete : existsSync(cephPaths(dir).conf)) {
    const conf = await readFile(cephPaths(dir).conf, "utf8").catch(() => CONF_HEADER);
    if (!record && !conf.startsWith(CONF_HEADER))
      throw new Error(`${cephPaths(dir).conf} was not written by Haven; refusing to touch it`);
    // Nothing can have used a cluster whose bootstrap never finished: start over.
    opts.progress(`found an unfinished Ceph bootstrap in ${dir}; starting over`);
    await stopLocalCeph(dir);
    await rm(dir, { recursive: true, force: true });
    record = undefined;
  }
  if (record) {
    const extra = opts.mons.filter((m) => !record!.mons.some((known) => known.name === m.name));
    if (extra.length > 0)
      opts.progress(
        `Ceph in ${dir} keeps its ${record.mons.length} monitors and OSDs; ${extra.map((m) => m.name).join(", ")} get none`,
      );
    await restart(dir, record, opts, deadline);
  } else {
    try {
      record = await createLocalCeph(
        dir,
        {
          mons: opts.mons,
          osds: opts.osds ?? opts.mons,
          osdSizeGb: opts.osdSizeGb ?? 10,
          progress: opts.progress,
        },
        deadline,
      );
    } catch (err) {
      // The files stay for a look at the logs; the next bootstrap starts over (the record is not complete).
      await stopLocalCeph(dir);
      throw err;
    }
  }
  const clientKeyrings = await ensureClients(dir, opts.clients, deadline);
  return infoOf(dir, record, clientKeyrings);
}

/** The description of the local Ceph in `dir`, without starting anything (undefined when there is none). */
export async function localCephInfo(dir: string): Promise<LocalCephInfo | undefined> {
  const record = await readRecord(resolve(dir));
  if (!record?.complete) return undefined;
  const keyrings = await readdir(cephPaths(resolve(dir)).keyrings).catch(() => []);
  const clients = keyrings.flatMap((name) => /^client\.haven-(.+)\.keyring$/.exec(name)?.[1] ?? []);
  return infoOf(
    resolve(dir),
    record,
    Object.fromEntries(clients.map((c) => [c, cephPaths(dir).clientKeyring(c)])),
  );
}

function infoOf(dir: string, record: LocalCephRecord, clientKeyrings: Record<string, string>): LocalCephInfo {
  const p = cephPaths(dir);
  return {
    dir,
    conf: p.conf,
    adminKeyring: p.adminKeyring,
    admin: { conf: p.conf, keyring: p.adminKeyring, id: "admin" },
    clientKeyrings,
    fsid: record.fsid,
    mons: record.mons.map((m) => ({ name: m.name, host: m.host, addrs: monAddrs(m) })),
    mgr: record.mgr,
    osds: record.osds.map(({ id, node, host }) => ({ id, node, host })),
    pool: record.pool,
  };
}

function validate(opts: LocalCephOptions): void {
  if (!isAbsolute(resolve(opts.dir))) throw new Error(`bad Ceph directory ${opts.dir}`);
  if (opts.mons.length === 0) throw new Error("a local Ceph needs at least one monitor");
  const name = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/;
  if (opts.osds?.length === 0) throw new Error("a local Ceph needs at least one OSD");
  for (const node of [...opts.mons, ...(opts.osds ?? [])]) {
    if (!name.test(node.name))
      throw new Error(`bad node name for a Ceph daemon: ${JSON.stringify(node.name)}`);
    // Haven's local clusters stay on the machine (design brief): loopback, or the test-lab addresses of
    // its hosts (198.18.0.0/15); a real multi-host Ceph is attached, not built.
    if (!/^(127\.\d{1,3}|198\.1[89])\.\d{1,3}\.\d{1,3}$/.test(node.host))
      throw new Error(`a local Ceph listens on loopback or 198.18.0.0/15 addresses only, not ${node.host}`);
  }
  if (new Set(opts.mons.map((m) => m.name)).size !== opts.mons.length)
    throw new Error("monitor names must differ");
  if (new Set(opts.mons.map((m) => m.host)).size !== opts.mons.length)
    throw new Error("monitor hosts must differ");
  for (const client of opts.clients)
    if (!name.test(client)) throw new Error(`bad node name for a cephx user: ${JSON.stringify(client)}`);
  const size = opts.osdSizeGb ?? 10;
  if (!Number.isFinite(size) || size < 1 || size > 1024)
    throw new Error(`bad OSD size ${size} GB (1 to 1024)`);
}

async function restart(
  dir: string,
  record: LocalCephRecord,
  opts: LocalCephOptions,
  deadline: number,
): Promise<void> {
  const daemons: Array<[DaemonKind, string[]]> = [
    ["mon", record.mons.map((m) => m.name)],
    ["mgr", [record.mgr.id]],
    ["osd", record.osds.map((o) => String(o.id))],
  ];
  const startedNow: Array<[DaemonKind, string]> = [];
  for (const [kind, ids] of daemons) {
    for (const id of ids) {
      if ((await localCephDaemonPid(dir, kind, id)) !== undefined) continue;
      await startLocalCephDaemon(dir, kind, id);
      startedNow.push([kind, id]);
    }
  }
  opts.progress(
    startedNow.length > 0
      ? `Ceph in ${dir}: started ${startedNow.map(([kind, id]) => `${kind}.${id}`).join(", ")}`
      : `Ceph in ${dir}: all ${record.mons.length + 1 + record.osds.length} daemons running`,
  );
  // A Ceph whose daemons all run is left as it is: its health is `ceph status`'s to tell. Waiting here for
  // HEALTH_OK would fail `cluster up` on a transient warning of a working cluster (slow OSD heartbeats for
  // minutes after a network cut, PGs recovering).
  if (startedNow.length === 0) return;
  const check = () => assertDaemonsRunning(dir, daemons);
  // Until a restarted daemon has joined, `ceph status` may still describe its dead predecessor.
  let lastProgress = Date.now();
  for (;;) {
    await check();
    const ready = await Promise.all(startedNow.map(([kind, id]) => localCephDaemonReady(dir, kind, id)));
    const waiting = startedNow.filter((_, i) => !ready[i]).map(([kind, id]) => `${kind}.${id}`);
    if (waiting.length === 0) break;
    if (Date.now() > deadline)
      throw new Error(`Ceph daemons did not join the cluster in time: ${waiting.join(", ")}`);
    if (Date.now() - lastProgress >= 2000) {
      opts.progress(`waiting for ${waiting.join(", ")} to join the cluster`);
      lastProgress = Date.now();
    }
    await sleep(200);
  }
  await waitForCephHealth(infoOf(dir, record, {}).admin, {
    timeoutMs: remaining(deadline),
    progress: opts.progress,
    expectOsds: record.osds.length,
    expectMons: record.mons.length,
    check,
  });
}

/** client.haven-<node> for every node that has no keyring yet (get-or-create: idempotent). */
async function ensureClients(
  dir: string,
  clients: string[],
  deadline: number,
): Promise<Record<string, string>> {
  const p = cephPaths(dir);
  const admin: CephIdentity = { conf: p.conf, keyring: p.adminKeyring, id: "admin" };
  const keyrings: Record<string, string> = {};
  for (const node of clients) {
    const file = p.clientKeyring(node);
    if (!existsSync(file)) {
      const keyring = await nodeClientKeyring(admin, node, POOL, remaining(deadline));
      await writeFile(file, keyring, { mode: 0o600 });
    }
    keyrings[node] = file;
  }
  return keyrings;
}
