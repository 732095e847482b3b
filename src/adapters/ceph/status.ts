// `haven ceph status`: the cluster's health and its reasons, monitors in quorum, OSDs up/in, pools and usage,
// read from `ceph status`, `ceph osd pool ls detail` and `ceph df` (all `--format json`, parsed leniently:
// Ceph adds and moves fields between releases), and whether cephx is on.
import { readFile } from "node:fs/promises";
import { z } from "zod";
import { HavenError, unavailable } from "../../core/errors.js";
import { CommandError, run } from "../../lib/command.js";
import { cephExec, type CephIdentity } from "./exec.js";

export type CephHealthStatus = "HEALTH_OK" | "HEALTH_WARN" | "HEALTH_ERR";

export interface CephStatus {
  health: CephHealthStatus;
  checks: Array<{ code: string; severity: string; summary: string }>;
  fsid: string;
  mons: { total: number; inQuorum: string[] };
  osds: { total: number; up: number; in: number };
  /** PGs by state (e.g. "active+clean": 32); empty while no manager reports them. */
  pgs: { total: number; byState: Record<string, number> };
  managerAvailable: boolean;
  pools: Array<{
    name: string;
    size: number;
    minSize: number;
    pgs: number;
    application: string[];
    storedBytes: number | null;
  }>;
  usage: { totalBytes: number; usedBytes: number; availBytes: number };
  /** Monitors require cephx of daemons and clients (auth_cluster_required and auth_service_required). */
  cephx: boolean;
}

/** Seconds the ceph CLI waits for a monitor before giving up. */
const CONNECT_TIMEOUT_S = 10;

const count = z.number().int().nonnegative();
const osdCounts = z.looseObject({ num_osds: count, num_up_osds: count, num_in_osds: count });

/** `ceph status --format json` (pacific; before it the osdmap counts were nested one level deeper). */
/** The `checks` of a Ceph health report (`ceph status`, `ceph health`), keyed by check code. */
export const healthChecksSchema = z
  .record(
    z.string(),
    z.looseObject({
      severity: z.string().optional(),
      summary: z.looseObject({ message: z.string() }).optional(),
    }),
  )
  .optional()
  .default({});

const statusSchema = z.looseObject({
  fsid: z.string(),
  health: z.looseObject({
    status: z.enum(["HEALTH_OK", "HEALTH_WARN", "HEALTH_ERR"]),
    checks: healthChecksSchema,
  }),
  quorum_names: z.array(z.string()).optional().default([]),
  monmap: z.looseObject({ num_mons: count.optional(), mons: z.array(z.unknown()).optional() }),
  osdmap: osdCounts
    .partial()
    .extend({ osdmap: osdCounts.optional() })
    .transform((map) => ({
      num_osds: map.num_osds ?? map.osdmap?.num_osds ?? 0,
      num_up_osds: map.num_up_osds ?? map.osdmap?.num_up_osds ?? 0,
      num_in_osds: map.num_in_osds ?? map.osdmap?.num_in_osds ?? 0,
    })),
  pgmap: z
    .looseObject({
      num_pgs: count.optional().default(0),
      pgs_by_state: z
        .array(z.looseObject({ state_name: z.string(), count }))
        .optional()
        .default([]),
      bytes_total: count.optional(),
      bytes_used: count.optional(),
      bytes_avail: count.optional(),
    })
    .optional()
    .default({ num_pgs: 0, pgs_by_state: [] }),
  mgrmap: z.looseObject({ available: z.boolean().optional() }).optional(),
});
export type RawCephStatus = z.infer<typeof statusSchema>;

/** `ceph osd pool ls detail --format json` */
const poolsSchema = z.array(
  z.looseObject({
    pool_name: z.string(),
    pool_id: z.number().optional(),
    size: count,
    min_size: count,
    pg_num: count,
    application_metadata: z.record(z.string(), z.unknown()).optional().default({}),
  }),
);

/** `ceph df --format json` */
const dfSchema = z.looseObject({
  stats: z.looseObject({
    total_bytes: count,
    total_avail_bytes: count,
    total_used_bytes: count.optional(),
    total_used_raw_bytes: count.optional(),
  }),
  pools: z
    .array(z.looseObject({ name: z.string(), stats: z.looseObject({ stored: count.optional() }) }))
    .optional()
    .default([]),
});

/** `ceph config show mon.X --format json`: the running monitor's effective settings. */
const configShowSchema = z.array(z.looseObject({ name: z.string(), value: z.unknown() }));

/** Runs the ceph CLI with a connect timeout and maps "unreachable" and "not allowed in" to clear errors. */
export async function cephJson<T>(identity: CephIdentity, args: string[], schema: z.ZodType<T>): Promise<T> {
  let text: string;
  try {
    text = await cephExec(
      "ceph",
      identity,
      ["--connect-timeout", String(CONNECT_TIMEOUT_S), ...args, "--format", "json"],
      { timeoutMs: (CONNECT_TIMEOUT_S + 20) * 1000 },
    );
  } catch (err) {
    throw await explainCephError(err, identity);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw unavailable(`ceph ${args.join(" ")} did not answer JSON: ${text.trim().slice(0, 200)}`);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw unavailable(
      `ceph ${args.join(" ")} answered unexpected JSON (${issue?.path.join(".")}: ${issue?.message})`,
    );
  }
  return parsed.data;
}

/** `ceph status` alone, parsed: what a wait loop polls. */
export function rawCephStatus(identity: CephIdentity): Promise<RawCephStatus> {
  return cephJson(identity, ["status"], statusSchema);
}

export async function cephStatus(identity: CephIdentity): Promise<CephStatus> {
  // One call first: when Ceph is unreachable or refuses the key, say so once instead of four times.
  const status = await rawCephStatus(identity);
  const [pools, df, cephx] = await Promise.all([
    cephJson(identity, ["osd", "pool", "ls", "detail"], poolsSchema),
    cephJson(identity, ["df"], dfSchema),
    cephxEnabled(identity, status.quorum_names[0]),
  ]);
  const osdmap = status.osdmap;
  const stored = new Map(df.pools.map((pool) => [pool.name, pool.stats.stored ?? null]));
  return {
    health: status.health.status,
    checks: Object.entries(status.health.checks).map(([code, check]) => ({
      code,
      severity: check.severity ?? "HEALTH_WARN",
      summary: check.summary?.message ?? code,
    })),
    fsid: status.fsid,
    mons: {
      total: status.monmap.num_mons ?? status.monmap.mons?.length ?? status.quorum_names.length,
      inQuorum: status.quorum_names,
    },
    osds: { total: osdmap.num_osds, up: osdmap.num_up_osds, in: osdmap.num_in_osds },
    pgs: {
      total: status.pgmap.num_pgs,
      byState: Object.fromEntries(status.pgmap.pgs_by_state.map((s) => [s.state_name, s.count])),
    },
    managerAvailable: status.mgrmap?.available ?? false,
    pools: pools.map((pool) => ({
      name: pool.pool_name,
      size: pool.size,
      minSize: pool.min_size,
      pgs: pool.pg_num,
      application: Object.keys(pool.application_metadata),
      storedBytes: stored.get(pool.pool_name) ?? null,
    })),
    usage: {
      totalBytes: df.stats.total_bytes,
      usedBytes: df.stats.total_used_raw_bytes ?? df.stats.total_used_bytes ?? 0,
      availBytes: df.stats.total_avail_bytes,
    },
    cephx,
  };
}

/**
 * What the monitors require, as they run (`ceph config show` reports the running daemon's values, conf file
 * included; `ceph config get` would only show the monitors' config database). Identities without the
 * manager caps for that fall back to the client's own ceph.conf: a client that offers only cephx and got in
 * was let in by cephx.
 */
async function cephxEnabled(identity: CephIdentity, mon: string | undefined): Promise<boolean> {
  const cephxOnly = (value: unknown) =>
    typeof value === "string" && /cephx/.test(value) && !/none/.test(value);
  if (mon !== undefined) {
    const shown = await cephJson(identity, ["config", "show", `mon.${mon}`], configShowSchema).catch(
      () => undefined,
    );
    if (shown) {
      const value = (name: string) => shown.find((entry) => entry.name === name)?.value ?? "cephx";
      return cephxOnly(value("auth_cluster_required")) && cephxOnly(value("auth_service_required"));
    }
  }
  const lookup = (name: string) =>
    run("ceph-conf", ["--conf", identity.conf, "--name", `client.${identity.id}`, "--lookup", name]).then(
      (out) => out.trim(),
      () => "cephx", // not set in the file: Ceph's default
    );
  return cephxOnly(await lookup("auth_client_required"));
}

/** Turns a failed ceph CLI call into "unreachable" or "authentication failed" when that is what happened. */
async function explainCephError(err: unknown, identity: CephIdentity): Promise<unknown> {
  if (!(err instanceof CommandError)) return err;
  const text = err.stderr;
  const who = `client.${identity.id}`;
  if (err.exitCode === -1) return unavailable(`cannot run the ceph CLI: ${text.trim()}`, err);
  if (/did not load config file|unable to open config file|error reading config file/i.test(text))
    return unavailable(`Ceph is unreachable: cannot read the Ceph config ${identity.conf}`, err);
  // librados logs the reason from a thread that may not get to write before the CLI exits: the errno is
  // what always arrives ("[errno 2] RADOS object not found (error connecting to the cluster)").
  if (
    /unable to find a keyring|no keyring found|failed to load key|\berrno 2\b.*error connecting/i.test(text)
  )
    return unavailable(
      `Ceph authentication failed for ${who}: no usable key for it in ${identity.keyring}`,
      err,
    );
  if (
    /\berrno 13\b|\(13\) Permission denied|\berrno 1\b|\(1\) Operation not permitted|handle_auth_bad_method/i.test(
      text,
    )
  )
    return unavailable(
      `Ceph authentication failed for ${who} with the keyring ${identity.keyring} (wrong or revoked key)`,
      err,
    );
  if (err.exitCode === null || /timed out|\berrno 110\b|\(110\)|error connecting to the cluster/i.test(text))
    return unavailable(
      `Ceph is unreachable: no monitor answered within ${CONNECT_TIMEOUT_S} s (mon_host ${await monHost(identity.conf)} in ${identity.conf})`,
      err,
    );
  if (/EACCES|access denied/i.test(text))
    return new HavenError(
      "UNAVAILABLE",
      `Ceph refused ${who} this command (its caps do not allow it): ${text.trim().split("\n").at(-1)}`,
      { cause: err },
    );
  return err;
}

async function monHost(conf: string): Promise<string> {
  const text = await readFile(conf, "utf8").catch(() => "");
  return /^\s*mon[ _]host\s*=\s*(.+?)\s*$/m.exec(text)?.[1] ?? "(not set)";
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 1 : 0)} ${UNITS[unit]}`;
}

/** Human lines for `haven ceph status`. */
export function formatCephStatus(status: CephStatus): string[] {
  const lines = [`health: ${status.health}`];
  for (const check of status.checks) lines.push(`  ${check.code} (${check.severity}): ${check.summary}`);
  lines.push(`cluster: ${status.fsid}, cephx ${status.cephx ? "on" : "OFF"}`);
  lines.push(
    `mons: ${status.mons.inQuorum.length}/${status.mons.total} in quorum (${status.mons.inQuorum.join(", ") || "none"})`,
  );
  lines.push(
    `osds: ${status.osds.up}/${status.osds.total} up, ${status.osds.in}/${status.osds.total} in` +
      (status.managerAvailable ? "" : "; no manager active"),
  );
  if (status.pgs.total > 0) lines.push(`pgs: ${status.pgs.total} (${describePgStates(status.pgs.byState)})`);
  for (const pool of status.pools) {
    const stored = pool.storedBytes === null ? "" : `, ${formatBytes(pool.storedBytes)} stored`;
    const application = pool.application.length > 0 ? pool.application.join(",") : "none";
    lines.push(
      `pool ${pool.name}: size ${pool.size}, min_size ${pool.minSize}, ${pool.pgs} PGs, application ${application}${stored}`,
    );
  }
  const { usedBytes, availBytes, totalBytes } = status.usage;
  lines.push(
    `usage: ${formatBytes(usedBytes)} used, ${formatBytes(availBytes)} of ${formatBytes(totalBytes)} available`,
  );
  return lines;
}

/** "20 active+clean, 12 peering", most common first. */
export function describePgStates(byState: Record<string, number>): string {
  return Object.entries(byState)
    .sort((a, b) => b[1] - a[1])
    .map(([state, n]) => `${n} ${state}`)
    .join(", ");
}
