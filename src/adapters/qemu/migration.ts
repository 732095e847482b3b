// Live migration over QMP, as small functions on a connected QmpClient. The hypervisor keeps the process
// bookkeeping; this file knows which QMP commands to send, in which order, and how to read the replies.
//
// Behaviour of QEMU 7.2 that shapes the callers (seen by hand and in test/integration/qemu-migration.test.ts):
// - Migration parameters persist in a QEMU between migrations, so every migration sets ALL of the ones Haven
//   uses (tls-creds "" for plain TCP, max-bandwidth back to the default), never only the ones it needs.
// - A target whose incoming stream breaks once it has begun (source killed, migrate_cancel, source gave up
//   after the TLS handshake) exits. A target whose TLS handshake failed (wrong CA, plain-TCP source) stays
//   alive, paused in `inmigrate` and still listening: it never runs by itself, and the caller must kill it.
// - The source survives every failure of the target: status `failed` or `cancelled`, guest still running.
// - After `completed` the source is paused (`postmigrate`) and stays so until it is stopped or killed.
import { z } from "zod";
import type { MigrationProgress, OutgoingMigration } from "./port.js";
import type { QmpClient } from "./qmp.js";

/** QOM ids of the TLS credentials objects: server side on the target's command line, client side added live. */
export const migrationTlsIds = { incoming: "haven-migration-tls-in", outgoing: "haven-migration-tls-out" };

/** QEMU 7.2's own default max-bandwidth (128 MiB/s), restored when a migration asks for no limit. */
export const defaultMaxBandwidthBytes = 128 * 1024 * 1024;

// QEMU's own bound for downtime-limit (2000 s).
const maxDowntimeLimitMs = 2_000_000;

const socketAddressSchema = z.object({
  type: z.string(),
  host: z.string().optional(),
  // QEMU's InetSocketAddress carries the port as a string.
  port: z.union([z.string(), z.number()]).optional(),
});

const queryMigrateSchema = z.object({
  // Absent while nothing has happened yet (QEMU's "none").
  status: z.string().optional(),
  "socket-address": z.array(socketAddressSchema).optional(),
  ram: z
    .object({ transferred: z.number(), remaining: z.number(), total: z.number(), mbps: z.number() })
    .optional(),
  "expected-downtime": z.number().optional(),
  downtime: z.number().optional(),
  "total-time": z.number().optional(),
  "error-desc": z.string().optional(),
});

const qomListSchema = z.array(z.object({ name: z.string(), type: z.string() }));

/**
 * Target side, on a QEMU started with `-incoming defer`: listen on `listenHost` (kernel-chosen port) and
 * return the URI the source must connect to. With `tls`, the QEMU must have the migrationTlsIds.incoming
 * object on its command line (endpoint=server, verify-peer=on).
 */
export async function listenForIncoming(
  qmp: QmpClient,
  options: { listenHost: string; tls: boolean },
): Promise<string> {
  const host = uriHost(options.listenHost);
  await qmp.execute("migrate-set-parameters", { "tls-creds": options.tls ? migrationTlsIds.incoming : "" });
  await qmp.execute("migrate-incoming", { uri: `tcp:${host}:0` });
  const reply = queryMigrateSchema.parse(await qmp.execute("query-migrate"));
  const port = reply["socket-address"]?.find((a) => a.type === "inet")?.port;
  if (port === undefined)
    throw new Error(`QEMU did not report the port it listens on for the migration: ${JSON.stringify(reply)}`);
  // The caller's host, not QEMU's echo of it: that is the address peers reach this node on.
  return `tcp:${host}:${port}`;
}

/** Source side: set every migration parameter (they persist), then `migrate`. Returns once QEMU accepted. */
export async function startOutgoingMigration(qmp: QmpClient, migration: OutgoingMigration): Promise<void> {
  await prepareOutgoingMigration(qmp, migration);
  await qmp.execute("migrate", { uri: migration.uri });
}

/** Source side, everything before `migrate`: credentials and parameters (benchmarks time `migrate` alone). */
export async function prepareOutgoingMigration(qmp: QmpClient, migration: OutgoingMigration): Promise<void> {
  checkTcpUri(migration.uri);
  const { downtimeLimitMs, maxBandwidthBytes } = migration;
  if (!Number.isInteger(downtimeLimitMs) || downtimeLimitMs < 0 || downtimeLimitMs > maxDowntimeLimitMs)
    throw new Error(
      `downtime limit must be a whole number of ms in 0..${maxDowntimeLimitMs}: ${downtimeLimitMs}`,
    );
  if (maxBandwidthBytes !== undefined && (!Number.isInteger(maxBandwidthBytes) || maxBandwidthBytes <= 0))
    throw new Error(`max bandwidth must be a positive whole number of bytes/s: ${maxBandwidthBytes}`);
  if (migration.tls) await addClientCredentials(qmp, migration.tls.dir);
  await qmp.execute("migrate-set-parameters", {
    "tls-creds": migration.tls ? migrationTlsIds.outgoing : "",
    "tls-hostname": migration.tls?.hostname ?? "",
    "downtime-limit": downtimeLimitMs,
    "max-bandwidth": maxBandwidthBytes ?? defaultMaxBandwidthBytes,
  });
}

/** `query-migrate`, on either side. */
export async function queryMigration(qmp: QmpClient): Promise<MigrationProgress> {
  const reply = queryMigrateSchema.parse(await qmp.execute("query-migrate"));
  const progress: MigrationProgress = {
    status: reply.status ?? "none",
    transferredBytes: reply.ram?.transferred ?? 0,
    remainingBytes: reply.ram?.remaining ?? 0,
    totalBytes: reply.ram?.total ?? 0,
    mbps: reply.ram?.mbps ?? 0,
  };
  if (reply["expected-downtime"] !== undefined) progress.expectedDowntimeMs = reply["expected-downtime"];
  if (reply.downtime !== undefined) progress.downtimeMs = reply.downtime;
  if (reply["total-time"] !== undefined) progress.totalTimeMs = reply["total-time"];
  if (reply["error-desc"] !== undefined) progress.error = reply["error-desc"];
  return progress;
}

/** Source side: abort the running migration; the guest keeps (or resumes) running here. */
export async function cancelMigration(qmp: QmpClient): Promise<void> {
  await qmp.execute("migrate_cancel");
}

/**
 * Adds the client-side credentials object, replacing an older one so that certificates renewed on disk
 * are read again (QEMU loads the files when the object is created).
 */
async function addClientCredentials(qmp: QmpClient, dir: string): Promise<void> {
  const objects = qomListSchema.parse(await qmp.execute("qom-list", { path: "/objects" }));
  if (objects.some((o) => o.name === migrationTlsIds.outgoing))
    await qmp.execute("object-del", { id: migrationTlsIds.outgoing });
  await qmp.execute("object-add", {
    "qom-type": "tls-creds-x509",
    id: migrationTlsIds.outgoing,
    dir,
    endpoint: "client",
    "verify-peer": true,
  });
}

/**
 * Only `tcp:HOST:PORT`: the URI reaches QMP's `migrate`, which also understands `exec:` (runs a shell
 * command) and `unix:`/`fd:`; none of those may come from the cluster state.
 */
function checkTcpUri(uri: string): void {
  if (!/^tcp:(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(uri))
    throw new Error(`migration URI must be tcp:HOST:PORT, got ${JSON.stringify(uri)}`);
}

/** `host` as written inside a tcp: URI (IPv6 bracketed); throws if it is no plain address or host name. */
export function uriHost(host: string): string {
  if (!/^(\[?[0-9A-Fa-f:.]+\]?|[A-Za-z0-9.-]+)$/.test(host))
    throw new Error(`invalid migration listen address: ${JSON.stringify(host)}`);
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}
