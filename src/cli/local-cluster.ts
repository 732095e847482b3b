// Local clusters: N havend processes on this machine sharing a local etcd and a shared image directory.
// `up` creates or completes one (idempotent: it starts whatever is not running); `down` stops everything.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, openSync } from "node:fs";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { availableParallelism, totalmem } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort, startLocalEtcd } from "../adapters/etcd/local-etcd.js";
import { probeAccelerator, type AcceleratorChoice } from "../adapters/qemu/accel.js";
import type { NodeConfig } from "../agent/config.js";
import { inputError } from "../core/errors.js";
import { livePid, processesMatching, terminate } from "../lib/process.js";
import { stopLocalCeph } from "../adapters/ceph/bootstrap.js";
import { clusterFilePath, readClusterFile, type ClusterFile } from "./cluster-file.js";
import { ensureStorage, prepareStorage, stopStorage, type StorageChoice } from "./local-storage.js";

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
export const DEFAULT_GUEST_DIR = join(REPO_ROOT, "guest", "build");
const HAVEND = join(REPO_ROOT, "bin", "havend.js");
const MAX_NODES = 16;

export interface UpOptions {
  stateDir: string;
  nodes: number;
  etcd?: string[];
  accel: "auto" | "kvm" | "tcg";
  leaseTtlSeconds: number;
  storage: StorageChoice;
  progress: (line: string) => void;
}

export async function clusterUp(options: UpOptions): Promise<ClusterFile> {
  if (!Number.isInteger(options.nodes) || options.nodes < 1 || options.nodes > MAX_NODES) {
    throw inputError(`--nodes must be a whole number from 1 to ${MAX_NODES}`);
  }
  await mkdir(options.stateDir, { recursive: true, mode: 0o700 });
  const cluster = (await readClusterFile(options.stateDir)) ?? (await createClusterFile(options));
  if (cluster.nodes.length !== options.nodes) {
    options.progress(
      `cluster in ${options.stateDir} already has ${cluster.nodes.length} nodes; keeping them`,
    );
  }
  if (cluster.etcd.local) await ensureEtcd(options.stateDir, cluster, options.progress);
  await ensureStorage(cluster.storage, nodeAddresses(cluster.nodes), options.progress);
  for (const node of cluster.nodes) await ensureHavend(cluster, node, options.progress);
  return cluster;
}

async function createClusterFile(options: UpOptions): Promise<ClusterFile> {
  const { stateDir, progress } = options;
  const accel = await chooseAccel(options.accel, progress);
  const local = options.etcd
    ? null
    : { dataDir: join(stateDir, "etcd", "data"), clientPort: await freePort(), peerPort: await freePort() };
  const nodes = [];
  for (let i = 1; i <= options.nodes; i++) {
    // Each node gets its own loopback address, as separate hosts would have.
    const host = `127.0.10.${i}`;
    nodes.push({
      name: `node${i}`,
      api: `http://${host}:${await freePort(host)}`,
      dir: join(stateDir, "nodes", `node${i}`),
    });
  }
  // Storage first: when it cannot be had, no cluster file is written and nothing else is started.
  const storage = await prepareStorage(options.storage, stateDir, nodeAddresses(nodes), progress);
  const tokenFile = join(stateDir, "token");
  await writeFile(tokenFile, randomBytes(32).toString("hex") + "\n", { mode: 0o600 });
  const cluster: ClusterFile = {
    name: "haven",
    prefix: `/haven/${randomBytes(4).toString("hex")}/`,
    etcd: { endpoints: options.etcd ?? [`http://127.0.0.1:${local!.clientPort}`], local },
    nodes,
    tokenFile,
    storage,
    guestDir: DEFAULT_GUEST_DIR,
    leaseTtlSeconds: options.leaseTtlSeconds,
    accel,
  };
  await writeFile(clusterFilePath(stateDir), JSON.stringify(cluster, null, 2) + "\n", { mode: 0o600 });
  progress(
    `created cluster ${cluster.name} in ${stateDir} (${nodes.length} nodes, accelerator ${accel.accel}: ${accel.reason})`,
  );
  return cluster;
}

async function chooseAccel(
  setting: UpOptions["accel"],
  progress: (line: string) => void,
): Promise<AcceleratorChoice> {
  if (setting !== "auto") return { accel: setting, reason: `chosen with --accel ${setting}` };
  progress("checking whether KVM guests really run here (a short test boot, up to 10 s)…");
  return probeAccelerator({
    kernel: join(DEFAULT_GUEST_DIR, "vmlinuz"),
    initrd: join(DEFAULT_GUEST_DIR, "initramfs.img"),
  });
}

async function ensureEtcd(
  stateDir: string,
  cluster: ClusterFile,
  progress: (line: string) => void,
): Promise<void> {
  const local = cluster.etcd.local!;
  const pidFile = join(stateDir, "etcd", "etcd.pid");
  if (await livePid(pidFile, local.dataDir)) return;
  await mkdir(local.dataDir, { recursive: true, mode: 0o700 });
  progress(`starting etcd on ${cluster.etcd.endpoints[0]}`);
  const etcd = await startLocalEtcd({
    dataDir: local.dataDir,
    clientPort: local.clientPort,
    peerPort: local.peerPort,
    logFile: join(stateDir, "etcd", "etcd.log"),
    detached: true,
  });
  await writeFile(pidFile, String(etcd.pid));
}

async function ensureHavend(
  cluster: ClusterFile,
  node: ClusterFile["nodes"][number],
  progress: (line: string) => void,
): Promise<void> {
  const configFile = join(node.dir, "havend.json");
  const pidFile = join(node.dir, "havend.pid");
  if (await livePid(pidFile, configFile)) return;
  await mkdir(node.dir, { recursive: true, mode: 0o700 });
  const api = new URL(node.api);
  const config: NodeConfig = {
    cluster: cluster.name,
    prefix: cluster.prefix,
    node: node.name,
    etcd: cluster.etcd.endpoints,
    listen: { host: api.hostname, port: Number(api.port) },
    tokenFile: cluster.tokenFile,
    stateDir: node.dir,
    storage: cluster.storage,
    leaseTtlSeconds: cluster.leaseTtlSeconds,
    accel: cluster.accel.accel,
    guestDir: cluster.guestDir,
    // The local nodes share one machine: each offers its share of it.
    capacity: {
      vcpus: availableParallelism(),
      memoryMb: Math.floor(totalmem() / 1024 / 1024 / cluster.nodes.length),
    },
    attributes: { local: "true" },
  };
  await writeFile(configFile, JSON.stringify(config, null, 2) + "\n", { mode: 0o600 });
  const log = openSync(join(node.dir, "havend.log"), "a");
  try {
    const child = spawn(process.execPath, [HAVEND, "--config", configFile], {
      detached: true,
      stdio: ["ignore", log, log],
    });
    child.unref();
    await writeFile(pidFile, String(child.pid));
  } finally {
    closeSync(log);
  }
  progress(`started havend ${node.name} on ${node.api}`);
}

/** Stops havends, then guests, then etcd; with purge removes the state directory. */
export async function clusterDown(
  stateDir: string,
  purge: boolean,
  progress: (line: string) => void,
): Promise<void> {
  const cluster = await readClusterFile(stateDir);
  if (!cluster) {
    await stopLocalCeph(join(stateDir, "ceph")).catch(() => undefined);
    if (purge) await rm(stateDir, { recursive: true, force: true });
    progress(`no cluster in ${stateDir}`);
    return;
  }
  for (const node of cluster.nodes) {
    const pid = await livePid(join(node.dir, "havend.pid"), join(node.dir, "havend.json"));
    if (pid) await terminate(pid, 5000);
  }
  // Guests outlive their agents; anything still running from this state directory goes now.
  const guests = (await processesMatching(stateDir)).filter(({ cmdline }) => cmdline.includes("qemu-system"));
  await Promise.all(guests.map(({ pid }) => terminate(pid, 5000)));
  if (guests.length > 0) progress(`stopped ${guests.length} guest(s)`);
  await stopStorage(cluster.storage);
  if (cluster.etcd.local) {
    const pid = await livePid(join(stateDir, "etcd", "etcd.pid"), cluster.etcd.local.dataDir);
    if (pid) await terminate(pid, 5000);
  }
  progress(`cluster in ${stateDir} is down`);
  if (purge) {
    await rm(stateDir, { recursive: true, force: true });
    progress(`removed ${stateDir}`);
  }
}

const nodeAddresses = (nodes: ClusterFile["nodes"]) =>
  nodes.map((node) => ({ name: node.name, host: new URL(node.api).hostname }));

/** The bearer token of a cluster, from its mode-0600 file. */
export async function readToken(cluster: ClusterFile): Promise<string> {
  return (await readFile(cluster.tokenFile, "utf8")).trim();
}
