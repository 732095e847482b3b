// Haven's own local Ceph: one monitor and one file-backed BlueStore OSD per node (each on the node's loopback
// address), one manager, cephx on, pool `rbd` (size 2, min_size 1), a cephx user per node. Everything lives
// under one directory and every daemon is a plain process whose argv names it. Bootstrapping again is cheap:
// it only starts what is not running and waits for HEALTH_OK. See docs/ceph.md.
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { connect, createServer } from "node:net";
import { sleep } from "../../lib/async.js";
import { isAbsolute, resolve } from "node:path";
import { cephExec, run, type CephIdentity } from "./exec.js";
import { localCephDaemonPid, startLocalCephDaemon, stopLocalCeph } from "./daemons.js";
import { waitForCephHealth } from "./health-wait.js";
import {
  cephPaths,
  type DaemonKind,
  type LocalCephRecord,
  type LocalMon,
  monAddrs,
  readRecord,
  renderConf,
} from "./local-layout.js";
import { cephJson } from "./status.js";
import { z } from "zod";

export { startLocalCephDaemon, stopLocalCeph, stopLocalCephDaemon, localCephDaemonPid } from "./daemons.js";
export { waitForCephHealth } from "./health-wait.js";
export type { DaemonKind } from "./local-layout.js";

export interface LocalCephOptions {
  /** Everything lives under it (e.g. STATE/ceph); made absolute. */
  dir: string;
  /** One monitor and one OSD per entry (one per node); `host` is the node's loopback address. */
  mons: Array<{ name: string; host: string }>;
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
const POOL = "rbd";
const POOL_PGS = 32;
/** What Haven's node users may do: RBD I/O on the pool, blocklisting for exclusive-lock takeover, no admin. */
const CLIENT_CAPS = [
  "mon",
  "profile rbd",
  "osd",
  `profile rbd pool=${POOL}`,
  "mgr",
  `profile rbd pool=${POOL}`,
];
const CONF_HEADER = "# Written by Haven";

export async function bootstrapLocalCeph(opts: LocalCephOptions): Promise<LocalCephInfo> {
  const dir = resolve(opts.dir);
  const deadline = Date.now() + (opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  validate(opts);
  let record = await readRecord(dir);
  if (!record?.complete && existsSync(cephPaths(dir).conf)) {
    const conf = await readFile(cephPaths(dir).conf, "utf8");
    if (!conf.startsWith(CONF_HEADER))
      throw new Error(`${cephPaths(dir).conf} was not written by Haven; refusing to touch it`);
    // Nothing can have used a cluster whose bootstrap never finished: start over.
    opts.progress(`found an unfinished Ceph bootstrap in ${dir}; starting over`);
    await stopLocalCeph(dir);
    await rm(dir, { recursive: true, force: true });
    record = undefined;
  }
  if (record) await restart(dir, record, opts, deadline);
  else {
    try {
      record = await create(dir, opts, deadline);
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
  for (const mon of opts.mons) {
    if (!name.test(mon.name))
      throw new Error(`bad node name for a Ceph monitor: ${JSON.stringify(mon.name)}`);
    // Haven's local clusters use loopback only (design brief); a real multi-host Ceph is attached, not built.
    if (!/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(mon.host))
      throw new Error(`a local Ceph listens on loopback addresses only, not ${mon.host}`);
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

const remaining = (deadline: number) => Math.max(1000, deadline - Date.now());

async function create(dir: string, opts: LocalCephOptions, deadline: number): Promise<LocalCephRecord> {
  const started = Date.now();
  const p = cephPaths(dir);
  if (existsSync(dir) && (await readdir(dir)).length > 0)
    throw new Error(`${dir} is not empty; a new local Ceph needs an empty directory`);
  await mkdir(p.keyrings, { recursive: true, mode: 0o700 });
  await mkdir(p.run, { recursive: true });
  await mkdir(p.log, { recursive: true });
  await mkdir(p.crash, { recursive: true });
  const mons: LocalMon[] = [];
  for (const mon of opts.mons) {
    mons.push({ ...mon, v2Port: await portOn(mon.host, 3300), v1Port: await portOn(mon.host, 6789) });
  }
  const record: LocalCephRecord = {
    fsid: randomUUID(),
    mons,
    mgr: { id: opts.mons[0]!.name, host: opts.mons[0]!.host },
    osds: opts.mons.map((mon, id) => ({ id, node: mon.name, host: mon.host, uuid: randomUUID() })),
    osdSizeGb: opts.osdSizeGb ?? 10,
    pool: POOL,
    complete: false,
  };
  await writeRecord(dir, record);
  await writeFile(p.conf, renderConf(dir, record));
  opts.progress(
    `creating Ceph ${record.fsid} in ${dir}: ${mons.length} monitors (${mons.map(monAddrs).join(", ")})`,
  );

  const admin: CephIdentity = { conf: p.conf, keyring: p.adminKeyring, id: "admin" };
  await createMonitors(dir, record);
  for (const mon of record.mons) await startLocalCephDaemon(dir, "mon", mon.name);
  const check = () => daemonsAlive(dir, [["mon", record.mons.map((m) => m.name)]]);
  // OSD file systems are made while the monitors elect (mkfs needs no monitor: the fsid is in ceph.conf).
  const osdKeys = await Promise.all(record.osds.map(() => run("ceph-authtool", ["--gen-print-key"])));
  const mkfs = Promise.all(
    record.osds.map((osd, i) => makeOsd(dir, osd.id, osd.uuid, osdKeys[i]!.trim(), deadline)),
  );
  mkfs.catch(() => undefined); // awaited below; a failure must not go unhandled meanwhile
  await waitForQuorum(admin, record.mons, deadline, opts.progress, check);
  opts.progress(
    `monitors in quorum after ${seconds(started)}; starting the manager and ${record.osds.length} OSDs`,
  );

  // The device health module wants SMART data (file-backed OSDs have none) and its own pool: off.
  await cephExec(
    "ceph",
    admin,
    ["config", "set", "mgr", "mgr/devicehealth/enable_monitoring", "false", "--force"],
    {
      timeoutMs: remaining(deadline),
    },
  );
  await startLocalCephDaemon(dir, "mgr", record.mgr.id);
  for (const [i, osd] of record.osds.entries()) {
    // With its key given here, the OSD's cephx entity exists before the OSD first talks to the monitors.
    await cephExec("ceph", admin, ["osd", "new", osd.uuid, String(osd.id), "-i", "-"], {
      input: JSON.stringify({ cephx_secret: osdKeys[i]!.trim() }),
      timeoutMs: remaining(deadline),
    });
  }
  await mkfs;
  for (const osd of record.osds) await startLocalCephDaemon(dir, "osd", String(osd.id));
  const allDaemons = (): Promise<void> =>
    daemonsAlive(dir, [
      ["mon", record.mons.map((m) => m.name)],
      ["mgr", [record.mgr.id]],
      ["osd", record.osds.map((o) => String(o.id))],
    ]);

  await ceph(
    admin,
    ["osd", "pool", "create", POOL, String(POOL_PGS), String(POOL_PGS), "replicated", "--autoscale-mode=off"],
    deadline,
  );
  await ceph(admin, ["osd", "pool", "application", "enable", POOL, "rbd"], deadline);
  // `rbd pool init` writes to the pool, so it returns once its PGs are active.
  opts.progress(`pool ${POOL} created (${POOL_PGS} PGs, size 2, min_size 1); initialising it for RBD`);
  await cephExec("rbd", admin, ["pool", "init", POOL], { timeoutMs: remaining(deadline) });
  await waitForCephHealth(admin, {
    timeoutMs: remaining(deadline),
    progress: opts.progress,
    expectOsds: record.osds.length,
    expectMons: record.mons.length,
    check: allDaemons,
  });
  record.complete = true;
  await writeRecord(dir, record);
  opts.progress(`Ceph is HEALTH_OK after ${seconds(started)}`);
  return record;
}

/** Keyrings, monmap and `ceph-mon --mkfs` for every monitor; the mon. key and monmap are then dropped. */
async function createMonitors(dir: string, record: LocalCephRecord): Promise<void> {
  const p = cephPaths(dir);
  const monKeyring = `${p.keyrings}/mon-bootstrap.keyring`;
  const mgrKeyring = `${p.data("mgr", record.mgr.id)}/keyring`;
  const monmap = `${p.run}/monmap`;
  await mkdir(p.data("mgr", record.mgr.id), { recursive: true });
  await mkdir(`${dir}/mon`, { recursive: true }); // ceph-mon --mkfs makes its own directory, not the parents
  const authtool = (args: string[]) => run("ceph-authtool", args);
  await authtool(["--create-keyring", monKeyring, "--gen-key", "-n", "mon.", "--cap", "mon", "allow *"]);
  await authtool([
    "--create-keyring", p.adminKeyring, "--gen-key", "-n", "client.admin",
    "--cap", "mon", "allow *", "--cap", "osd", "allow *", "--cap", "mds", "allow *", "--cap", "mgr", "allow *",
  ]); // prettier-ignore
  await authtool([
    "--create-keyring", mgrKeyring, "--gen-key", "-n", `mgr.${record.mgr.id}`,
    "--cap", "mon", "allow profile mgr", "--cap", "osd", "allow *", "--cap", "mds", "allow *",
  ]); // prettier-ignore
  await authtool([monKeyring, "--import-keyring", p.adminKeyring]);
  await authtool([monKeyring, "--import-keyring", mgrKeyring]);
  await chmod(p.adminKeyring, 0o600);
  await run("monmaptool", [
    "--create",
    "--fsid",
    record.fsid,
    ...record.mons.flatMap((m) => ["--addv", m.name, monAddrs(m)]),
    monmap,
  ]);
  await Promise.all(
    record.mons.map((m) =>
      run("ceph-mon", [
        "--conf",
        p.conf,
        "--id",
        m.name,
        "--mkfs",
        "--monmap",
        monmap,
        "--keyring",
        monKeyring,
      ]),
    ),
  );
  await rm(monKeyring);
  await rm(monmap);
}

/** Writes the OSD's keyring and makes its BlueStore (a sparse file <osd_data>/block). */
async function makeOsd(dir: string, id: number, uuid: string, key: string, deadline: number): Promise<void> {
  const data = cephPaths(dir).data("osd", String(id));
  await mkdir(data, { recursive: true });
  await writeFile(`${data}/keyring`, `[osd.${id}]\n\tkey = ${key}\n`, { mode: 0o600 });
  await run(
    "ceph-osd",
    ["--conf", cephPaths(dir).conf, "--id", String(id), "--mkfs", "--osd-uuid", uuid, "--no-mon-config"],
    {
      timeoutMs: remaining(deadline),
    },
  );
}

/** A cluster made before: start whatever is not running, then wait for HEALTH_OK. */
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
  const startedNow: string[] = [];
  for (const [kind, ids] of daemons) {
    for (const id of ids) {
      if ((await localCephDaemonPid(dir, kind, id)) !== undefined) continue;
      await startLocalCephDaemon(dir, kind, id);
      startedNow.push(`${kind}.${id}`);
    }
  }
  opts.progress(
    startedNow.length > 0
      ? `Ceph in ${dir}: started ${startedNow.join(", ")}`
      : `Ceph in ${dir}: all ${record.mons.length + 1 + record.osds.length} daemons running`,
  );
  await waitForCephHealth(infoOf(dir, record, {}).admin, {
    timeoutMs: remaining(deadline),
    progress: opts.progress,
    expectOsds: record.osds.length,
    expectMons: record.mons.length,
    check: () => daemonsAlive(dir, daemons),
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
      const keyring = await cephExec(
        "ceph",
        admin,
        ["auth", "get-or-create", `client.haven-${node}`, ...CLIENT_CAPS],
        {
          timeoutMs: remaining(deadline),
        },
      );
      await writeFile(file, keyring, { mode: 0o600 });
    }
    keyrings[node] = file;
  }
  return keyrings;
}

async function waitForQuorum(
  admin: CephIdentity,
  mons: LocalMon[],
  deadline: number,
  progress: (line: string) => void,
  check: () => Promise<void>,
): Promise<void> {
  const quorumSchema = z.looseObject({ quorum_names: z.array(z.string()) });
  let lastProgress = Date.now();
  for (;;) {
    await check();
    // A client that asks before the monitors listen backs off for seconds: knock first, it is cheap.
    const listening = (await Promise.all(mons.map((m) => accepts(m.host, m.v2Port)))).every(Boolean);
    const quorum = listening
      ? await cephJson(admin, ["quorum_status"], quorumSchema).catch(() => undefined)
      : undefined;
    if (quorum && quorum.quorum_names.length === mons.length) return;
    if (Date.now() > deadline) throw new Error(`the ${mons.length} Ceph monitors formed no quorum in time`);
    if (Date.now() - lastProgress > 2000) {
      progress(
        `waiting for the monitors' quorum: ${quorum ? quorum.quorum_names.join(", ") || "none" : listening ? "no answer yet" : "not listening yet"}`,
      );
      lastProgress = Date.now();
    }
    await sleep(100);
  }
}

/** Whether a TCP connection to host:port succeeds within a second. */
function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = connect({ host, port, timeout: 1000 });
    const finish = (ok: boolean) => {
      socket.destroy();
      done(ok);
    };
    socket.once("connect", () => finish(true));
    socket.once("error", () => finish(false));
    socket.once("timeout", () => finish(false));
  });
}

/** Throws, with the end of its logs, when a daemon Haven started is no longer running. */
async function daemonsAlive(dir: string, daemons: Array<[DaemonKind, string[]]>): Promise<void> {
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

function ceph(admin: CephIdentity, args: string[], deadline: number): Promise<string> {
  return cephExec("ceph", admin, args, { timeoutMs: remaining(deadline) });
}

async function writeRecord(dir: string, record: LocalCephRecord): Promise<void> {
  const file = cephPaths(dir).record;
  await writeFile(`${file}.tmp`, JSON.stringify(record, null, 2) + "\n");
  await rename(`${file}.tmp`, file);
}

/** The well-known port when it is free on `host`, else any free port there (two local clusters can coexist). */
async function portOn(host: string, preferred: number): Promise<number> {
  const tryListen = (port: number) =>
    new Promise<number | undefined>((done) => {
      const server = createServer();
      server.once("error", () => done(undefined));
      server.listen(port, host, () => {
        const address = server.address();
        server.close(() => done(typeof address === "object" && address ? address.port : undefined));
      });
    });
  const port = (await tryListen(preferred)) ?? (await tryListen(0));
  if (port === undefined) throw new Error(`no free TCP port on ${host}`);
  return port;
}

const seconds = (since: number) => `${((Date.now() - since) / 1000).toFixed(1)} s`;
