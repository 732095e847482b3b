// Creating Haven's local Ceph from nothing: keyrings, monmap and monitors, the manager, one file-backed
// BlueStore OSD per node (made while the monitors elect), pool `rbd`, then HEALTH_OK. The record of what was
// decided is written first and marked complete last, so an interrupted creation is recognised and redone.
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { connect, createServer } from "node:net";
import { join } from "node:path";
import { z } from "zod";
import { sleep } from "../../lib/async.js";
import { assertDaemonsRunning, startLocalCephDaemon } from "./daemons.js";
import { run } from "../../lib/command.js";
import { cephExec, type CephIdentity } from "../../adapters/ceph/exec.js";
import { waitForCephHealth } from "./health-wait.js";
import {
  cephPaths,
  type CephNode,
  type LocalCephRecord,
  type LocalMon,
  monAddrs,
  poolSize,
  renderConf,
  writeRecord,
} from "./local-layout.js";
import { cephJson } from "../../adapters/ceph/status.js";

export const POOL = "rbd";
const POOL_PGS = 32;

export interface CreateOptions {
  mons: CephNode[];
  osds: CephNode[];
  osdSizeGb: number;
  progress: (line: string) => void;
}

export const remaining = (deadline: number) => Math.max(1000, deadline - Date.now());

/** Creates the cluster in `dir` (empty or absent) and returns once it is HEALTH_OK. */
export async function createLocalCeph(
  dir: string,
  opts: CreateOptions,
  deadline: number,
): Promise<LocalCephRecord> {
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
    // A host of its own has every port free; a shared loopback address may not.
    const port = (preferred: number) => (mon.namespace ? preferred : portOn(mon.host, preferred));
    mons.push({
      name: mon.name,
      host: mon.host,
      ...inHost(mon),
      v2Port: await port(3300),
      v1Port: await port(6789),
    });
  }
  const record: LocalCephRecord = {
    fsid: randomUUID(),
    mons,
    mgr: { id: mons[0]!.name, host: mons[0]!.host, ...inHost(mons[0]!) },
    osds: opts.osds.map((node, id) => ({
      id,
      node: node.name,
      host: node.host,
      ...inHost(node),
      uuid: randomUUID(),
    })),
    osdSizeGb: opts.osdSizeGb,
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
  const check = () => assertDaemonsRunning(dir, [["mon", record.mons.map((m) => m.name)]]);
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
    assertDaemonsRunning(dir, [
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
  opts.progress(
    `pool ${POOL} created (${POOL_PGS} PGs, size ${poolSize(record)}, min_size 1); initialising it for RBD`,
  );
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
  const monKeyring = join(p.keyrings, "mon-bootstrap.keyring");
  const mgrKeyring = join(p.data("mgr", record.mgr.id), "keyring");
  const monmap = join(p.run, "monmap");
  await mkdir(p.data("mgr", record.mgr.id), { recursive: true });
  await mkdir(join(dir, "mon"), { recursive: true }); // ceph-mon --mkfs makes its own directory, not the parents
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
  await writeFile(join(data, "keyring"), `[osd.${id}]\n\tkey = ${key}\n`, { mode: 0o600 });
  await run(
    "ceph-osd",
    ["--conf", cephPaths(dir).conf, "--id", String(id), "--mkfs", "--osd-uuid", uuid, "--no-mon-config"],
    {
      timeoutMs: remaining(deadline),
    },
  );
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

function ceph(admin: CephIdentity, args: string[], deadline: number): Promise<string> {
  return cephExec("ceph", admin, args, { timeoutMs: remaining(deadline) });
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

/** The namespace field of a daemon on `node` (none when it runs where Haven runs). */
const inHost = (node: CephNode) => (node.namespace === undefined ? {} : { namespace: node.namespace });

const seconds = (since: number) => `${((Date.now() - since) / 1000).toFixed(1)} s`;
