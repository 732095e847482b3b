// Fault injection for local clusters (the demo and the HA tests use it): kill, freeze and thaw a node's
// processes, cut and restore its host's network link, kill and restart etcd members. Only processes that this state
// directory started are touched: pids come from pidfiles and are trusted only while their command line still
// names this state directory.
import { readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { etcdHealthDispatcher, etcdHealthy } from "./etcd.js";
import { readTlsFiles, tlsDispatcher, type TlsIdentity } from "../lib/tls.js";
import { GatewayEtcdClient } from "../adapters/etcd/gateway-client.js";
import { shutdownRequestFile } from "../adapters/host/shutdown.js";
import { DEFAULT_SHUTDOWN_MIGRATE_SECONDS } from "../havend/config.js";
import { argAfter, guestFiles, ourQemuArgv, readPid } from "../adapters/qemu/guest-files.js";
import { inputError, notFound, unavailable } from "../core/errors.js";
import { pollUntil } from "../lib/async.js";
import { CUT_TABLE, cutHost, findHost, healHost, type LocalHost } from "./local-hosts.js";
import { commandLine, isAlive, livePid, processesMatching, processState } from "../lib/process.js";
import type { ClusterFile, LocalEtcdMember } from "./cluster-file.js";
import {
  etcdEndpoint,
  etcdMemberFiles,
  etcdMemberPid,
  startEtcdMembers,
  waitForEtcd,
} from "./local-cluster.js";

export interface NodeProcess {
  pid: number;
  process: "havend" | "qemu";
  /** For a QEMU: the VM it runs. */
  vm?: string;
}

export interface EtcdMemberView {
  name: string;
  endpoint: string;
  /** Whether this state directory runs the member (false for an etcd given with --etcd). */
  local: boolean;
  pid: number | null;
  running: boolean;
  /** GET /health said true: the member runs, has a leader and can serve a read. */
  healthy: boolean;
  /** false for a learner: it replicates etcd's log without voting (a monitor that joined, see docs/install.md). */
  voter: boolean;
}

const HEALTH_TIMEOUT_MS = 2000;
const SETTLE_WITHIN_MS = 5000;

/** Fault commands work only on clusters whose etcd and nodes this state directory started. */
function requireLocal(stateDir: string, cluster: ClusterFile): LocalEtcdMember[] {
  if (!cluster.etcd.local)
    throw inputError(
      `the cluster in ${stateDir} is not local: it uses an etcd that 'haven cluster up' did not start ` +
        `(${cluster.etcd.endpoints.join(", ")}); fault commands only work on local clusters`,
    );
  return cluster.etcd.local.members;
}

function findNode(cluster: ClusterFile, name: string): ClusterFile["nodes"][number] {
  const node = cluster.nodes.find((n) => n.name === name);
  if (!node)
    throw notFound(`node ${name} does not exist (nodes: ${cluster.nodes.map((n) => n.name).join(", ")})`);
  return node;
}

function findMember(members: LocalEtcdMember[], name: string): LocalEtcdMember {
  const member = members.find((m) => m.name === name);
  if (!member)
    throw notFound(`etcd member ${name} does not exist (members: ${members.map((m) => m.name).join(", ")})`);
  return member;
}

function signal(pid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false; // gone meanwhile
  }
}

async function nodeHavend(node: ClusterFile["nodes"][number]): Promise<NodeProcess[]> {
  const pid = await livePid(join(node.dir, "havend.pid"), join(node.dir, "havend.json"));
  return pid ? [{ pid, process: "havend" }] : [];
}

/**
 * The node's QEMUs: those its guests' pidfiles name (checked against their command line), and any other
 * QEMU whose command line lies in the node's directory (one still daemonizing, or whose pidfile is gone).
 */
async function nodeQemus(node: ClusterFile["nodes"][number]): Promise<NodeProcess[]> {
  const guestsDir = join(node.dir, "guests");
  const found = new Map<number, NodeProcess>();
  for (const vm of await readdir(guestsDir).catch(() => [])) {
    const { pidFile } = guestFiles(guestsDir, vm);
    const pid = await readPid(pidFile);
    if (pid && (await ourQemuArgv(pid, vm, pidFile))) found.set(pid, { pid, process: "qemu", vm });
  }
  // The trailing "/" keeps node1 from matching node10.
  for (const { pid, cmdline } of await processesMatching(node.dir + "/")) {
    if (!cmdline.includes("qemu-system") || found.has(pid)) continue;
    const vm = argAfter(commandLine(pid).split(" "), "-name")?.split(",")[0];
    found.set(pid, { pid, process: "qemu", ...(vm ? { vm } : {}) });
  }
  return [...found.values()];
}

/** SIGKILL the node's havend, then its QEMUs; returns what was killed once it is gone. */
export async function killNode(stateDir: string, cluster: ClusterFile, name: string): Promise<NodeProcess[]> {
  requireLocal(stateDir, cluster);
  const node = findNode(cluster, name);
  // The agent first, so it cannot see its guests die and report it: a dead host reports nothing.
  const killed = (await nodeHavend(node)).filter((p) => signal(p.pid, "SIGKILL"));
  await pollUntil(() => killed.every((p) => !isAlive(p.pid)), SETTLE_WITHIN_MS, 20);
  // A QEMU that was daemonizing forks once more; look again until none is left.
  for (let round = 0; round < 5; round++) {
    const qemus = (await nodeQemus(node)).filter((p) => !killed.some((k) => k.pid === p.pid));
    if (qemus.length === 0) break;
    killed.push(...qemus.filter((p) => signal(p.pid, "SIGKILL")));
    await pollUntil(() => qemus.every((p) => !isAlive(p.pid)), SETTLE_WITHIN_MS, 20);
  }
  return killed;
}

/**
 * A deliberate shutdown of a local node's host: its havend is told so (the request file) and stopped with
 * SIGTERM, applies the cluster's shutdown policy to its guests and exits; returns it once it is gone.
 * `haven cluster up` boots the node again.
 */
export async function shutdownNode(
  stateDir: string,
  cluster: ClusterFile,
  name: string,
): Promise<NodeProcess[]> {
  requireLocal(stateDir, cluster);
  const node = findNode(cluster, name);
  const havend = await nodeHavend(node);
  if (havend.length === 0) return [];
  await writeFile(shutdownRequestFile(node.dir), "");
  const { pid } = havend[0]!;
  signal(pid, "SIGTERM");
  const withinMs = (DEFAULT_SHUTDOWN_MIGRATE_SECONDS + 60) * 1000;
  if (!(await pollUntil(() => !isAlive(pid), withinMs, 100)))
    throw unavailable(`havend of ${name} (pid ${pid}) did not stop within ${withinMs / 1000} s`);
  return havend;
}

/** SIGSTOP the node's havend and its QEMUs: the node looks dead to the cluster, and nothing is lost yet. */
export async function freezeNode(
  stateDir: string,
  cluster: ClusterFile,
  name: string,
): Promise<NodeProcess[]> {
  requireLocal(stateDir, cluster);
  const node = findNode(cluster, name);
  const frozen = (await nodeHavend(node)).filter((p) => signal(p.pid, "SIGSTOP"));
  frozen.push(...(await nodeQemus(node)).filter((p) => signal(p.pid, "SIGSTOP")));
  await pollUntil(
    () => frozen.every((p) => !isAlive(p.pid) || processState(p.pid) === "T"),
    SETTLE_WITHIN_MS,
    20,
  );
  return frozen;
}

/**
 * SIGCONT the node's QEMUs, then its havend: the guests resume a moment before their agent does, as on a
 * host that wakes up, so a fenced guest meets its blocklist before the agent can kill it.
 */
export async function thawNode(stateDir: string, cluster: ClusterFile, name: string): Promise<NodeProcess[]> {
  requireLocal(stateDir, cluster);
  const node = findNode(cluster, name);
  const thawed = (await nodeQemus(node)).filter((p) => signal(p.pid, "SIGCONT"));
  thawed.push(...(await nodeHavend(node)).filter((p) => signal(p.pid, "SIGCONT")));
  await pollUntil(() => thawed.every((p) => processState(p.pid) !== "T"), SETTLE_WITHIN_MS, 20);
  return thawed;
}

/** Every etcd member with its pid (local members) and health; external endpoints are listed too. */
export async function etcdMembers(stateDir: string, cluster: ClusterFile): Promise<EtcdMemberView[]> {
  if (!cluster.etcd.local) {
    const tls = cluster.etcd.client && readTlsFiles(cluster.etcd.client);
    const members = await listedMembers(cluster.etcd.endpoints, tls);
    return Promise.all(
      members.map(async ({ name, endpoint, voter }) => {
        const client = tls && tlsDispatcher(tls);
        const healthy = endpoint !== "" && (await etcdHealthy(endpoint, HEALTH_TIMEOUT_MS, client));
        void client?.close();
        return { name, endpoint, local: false, pid: null, running: healthy, healthy, voter };
      }),
    );
  }
  return Promise.all(
    cluster.etcd.local.members.map(async (member) => {
      const pid = (await etcdMemberPid(stateDir, member)) ?? null;
      const endpoint = etcdEndpoint(member);
      const self = etcdHealthDispatcher(etcdMemberFiles(stateDir, member).tlsDir);
      const healthy = pid !== null && (await etcdHealthy(endpoint, HEALTH_TIMEOUT_MS, self));
      void self?.close();
      return { name: member.name, endpoint, local: true, pid, running: pid !== null, healthy, voter: true };
    }),
  );
}

/**
 * The members etcd lists (a cluster installed with init and join grows its etcd as monitors join), or the
 * configured endpoints when no member answers.
 */
async function listedMembers(
  endpoints: string[],
  tls: TlsIdentity | undefined,
): Promise<Array<{ name: string; endpoint: string; voter: boolean }>> {
  const etcd = new GatewayEtcdClient({ endpoints, ...(tls && { tls }) });
  try {
    const members = await etcd.members();
    return members.map((m) => ({
      name: m.name || "(not started)",
      endpoint: m.clientUrls[0] ?? "",
      voter: !m.learner,
    }));
  } catch {
    return endpoints.map((endpoint) => ({ name: new URL(endpoint).host, endpoint, voter: true }));
  } finally {
    etcd.close();
  }
}

export interface EtcdKillResult {
  member: string;
  /** The pid killed, or null when the member was not running. */
  pid: number | null;
  running: number;
  members: number;
  /** Whether the members still running are a majority. */
  quorum: boolean;
}

/** SIGKILL one member of the local etcd. */
export async function killEtcdMember(
  stateDir: string,
  cluster: ClusterFile,
  name: string,
): Promise<EtcdKillResult> {
  const members = requireLocal(stateDir, cluster);
  const member = findMember(members, name);
  const pid = await etcdMemberPid(stateDir, member);
  if (pid && signal(pid, "SIGKILL")) await pollUntil(() => !isAlive(pid), SETTLE_WITHIN_MS, 20);
  const running = (await Promise.all(members.map((m) => etcdMemberPid(stateDir, m)))).filter(Boolean).length;
  return {
    member: name,
    pid: pid ?? null,
    running,
    members: members.length,
    quorum: running * 2 > members.length,
  };
}

export interface EtcdStartResult {
  member: string;
  pid: number;
  /** False when it was already running. */
  started: boolean;
  /** False when too few members run for a quorum: it becomes healthy once a majority runs. */
  healthy: boolean;
  running: number;
  members: number;
}

/** Starts a stopped member of the local etcd again from its data directory. */
export async function startEtcdMember(
  stateDir: string,
  cluster: ClusterFile,
  name: string,
): Promise<EtcdStartResult> {
  const members = requireLocal(stateDir, cluster);
  const member = findMember(members, name);
  const runningPids = await Promise.all(members.map((m) => etcdMemberPid(stateDir, m)));
  const existing = runningPids[members.indexOf(member)];
  const running = runningPids.filter(Boolean).length;
  const result = { member: name, members: members.length };
  if (existing) {
    const healthy = await etcdHealthy(etcdEndpoint(member), HEALTH_TIMEOUT_MS);
    return { ...result, pid: existing, started: false, healthy, running };
  }
  const [started] = await startEtcdMembers(stateDir, cluster, [member]);
  const pid = started!.pid;
  if ((running + 1) * 2 <= members.length) {
    // Alone it has no quorum and cannot be healthy; it will be when enough members are started.
    return { ...result, pid, started: true, healthy: false, running: running + 1 };
  }
  await waitForEtcd(stateDir, [member], new Map([[member.name, pid]])).catch((err: Error) => {
    throw unavailable(`etcd member ${name} (pid ${pid}) did not become healthy: ${err.message}`);
  });
  return { ...result, pid, started: true, healthy: true, running: running + 1 };
}

export interface PartitionView {
  node: string;
  address: string;
  /** Only what the node sends is dropped; it still receives. */
  oneway: boolean;
  /** The node's host (`ip netns exec NAMESPACE nft list table inet TABLE` shows the cut). */
  namespace: string;
  table: string;
}

/**
 * Cuts a local node's network link (its host's eth0): every packet it sends and, unless `oneway`, every
 * packet it receives is dropped. Everything on the host is cut off with it: its havend, its API, incoming
 * migrations, its etcd member and Ceph daemons, and its QEMUs' storage traffic, so its guests stall at once;
 * the node's self-fencing stops them before its lease can expire. Its guests' own network cards are on
 * their bridge, not on eth0, and stay up.
 */
export async function partitionNode(
  stateDir: string,
  cluster: ClusterFile,
  name: string,
  oneway: boolean,
): Promise<PartitionView> {
  const host = nodeHost(stateDir, cluster, name);
  await cutHost(host, oneway);
  return { node: name, address: host.address, oneway, namespace: host.namespace, table: CUT_TABLE };
}

/** Restores a local node's network link; returns whether it was cut. */
export function healNode(stateDir: string, cluster: ClusterFile, name: string): Promise<boolean> {
  return healHost(nodeHost(stateDir, cluster, name));
}

function nodeHost(stateDir: string, cluster: ClusterFile, name: string): LocalHost {
  requireLocal(stateDir, cluster);
  return findHost(cluster.hosts, findNode(cluster, name).name);
}
