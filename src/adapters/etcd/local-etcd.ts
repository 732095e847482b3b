// A single-member etcd on loopback for tests and local clusters (`haven cluster up`).
import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createServer } from "node:net";
import { sleep } from "../../lib/async.js";

export interface LocalEtcdOptions {
  dataDir: string;
  name?: string;
  clientPort: number;
  peerPort: number;
  /** Loopback address to listen on; default 127.0.0.1. */
  host?: string;
  /** etcd's stdout and stderr are appended here. */
  logFile: string;
  /** Start in its own session and let it outlive this process. */
  detached?: boolean;
  /** Path of the etcd binary; default "etcd" from PATH. */
  etcdBinary?: string;
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

export async function startLocalEtcd(opts: LocalEtcdOptions): Promise<LocalEtcd> {
  const host = opts.host ?? "127.0.0.1";
  const name = opts.name ?? "haven";
  const endpoint = `http://${host}:${opts.clientPort}`;
  const peer = `http://${host}:${opts.peerPort}`;
  const args = [
    `--name=${name}`,
    `--data-dir=${opts.dataDir}`,
    `--listen-client-urls=${endpoint}`,
    `--advertise-client-urls=${endpoint}`,
    `--listen-peer-urls=${peer}`,
    `--initial-advertise-peer-urls=${peer}`,
    `--initial-cluster=${name}=${peer}`,
    "--initial-cluster-state=new",
    `--initial-cluster-token=haven-${name}`,
    // Keep an hour of history so watches can resume after short outages, and no more.
    "--auto-compaction-mode=periodic",
    "--auto-compaction-retention=1h",
    "--logger=zap",
    "--log-outputs=stderr",
  ];
  const logFd = openSync(opts.logFile, "a");
  const child = (() => {
    try {
      return spawn(opts.etcdBinary ?? "etcd", args, {
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

  const deadline = Date.now() + HEALTHY_WITHIN_MS;
  while (!(await healthy(endpoint))) {
    if (exited || Date.now() > deadline) {
      const why = spawnError
        ? `could not run etcd: ${spawnError.message}`
        : exited
          ? `etcd exited (code ${child.exitCode ?? child.signalCode ?? "?"})`
          : `etcd was not healthy within ${HEALTHY_WITHIN_MS / 1000} s`;
      await stop();
      throw new Error(`${why}; last lines of ${opts.logFile}:\n${await logTail(opts.logFile)}`);
    }
    await sleep(100);
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

async function healthy(endpoint: string): Promise<boolean> {
  try {
    const res = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1000) });
    const body: unknown = await res.json();
    // etcd 3.4 answers {"health":"true"}; later versions add a "reason".
    return typeof body === "object" && body !== null && "health" in body && String(body.health) === "true";
  } catch {
    return false;
  }
}

async function logTail(path: string, lines = 20): Promise<string> {
  const text = await readFile(path, "utf8").catch(() => "(log unreadable)");
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}
