// Local clusters: N nodes on this machine, each a host of its own (a network namespace, local-hosts.ts) that
// runs its havend, its etcd member (1 or 3 members on monitor nodes) and its Ceph daemons, sharing storage.
// `up` creates or completes one (idempotent: it starts whatever is not running); `down` stops everything.
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { availableParallelism, totalmem } from "node:os";
import { join } from "node:path";
import { startLocalEtcd, waitEtcdHealthy } from "./etcd.js";
import { probeAccelerator, type AcceleratorChoice } from "../adapters/qemu/accel.js";
import { caFiles, certificateAddresses, createClusterCa, issueNodeCredentials, nodeTlsFiles } from "./pki.js";
import type { TlsFiles } from "../lib/tls.js";
import { DEFAULT_SHUTDOWN_MIGRATE_SECONDS, type NodeConfig } from "../havend/config.js";
import { conflict, inputError, unavailable } from "../core/errors.js";
import { formatRoles, layoutProblem, NODE_ROLES, rolesOf, type NodeRole } from "../core/roles.js";
import { isAlive, livePid, processesMatching, terminate } from "../lib/process.js";
import { DEFAULT_GUEST_DIR, spawnHavend } from "./services.js";
import { stopLocalCeph } from "./ceph/bootstrap.js";
import {
  readClusterFile,
  requireClusterFile,
  writeClusterFile,
  type ClusterFile,
  type LocalEtcdMember,
} from "./cluster-file.js";
import { ensureLabNetwork, labLeasesFile, labNetworkFor, removeLabNetwork } from "./local-network.js";
import {
  ensureHosts,
  namespaceAt,
  nextHost,
  planHosts,
  removeHosts,
  requireHosts,
  type LocalHost,
  type LocalHosts,
} from "./local-hosts.js";
import { PORTS } from "./ports.js";
import {
  ensureStorage,
  nodeAddresses,
  prepareStorage,
  stopStorage,
  type StorageChoice,
} from "./local-storage.js";

const MAX_NODES = 16;
const DEFAULT_NODES = 3;
/** A majority of three survives the loss of one member; more is not needed on one machine. */
const ETCD_MEMBER_COUNTS = [1, 3];
const ETCD_HEALTHY_WITHIN_MS = 30_000;

export interface UpOptions {
  stateDir: string;
  /** Nodes of a new cluster (default 3, or one per entry of `roles`); an existing cluster keeps its own. */
  nodes?: number;
  /** Each new node's roles (default: every role on every node); an existing cluster keeps its own. */
  roles?: NodeRole[][];
  etcd?: string[];
  /** With `etcd` over https: the CA to trust and the client certificate and key to present. */
  etcdClient?: TlsFiles;
  /** Members of the local etcd (1 or 3) when the cluster is created; default 1. */
  etcdMembers?: number;
  accel: "auto" | "kvm" | "tcg";
  leaseTtlSeconds: number;
  storage: StorageChoice;
  progress: (line: string) => void;
}

export async function clusterUp(options: UpOptions): Promise<ClusterFile> {
  if (
    options.nodes !== undefined &&
    (!Number.isInteger(options.nodes) || options.nodes < 1 || options.nodes > MAX_NODES)
  ) {
    throw inputError(`--nodes must be a whole number from 1 to ${MAX_NODES}`);
  }
  if (options.etcdMembers !== undefined) {
    if (!ETCD_MEMBER_COUNTS.includes(options.etcdMembers))
      throw inputError(`--etcd-members must be ${ETCD_MEMBER_COUNTS.join(" or ")}`);
    if (options.etcd) throw inputError("--etcd-members is for the local etcd; it does not go with --etcd");
  }
  const layout = nodeLayout(options);
  await mkdir(options.stateDir, { recursive: true, mode: 0o700 });
  const existing = await readClusterFile(options.stateDir);
  if (existing?.installed) throw installedCluster(options.stateDir);
  const cluster = existing ?? (await createClusterFile(options, layout));
  const kept = existing?.nodes.map((node) => formatRoles(rolesOf(node))).join(",");
  const asked = options.nodes ?? options.roles?.length;
  if (existing && asked !== undefined && asked !== existing.nodes.length) {
    options.progress(
      `cluster in ${options.stateDir} already has ${existing.nodes.length} nodes; keeping them`,
    );
  } else if (existing && options.roles && kept !== layout.map(formatRoles).join(",")) {
    options.progress(`cluster in ${options.stateDir} keeps its roles ${kept}`);
  }
  const members = cluster.etcd.local?.members.length;
  if (options.etcdMembers !== undefined && members !== options.etcdMembers) {
    options.progress(
      members === undefined
        ? `cluster in ${options.stateDir} uses an existing etcd; ignoring --etcd-members`
        : `cluster in ${options.stateDir} has ${members} local etcd member(s); keeping them`,
    );
  }
  await createClusterCa(caDir(options.stateDir), cluster.name);
  await ensureNetworks(cluster, options.progress);
  if (cluster.etcd.local) await ensureEtcd(options.stateDir, cluster, options.progress);
  await ensureStorage(cluster.storage, nodeAddresses(cluster.nodes, cluster.hosts), options.progress);
  for (const node of cluster.nodes) await ensureHavend(options.stateDir, cluster, node, options.progress);
  return cluster;
}

/** The roles of each node of a new cluster, checked against what the cluster needs. */
function nodeLayout(options: UpOptions): NodeRole[][] {
  const { nodes, roles } = options;
  if (roles && nodes !== undefined && roles.length !== nodes)
    throw inputError(`--roles lists ${roles.length} nodes but --nodes is ${nodes}: give one entry per node`);
  if (roles && roles.length > MAX_NODES) throw inputError(`--roles lists more than ${MAX_NODES} nodes`);
  const layout = roles ?? Array.from({ length: nodes ?? DEFAULT_NODES }, () => [...NODE_ROLES]);
  const problem = layoutProblem(layout, {
    ceph: options.storage.type === "rbd",
    etcdVoters: options.etcd || (options.etcdMembers ?? 1) === 1 ? 0 : options.etcdMembers!,
  });
  if (problem) throw inputError(`--roles: ${problem}`);
  return layout;
}

/** The guest network, then the hosts (whose guest bridges are wired to it). */
async function ensureNetworks(
  cluster: Pick<ClusterFile, "network" | "hosts">,
  progress: (line: string) => void,
): Promise<void> {
  if (cluster.network) await ensureLabNetwork(cluster.network, progress);
  if (cluster.hosts) await ensureHosts(cluster.hosts, cluster.network, progress);
}

async function createClusterFile(options: UpOptions, layout: NodeRole[][]): Promise<ClusterFile> {
  const { stateDir, progress } = options;
  const accel = await chooseAccel(options.accel, progress);
  const names = layout.map((_, i) => `node${i + 1}`);
  const hosts = await planHosts(stateDir, names);
  const nodes = layout.map((roles, i) => ({
    name: names[i]!,
    api: `https://${hosts.hosts[i]!.address}:${PORTS.api}`,
    dir: join(stateDir, "nodes", names[i]!),
    roles,
  }));
  const monitors = hosts.hosts.filter((_, i) => layout[i]!.includes("monitor"));
  const local = options.etcd
    ? null
    : { members: newEtcdMembers(stateDir, options.etcdMembers ?? 1, monitors, hosts) };
  const network = labNetworkFor(stateDir);
  // Storage first: when it cannot be had, no cluster file is written and nothing is left running.
  const storage = await withNetworks({ network, hosts }, progress, () =>
    prepareStorage(options.storage, stateDir, nodeAddresses(nodes, hosts), progress),
  );
  const tokenFile = join(stateDir, "token");
  await writeFile(tokenFile, randomBytes(32).toString("hex") + "\n", { mode: 0o600 });
  const cluster: ClusterFile = {
    name: "haven",
    prefix: `/haven/${randomBytes(4).toString("hex")}/`,
    etcd: {
      endpoints: options.etcd ?? local!.members.map(etcdEndpoint),
      ...(options.etcdClient && { client: options.etcdClient }),
      local,
    },
    nodes,
    tokenFile,
    caFile: join(caDir(stateDir), caFiles.cert),
    storage,
    guestDir: DEFAULT_GUEST_DIR,
    leaseTtlSeconds: options.leaseTtlSeconds,
    accel,
    network,
    hosts,
  };
  await writeClusterFile(stateDir, cluster);
  progress(
    `created cluster ${cluster.name} in ${stateDir} (${nodes.length} nodes, accelerator ${accel.accel}: ${accel.reason})`,
  );
  return cluster;
}

/**
 * `count` members, each on the host of one of the first `count` monitor nodes (the first node when none is a
 * monitor); a single member is named "etcd" and keeps its data in STATE/etcd/data, as before there were more.
 */
function newEtcdMembers(
  stateDir: string,
  count: number,
  monitors: LocalHosts["hosts"],
  hosts: LocalHosts,
): LocalEtcdMember[] {
  const on = monitors.length > 0 ? monitors : hosts.hosts;
  return on.slice(0, count).map((host, i) => {
    const name = count === 1 ? "etcd" : `etcd${i + 1}`;
    return {
      name,
      host: host.address,
      clientPort: PORTS.etcdClient,
      peerPort: PORTS.etcdPeer,
      dataDir: join(stateDir, "etcd", count === 1 ? "data" : name),
      tls: true,
    };
  });
}

/** Runs `make` with the networks up; when it fails, takes them down again. */
async function withNetworks<T>(
  cluster: Pick<ClusterFile, "network" | "hosts">,
  progress: (line: string) => void,
  make: () => Promise<T>,
): Promise<T> {
  try {
    await ensureNetworks(cluster, progress);
    return await make();
  } catch (err) {
    await removeNetworks(cluster);
    throw err;
  }
}

async function removeNetworks(cluster: Pick<ClusterFile, "network" | "hosts">): Promise<void> {
  if (cluster.hosts) await removeHosts(cluster.hosts);
  if (cluster.network) await removeLabNetwork(cluster.network);
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
  const members = cluster.etcd.local!.members;
  const pids = await Promise.all(members.map((member) => etcdMemberPid(stateDir, member)));
  const missing = members.filter((_, i) => pids[i] === undefined);
  if (missing.length === 0) return;
  progress(
    missing.length === 1 && members.length === 1
      ? `starting etcd on ${etcdEndpoint(missing[0]!)}`
      : `starting etcd member(s) ${missing.map((m) => `${m.name} on ${etcdEndpoint(m)}`).join(", ")}`,
  );
  // All missing members first, then wait: a member alone has no quorum and never becomes healthy.
  const started = await startEtcdMembers(stateDir, cluster, missing);
  await waitForEtcd(stateDir, members, new Map(started.map((s) => [s.name, s.pid]))).catch((err: Error) => {
    throw unavailable(`etcd did not become healthy: ${err.message}`);
  });
}

/**
 * The files of a local etcd member: STATE/etcd/<name>.pid and .log, and its credentials in
 * STATE/etcd/tls/<name>/ when it uses TLS (data lives in member.dataDir).
 */
export function etcdMemberFiles(stateDir: string, member: LocalEtcdMember) {
  return {
    pidFile: join(stateDir, "etcd", `${member.name}.pid`),
    logFile: join(stateDir, "etcd", `${member.name}.log`),
    tlsDir: member.tls ? join(stateDir, "etcd", "tls", member.name) : undefined,
  };
}

const scheme = (member: LocalEtcdMember) => (member.tls ? "https" : "http");
export const etcdEndpoint = (member: LocalEtcdMember) =>
  `${scheme(member)}://${member.host}:${member.clientPort}`;
const peerUrl = (member: LocalEtcdMember) => `${scheme(member)}://${member.host}:${member.peerPort}`;
/** The cluster CA of a local cluster. */
const caDir = (stateDir: string) => join(stateDir, "tls-ca");

/** The pid of a local etcd member if it runs (its command line names its data directory). */
export function etcdMemberPid(stateDir: string, member: LocalEtcdMember): Promise<number | undefined> {
  return livePid(etcdMemberFiles(stateDir, member).pidFile, `--data-dir=${member.dataDir}`);
}

/**
 * Starts these (not running) members of the cluster's local etcd without waiting for them to be healthy,
 * and records their pids. A member with data restarts from it (`existing`); a cluster none of whose
 * members has data is bootstrapped (`new`). A member that lost its data while others kept theirs cannot
 * simply rejoin: that is refused.
 */
export async function startEtcdMembers(
  stateDir: string,
  cluster: ClusterFile,
  members: LocalEtcdMember[],
): Promise<Array<{ name: string; pid: number }>> {
  const all = cluster.etcd.local!.members;
  const hasData = (member: LocalEtcdMember) => existsSync(join(member.dataDir, "member"));
  const fresh = !all.some(hasData);
  for (const member of members) {
    if (!fresh && !hasData(member))
      throw conflict(
        `etcd member ${member.name} has no data in ${member.dataDir} while other members do; ` +
          `it cannot rejoin by itself (remove and re-add it with etcdctl member remove/add)`,
      );
  }
  const initialCluster = all.map((m) => `${m.name}=${peerUrl(m)}`).join(",");
  const started = [];
  for (const member of members) {
    await mkdir(member.dataDir, { recursive: true, mode: 0o700 });
    const { pidFile, logFile, tlsDir } = etcdMemberFiles(stateDir, member);
    // Each member's certificate names its address, so clients and peers can check whom they reach.
    const addresses = certificateAddresses(member.host);
    if (tlsDir) await issueNodeCredentials(caDir(stateDir), member.name, addresses, tlsDir);
    const etcd = await startLocalEtcd({
      namespace: namespaceAt(cluster.hosts, member.host),
      name: member.name,
      host: member.host,
      dataDir: member.dataDir,
      clientPort: member.clientPort,
      peerPort: member.peerPort,
      logFile,
      detached: true,
      tlsDir,
      initialCluster,
      initialClusterState: fresh ? "new" : "existing",
      // Bootstrapping members must agree on it; "haven-" + the cluster's random prefix part.
      initialClusterToken: all.length === 1 ? undefined : `haven-${cluster.prefix.split("/").at(-2)}`,
      waitHealthy: false,
    });
    await writeFile(pidFile, String(etcd.pid));
    started.push({ name: member.name, pid: etcd.pid });
  }
  return started;
}

/** Waits until these members are healthy; fails early when one of them exits. */
export async function waitForEtcd(
  stateDir: string,
  members: LocalEtcdMember[],
  knownPids = new Map<string, number>(),
  timeoutMs = ETCD_HEALTHY_WITHIN_MS,
): Promise<void> {
  const pids = await Promise.all(
    members.map(async (m) => knownPids.get(m.name) ?? (await etcdMemberPid(stateDir, m))),
  );
  await waitEtcdHealthy(
    members.map((member, i) => ({
      name: member.name,
      endpoint: etcdEndpoint(member),
      ...etcdMemberFiles(stateDir, member),
      stillRunning: () => pids[i] !== undefined && isAlive(pids[i]),
    })),
    timeoutMs,
  );
}

const LOCAL_VCPU_OVERCOMMIT = 4;

async function ensureHavend(
  stateDir: string,
  cluster: ClusterFile,
  node: ClusterFile["nodes"][number],
  progress: (line: string) => void,
): Promise<void> {
  const configFile = join(node.dir, "havend.json");
  const pidFile = join(node.dir, "havend.pid");
  if (await livePid(pidFile, configFile)) return;
  await mkdir(node.dir, { recursive: true, mode: 0o700 });
  const api = new URL(node.api);
  // The API and live migrations use TLS with the cluster CA; each node's certificate names its address.
  const tls = await issueNodeCredentials(caDir(stateDir), node.name, [api.hostname], join(node.dir, "tls"));
  const etcdIdentity = etcdTls(cluster, tls.dir);
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
    // The local nodes share one machine: each offers its share of its memory, and its cores overcommitted
    // 4:1 as hypervisors usually allow (the canary guests are mostly idle).
    capacity: {
      vcpus: availableParallelism() * LOCAL_VCPU_OVERCOMMIT,
      memoryMb: Math.floor(totalmem() / 1024 / 1024 / cluster.nodes.length),
    },
    attributes: { local: "true" },
    roles: [...rolesOf(node)],
    shutdownMigrateSeconds: DEFAULT_SHUTDOWN_MIGRATE_SECONDS,
    tlsDir: tls.dir,
    // Every local node can let servers join: they share this machine's CA.
    caDir: caDir(stateDir),
    ...(etcdIdentity && { etcdTls: etcdIdentity }),
    migration: { host: api.hostname },
    localAddress: api.hostname,
    ...(cluster.network && { dhcpLeases: labLeasesFile(cluster.network) }),
  };
  await writeFile(configFile, JSON.stringify(config, null, 2) + "\n", { mode: 0o600 });
  await spawnHavend(configFile, node.dir, namespaceAt(cluster.hosts, api.hostname));
  progress(`started havend ${node.name} on ${node.api}`);
}

/** What a node presents to etcd: its own certificate to the local etcd, the given identity to another one. */
function etcdTls(cluster: ClusterFile, nodeTlsDir: string): TlsFiles | undefined {
  if (!cluster.etcd.local) return cluster.etcd.client;
  if (!cluster.etcd.local.members.some((member) => member.tls)) return undefined;
  return nodeTlsFiles(nodeTlsDir, "client");
}

/**
 * What an administrator's etcd client presents: a local member's own client credentials, or the identity the
 * cluster file names for an etcd Haven did not start (undefined: plain HTTP).
 */
export function adminEtcdTls(stateDir: string, cluster: ClusterFile): TlsFiles | undefined {
  if (!cluster.etcd.local) return cluster.etcd.client;
  const member = cluster.etcd.local.members.find((candidate) => candidate.tls);
  const tlsDir = member && etcdMemberFiles(stateDir, member).tlsDir;
  return tlsDir === undefined ? undefined : nodeTlsFiles(tlsDir, "client");
}

/**
 * A new host in the local cluster, for a server that is to join it as `name` (`haven join` run on the host
 * with `haven host exec`); `cluster down` removes it with the others.
 */
export async function addLocalHost(
  stateDir: string,
  name: string,
  progress: (line: string) => void,
): Promise<LocalHost> {
  const cluster = await requireClusterFile(stateDir);
  if (cluster.installed) throw installedCluster(stateDir);
  const hosts = requireHosts(cluster.hosts);
  const host = nextHost(stateDir, hosts, name);
  await ensureHosts({ ...hosts, hosts: [host] }, cluster.network, progress);
  await writeClusterFile(stateDir, { ...cluster, hosts: { ...hosts, hosts: [...hosts.hosts, host] } });
  return host;
}

/** Stops havends, then guests, then etcd; with purge removes the state directory. */
export async function clusterDown(
  stateDir: string,
  purge: boolean,
  progress: (line: string) => void,
): Promise<void> {
  const cluster = await readClusterFile(stateDir);
  if (cluster?.installed) throw installedCluster(stateDir);
  if (!cluster) {
    await stopLocalCeph(join(stateDir, "ceph")).catch(() => undefined);
    if (purge) await rm(stateDir, { recursive: true, force: true });
    progress(`no cluster in ${stateDir}`);
    return;
  }
  // The cluster's nodes, and servers that joined it with their directory in this state directory.
  const havends = (await processesMatching(`${stateDir}/`)).filter(({ cmdline }) =>
    cmdline.includes("havend.js"),
  );
  await Promise.all(havends.map(({ pid }) => stop(pid)));
  // Guests outlive their agents; anything still running from this state directory goes now.
  const guests = (await processesMatching(stateDir)).filter(({ cmdline }) => cmdline.includes("qemu-system"));
  await Promise.all(guests.map(({ pid }) => stop(pid)));
  if (guests.length > 0) progress(`stopped ${guests.length} guest(s)`);
  await stopStorage(cluster.storage);
  for (const member of cluster.etcd.local?.members ?? []) {
    const pid = await etcdMemberPid(stateDir, member);
    if (pid) await stop(pid);
  }
  await removeNetworks(cluster);
  progress(`cluster in ${stateDir} is down`);
  if (purge) {
    await rm(stateDir, { recursive: true, force: true });
    progress(`removed ${stateDir}`);
  }
}

const installedCluster = (stateDir: string) =>
  inputError(
    `${stateDir} describes a cluster installed with haven init/join, whose daemons run as services: ` +
      `'haven cluster up' and 'down' are for local clusters (stop an installed node with systemctl stop havend)`,
  );

/** SIGTERM, SIGKILL after 5 s; a process frozen by `haven node freeze` is let go on first, so it can exit. */
async function stop(pid: number): Promise<void> {
  try {
    process.kill(pid, "SIGCONT");
  } catch {
    /* already gone */
  }
  await terminate(pid, 5000);
}

/** The bearer token of a cluster, from its mode-0600 file. */
export async function readToken(cluster: ClusterFile): Promise<string> {
  return (await readFile(cluster.tokenFile, "utf8")).trim();
}
