// A local etcd member for tests and local clusters (`haven cluster up`): a single-member cluster
// by default, or one member of a multi-member cluster when `initialCluster` lists the others. With `tlsDir`,
// client and peer traffic is TLS and both sides must present a certificate from the cluster CA.
import { closeSync, openSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createServer } from "node:net";
import { sleep } from "../lib/async.js";
import { spawnInNamespace } from "../lib/netns.js";
import { tlsDispatcher, type Dispatcher } from "../lib/tls.js";
import { nodeTlsFiles, readTlsIdentity } from "./pki.js";

export interface LocalEtcdOptions {
  dataDir: string;
  name?: string;
  clientPort: number;
  peerPort: number;
  /** Address to listen on (client and peer URLs); default 127.0.0.1. */
  host?: string;
  /** etcd's stdout and stderr are appended here. */
  logFile: string;
  /** Start in its own session and let it outlive this process. */
  detached?: boolean;
  /** This member's credentials from the cluster CA (pki.ts layout); with them its URLs are https. */
  tlsDir?: string;
  /** Path of the etcd binary; default "etcd" from PATH. */
  etcdBinary?: string;
  /** The network namespace to run in (a local cluster's host); default this process's. */
  namespace?: string;
  /** Every member as `name=peerURL,…`; default this member alone. */
  initialCluster?: string;
  /** "existing" when restarting a member of a cluster that already exists; default "new". */
  initialClusterState?: "new" | "existing";
  /** Shared by all members of one cluster; default `haven-<name>`. */
  initialClusterToken?: string;
  /**
   * Wait until this member is healthy, and stop it if it is not within 15 s (default true). A member of a
   * multi-member cluster is healthy only once a majority runs: start them all without waiting, then wait
   * with `waitEtcdHealthy`.
   */
  waitHealthy?: boolean;
}

export interface LocalEtcd {
  pid: number;
  /** Client URL, e.g. http://127.0.0.1:2379. */
  endpoint: string;
  /** SIGTERM, then SIGKILL after 5 s. */
  stop(): Promise<void>;
}

const HEALTHY_WITHIN_MS = 15_000;
const STOP_GRACE_MS = 5_000;

/** What a member is and how it talks: the options its command line is made of, wherever it runs. */
export type EtcdMemberOptions = Omit<
  LocalEtcdOptions,
  "logFile" | "detached" | "etcdBinary" | "waitHealthy" | "namespace"
>;

/** The member's client URL and etcd's arguments for it (a local process and a systemd unit run the same). */
export function etcdMember(opts: EtcdMemberOptions): { name: string; endpoint: string; args: string[] } {
  const host = opts.host ?? "127.0.0.1";
  const name = opts.name ?? "haven";
  const scheme = opts.tlsDir ? "https" : "http";
  const endpoint = `${scheme}://${host}:${opts.clientPort}`;
  const peer = `${scheme}://${host}:${opts.peerPort}`;
  const args = [
    `--name=${name}`,
    `--data-dir=${opts.dataDir}`,
    `--listen-client-urls=${endpoint}`,
    `--advertise-client-urls=${endpoint}`,
    `--listen-peer-urls=${peer}`,
    `--initial-advertise-peer-urls=${peer}`,
    `--initial-cluster=${opts.initialCluster ?? `${name}=${peer}`}`,
    `--initial-cluster-state=${opts.initialClusterState ?? "new"}`,
    `--initial-cluster-token=${opts.initialClusterToken ?? `haven-${name}`}`,
    // Keep an hour of history so watches can resume after short outages, and no more.
    "--auto-compaction-mode=periodic",
    "--auto-compaction-retention=1h",
    "--logger=zap",
    "--log-outputs=stderr",
    ...(opts.tlsDir ? tlsArgs(opts.tlsDir) : []),
  ];
  return { name, endpoint, args };
}

export async function startLocalEtcd(opts: LocalEtcdOptions): Promise<LocalEtcd> {
  const { name, endpoint, args } = etcdMember(opts);
  const logFd = openSync(opts.logFile, "a");
  const child = (() => {
    try {
      return spawnInNamespace(opts.namespace, [opts.etcdBinary ?? "etcd", ...args], {
        stdio: ["ignore", logFd, logFd],
        detached: opts.detached ?? false,
      });
    } finally {
      closeSync(logFd); // the child has its own copy
    }
  })();
  let exited = false;
  let spawnError: Error | undefined;
  const exit = new Promise<void>((resolve) => {
    child.once("exit", () => resolve());
    child.once("error", (err) => {
      spawnError = err;
      resolve();
    });
  }).then(() => {
    exited = true;
  });
  if (opts.detached) child.unref();

  const stop = async (): Promise<void> => {
    if (exited) return;
    child.kill("SIGTERM");
    const timer = new AbortController();
    await Promise.race([exit, sleep(STOP_GRACE_MS, timer.signal)]);
    timer.abort();
    if (!exited) {
      child.kill("SIGKILL");
      await exit;
    }
  };

  if (opts.waitHealthy === false) {
    // Only wait for the spawn itself, so that a missing binary is still an error here.
    await new Promise<void>((resolve) => {
      child.once("spawn", () => resolve());
      child.once("error", () => resolve());
    });
    if (spawnError || child.pid === undefined)
      throw new Error(`could not run etcd: ${spawnError?.message ?? "no pid"}`);
    return { pid: child.pid, endpoint, stop };
  }
  try {
    const { logFile, tlsDir } = opts;
    await waitEtcdHealthy(
      [{ name, endpoint, logFile, tlsDir, stillRunning: () => !exited }],
      HEALTHY_WITHIN_MS,
    );
  } catch (err) {
    await stop();
    throw spawnError ? new Error(`could not run etcd: ${spawnError.message}`) : err;
  }
  if (child.pid === undefined) throw new Error("etcd started without a pid");
  return { pid: child.pid, endpoint, stop };
}

/** A TCP port that was free a moment ago (bind port 0, release it); for tests. */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, () => resolve());
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("could not determine a free port");
  return address.port;
}

/**
 * Whether the member at `endpoint` answers `GET /health` with health true: it runs, has a leader and
 * can serve a read (so a member without quorum is not healthy).
 */
export async function etcdHealthy(
  endpoint: string,
  timeoutMs = 1000,
  dispatcher?: Dispatcher,
): Promise<boolean> {
  try {
    const res = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(timeoutMs), dispatcher });
    const body: unknown = await res.json();
    // etcd 3.4 answers {"health":"true"}; later versions add a "reason".
    return typeof body === "object" && body !== null && "health" in body && String(body.health) === "true";
  } catch {
    return false;
  }
}

/**
 * Waits until every endpoint is healthy. Throws when `stillRunning` says a member's process is gone, or
 * after `timeoutMs`, naming the members that are not healthy.
 */
export async function waitEtcdHealthy(
  members: Array<{
    name: string;
    endpoint: string;
    logFile: string;
    stillRunning: () => boolean;
    /** The member's credentials, presented to it as a client (etcd with TLS asks every client for one). */
    tlsDir?: string;
  }>,
  timeoutMs = HEALTHY_WITHIN_MS,
): Promise<void> {
  const dispatchers = members.map((m) => etcdHealthDispatcher(m.tlsDir));
  try {
    await untilHealthy(members, dispatchers, timeoutMs);
  } finally {
    for (const dispatcher of dispatchers) void dispatcher?.close();
  }
}

async function untilHealthy(
  members: Parameters<typeof waitEtcdHealthy>[0],
  dispatchers: Array<Dispatcher | undefined>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const health = await Promise.all(members.map((m, i) => etcdHealthy(m.endpoint, 1000, dispatchers[i])));
    const sick = members.filter((_, i) => !health[i]);
    if (sick.length === 0) return;
    const exited = sick.find((m) => !m.stillRunning());
    if (exited)
      throw new Error(
        `etcd member ${exited.name} exited; last lines of ${exited.logFile}:\n${await logTail(exited.logFile)}`,
      );
    if (Date.now() > deadline) {
      const first = sick[0]!;
      throw new Error(
        `etcd member(s) ${sick.map((m) => m.name).join(", ")} not healthy within ${timeoutMs / 1000} s; ` +
          `last lines of ${first.logFile}:\n${await logTail(first.logFile)}`,
      );
    }
    await sleep(100);
  }
}

/** A member's own credentials as a client of itself (for health checks), or none without TLS. */
export function etcdHealthDispatcher(tlsDir: string | undefined): Dispatcher | undefined {
  return tlsDir === undefined ? undefined : tlsDispatcher(readTlsIdentity(tlsDir, "client"));
}

/** etcd's flags for TLS on client and peer URLs, trusting only the cluster CA and requiring certificates. */
function tlsArgs(dir: string): string[] {
  const { ca, cert, key } = nodeTlsFiles(dir, "server");
  return [
    `--cert-file=${cert}`,
    `--key-file=${key}`,
    `--trusted-ca-file=${ca}`,
    "--client-cert-auth",
    `--peer-cert-file=${cert}`,
    `--peer-key-file=${key}`,
    `--peer-trusted-ca-file=${ca}`,
    "--peer-client-cert-auth",
  ];
}

async function logTail(path: string, lines = 20): Promise<string> {
  const text = await readFile(path, "utf8").catch(() => "(log unreadable)");
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}
