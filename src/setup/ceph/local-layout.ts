// Where Haven's own local Ceph keeps everything (all under one directory), the record of what was bootstrapped,
// and the ceph.conf it runs with. Every non-default setting carries its reason, which is also written into
// ceph.conf as a comment, so the file explains itself (docs/ceph.md has the same list).
import { readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";

export type DaemonKind = "mon" | "mgr" | "osd";

/** Paths inside a local Ceph directory. `dir` must be absolute: every daemon's argv names it. */
export function cephPaths(dir: string) {
  return {
    conf: join(dir, "ceph.conf"),
    record: join(dir, "haven-ceph.json"),
    keyrings: join(dir, "keyrings"),
    adminKeyring: join(dir, "keyrings", "client.admin.keyring"),
    clientKeyring: (node: string) => join(dir, "keyrings", `client.haven-${node}.keyring`),
    run: join(dir, "run"),
    log: join(dir, "log"),
    crash: join(dir, "crash"),
    data: (kind: DaemonKind, id: string) => join(dir, kind, id),
    pidFile: (kind: DaemonKind, id: string) => join(dir, "run", `${kind}.${id}.pid`),
    outFile: (kind: DaemonKind, id: string) => join(dir, "log", `${kind}.${id}.out`),
    logFile: (kind: DaemonKind, id: string) => join(dir, "log", `${kind}.${id}.log`),
  };
}

/** The network namespace a daemon runs in: its node's host in a local cluster of hosts. */
const namespace = z.string().optional();
const monSchema = z.object({
  name: z.string(),
  host: z.string(),
  namespace,
  v2Port: z.number(),
  v1Port: z.number(),
});
const osdSchema = z.object({
  id: z.number().int().min(0),
  node: z.string(),
  host: z.string(),
  namespace,
  uuid: z.string(),
});

/** What a bootstrap decided (written before the first daemon starts) and whether it finished. */
export const localCephRecordSchema = z.object({
  fsid: z.string(),
  mons: z.array(monSchema).min(1),
  mgr: z.object({ id: z.string(), host: z.string(), namespace }),
  osds: z.array(osdSchema).min(1),
  osdSizeGb: z.number().positive(),
  pool: z.literal("rbd"),
  /** Set once the cluster reached HEALTH_OK for the first time; before that the directory may be wiped. */
  complete: z.boolean(),
});
export type LocalCephRecord = z.infer<typeof localCephRecordSchema>;
export type LocalMon = z.infer<typeof monSchema>;

/** A node that runs a daemon: its name, its address, and its host's namespace in a local cluster of hosts. */
export interface CephNode {
  name: string;
  host: string;
  namespace?: string;
}

/** The namespace the daemon `kind`.`id` of this record runs in (undefined: this process's). */
export function daemonNamespace(record: LocalCephRecord, kind: DaemonKind, id: string): string | undefined {
  if (kind === "mon") return record.mons.find((mon) => mon.name === id)?.namespace;
  if (kind === "mgr") return record.mgr.namespace;
  return record.osds.find((osd) => String(osd.id) === id)?.namespace;
}

export async function readRecord(dir: string): Promise<LocalCephRecord | undefined> {
  const text = await readFile(cephPaths(dir).record, "utf8").catch(() => undefined);
  if (text === undefined) return undefined;
  try {
    return localCephRecordSchema.parse(JSON.parse(text));
  } catch (err) {
    throw new Error(`${cephPaths(dir).record} is damaged (${(err as Error).message.split("\n")[0]})`);
  }
}

export async function writeRecord(dir: string, record: LocalCephRecord): Promise<void> {
  const file = cephPaths(dir).record;
  await writeFile(`${file}.tmp`, JSON.stringify(record, null, 2) + "\n");
  await rename(`${file}.tmp`, file);
}

/** `[v2:127.0.10.1:3300,v1:127.0.10.1:6789]`: the address vector of one monitor. */
export const monAddrs = (mon: LocalMon) => `[v2:${mon.host}:${mon.v2Port},v1:${mon.host}:${mon.v1Port}]`;

interface Setting {
  key: string;
  value: string;
  why?: string;
}

const MiB = 1024 * 1024;

/** The full ceph.conf of a local cluster. */
/** Copies of each object: two, or one when the cluster has a single OSD (a one-node local cluster). */
export function poolSize(record: LocalCephRecord): number {
  return Math.min(2, record.osds.length);
}

export function renderConf(dir: string, record: LocalCephRecord): string {
  const p = cephPaths(dir);
  const global: Setting[] = [
    { key: "fsid", value: record.fsid },
    { key: "mon_host", value: record.mons.map(monAddrs).join(",") },
    {
      key: "auth_cluster_required",
      value: "cephx",
      why: "cephx everywhere: daemons, services and clients authenticate (the seed ran without auth)",
    },
    { key: "auth_service_required", value: "cephx" },
    { key: "auth_client_required", value: "cephx" },
    {
      key: "auth_allow_insecure_global_id_reclaim",
      value: "false",
      why: "every client is pacific or newer (CVE-2021-20288 fixed); also clears AUTH_INSECURE_GLOBAL_ID_RECLAIM_ALLOWED",
    },
    {
      key: "ms_bind_msgr2",
      value: "true",
      why: "monitors speak msgr2 (v2, port 3300) and v1 for old clients",
    },
    {
      key: "run_dir",
      value: p.run,
      why: "everything lives under the Haven state directory, never in /var/lib/ceph, /var/run or /var/log",
    },
    { key: "admin_socket", value: join(p.run, "$name.asok") },
    { key: "pid_file", value: join(p.run, "$name.pid") },
    { key: "log_file", value: join(p.log, "$name.log") },
    {
      key: "mon_cluster_log_file",
      // Every monitor writes the cluster log: one file each, or the lines appear three times.
      value: `default=${join(p.log, "$cluster.$channel.$name.log")} cluster=${join(p.log, "$cluster.$name.log")}`,
    },
    { key: "crash_dir", value: p.crash },
    { key: "mon_data", value: join(dir, "mon", "$id") },
    { key: "mgr_data", value: join(dir, "mgr", "$id") },
    { key: "osd_data", value: join(dir, "osd", "$id") },
    {
      key: "osd_pool_default_size",
      value: String(poolSize(record)),
      why: "two copies of every object, the seed's choice; a 3-node cluster survives one node (one copy when there is only one OSD)",
    },
    ...(poolSize(record) === 1
      ? [
          {
            key: "mon_warn_on_pool_no_redundancy",
            value: "false",
            why: "a single-node cluster has one copy by construction; saying so forever would hide real warnings",
          },
        ]
      : []),
    {
      key: "osd_pool_default_min_size",
      value: "1",
      why: "keep serving I/O with one copy left while a node is down (the seed's choice; trades safety for availability)",
    },
    {
      key: "mon_data_avail_warn",
      value: "10",
      why: "the monitors share the host disk with everything else and their store is tiny; the default 30 % turns HEALTH_WARN on most laptops and CI machines",
    },
    {
      key: "mgr_initial_modules",
      value: "iostat",
      why: "without restful (needs python3-pecan and would listen on all addresses) and nfs (needs an orchestrator)",
    },
    {
      key: "mgr_stats_period",
      value: "1",
      why: "daemons report PG states to the manager every second instead of every 5: health follows a node's failure and return promptly; negligible load with 3 OSDs",
    },
  ];
  const client: Setting[] = [
    {
      key: "keyring",
      value: join(p.keyrings, "$name.keyring"),
      why: "so `ceph -c <dir>/ceph.conf -s` works as client.admin and `--id haven-<node>` finds its key",
    },
    {
      key: "log_file",
      value: "/dev/null",
      why: "clients (CLI, QEMU) report errors on stderr, no per-call logs",
    },
    { key: "admin_socket", value: "", why: "many concurrent clients would fight over one socket" },
  ];
  const mon: Setting[] = [
    { key: "keyring", value: "$mon_data/keyring" },
    {
      key: "paxos_propose_interval",
      value: "0.2",
      why: "monitors commit map changes every 0.2 s instead of batching them for 1 s: OSDs boot, are marked down and clients are blocklisted (Haven's fence) sooner; the extra commits cost little on a small cluster",
    },
    {
      key: "mon_election_timeout",
      value: "2",
      why: "an election waits 2 s (default 5) for a monitor that does not answer: on loopback an answer takes milliseconds, and a fresh 3-monitor cluster often runs a second election in which one acknowledgement is lost",
    },
  ];
  const mgr: Setting[] = [{ key: "keyring", value: "$mgr_data/keyring" }];
  const osd: Setting[] = [
    { key: "keyring", value: "$osd_data/keyring" },
    { key: "osd_objectstore", value: "bluestore" },
    {
      key: "bluestore_block_create",
      value: "true",
      why: "file-backed BlueStore: the block device is a sparse file <osd_data>/block, no disks or LVM needed",
    },
    { key: "bluestore_block_size", value: String(record.osdSizeGb * 1024 * MiB) },
    {
      key: "bluestore_fsck_on_mkfs",
      value: "false",
      why: "checking a file system made a second ago only slows the bootstrap down",
    },
    {
      key: "osd_memory_target",
      value: String(896 * MiB),
      why: "the smallest Ceph allows (default 4 GiB): several OSDs share one small machine with the guests",
    },
  ];
  const sections: Array<[string, Setting[]]> = [
    ["global", global],
    ["client", client],
    ["mon", mon],
    ["mgr", mgr],
    ["osd", osd],
  ];
  // Each daemon listens only on its node's loopback address; OSDs sit under a CRUSH host named after their node,
  // so the default rule (one copy per host) spreads copies across nodes as on real hosts.
  for (const m of record.mons) sections.push([`mon.${m.name}`, [{ key: "public_addr", value: m.host }]]);
  sections.push([`mgr.${record.mgr.id}`, [{ key: "public_addr", value: record.mgr.host }]]);
  for (const o of record.osds) {
    sections.push([
      `osd.${o.id}`,
      [
        { key: "public_addr", value: o.host },
        { key: "cluster_addr", value: o.host },
        { key: "crush_location", value: `root=default host=${o.node}` },
      ],
    ]);
  }
  const lines = [
    "# Written by Haven (haven ceph bootstrap) for a local Ceph; see docs/ceph.md.",
    "# Daemons run as plain processes: <binary> -f --conf <this file> --id <id>.",
  ];
  for (const [name, settings] of sections) {
    lines.push("", `[${name}]`);
    for (const s of settings) {
      if (s.why) lines.push(`# ${s.why}`);
      lines.push(`${s.key} = ${s.value}`);
    }
  }
  return lines.join("\n") + "\n";
}
