// Installing Haven on servers (docs/install.md). `haven init` makes the first server of a new cluster: the
// cluster CA, an etcd member over TLS, the storage, havend. `haven join TOKEN` makes a server a node of the
// cluster that made the token: it trusts the cluster CA only once its fingerprint matches the token's, keeps
// its own key (the cluster signs a request for it), writes what every node shares (etcd, storage, the API
// token) and starts havend. Both write the CLI's cluster file, so that `haven` works on every server.
import { randomBytes, X509Certificate } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { isIP } from "node:net";
import { join, resolve } from "node:path";
import { ApiClient } from "../cli/api-client.js";
import { conflict, inputError, unavailable } from "../core/errors.js";
import {
  decodeJoinToken,
  fingerprintOf,
  joinResponseSchema,
  type JoinResponse,
  type JoinStorage,
} from "../core/join.js";
import type { NodeRole } from "../core/roles.js";
import { nodeCephId, type StorageConfig } from "../adapters/storage/config.js";
import { pollUntil } from "../lib/async.js";
import { readTlsFiles, uncheckedDispatcher, type TlsFiles } from "../lib/tls.js";
import { GatewayEtcdClient } from "../adapters/etcd/gateway-client.js";
import { DEFAULT_SHUTDOWN_MIGRATE_SECONDS, type NodeConfig } from "../havend/config.js";
import { DEFAULT_GUEST_DIR, runEtcdMember, runHavend, type RunMode } from "./services.js";
import { clusterFilePath, readClusterFile, type ClusterFile } from "./cluster-file.js";
import { etcdMember } from "./etcd.js";
import { prepareStorage } from "./local-storage.js";
import type { NodeView } from "../api/service.js";
import { nodeNameSchema } from "../core/names.js";
import {
  caFiles,
  certificateAddresses,
  createClusterCa,
  issueNodeCredentials,
  newNodeKey,
  nodeFiles,
  nodeTlsFiles,
  writeNodeCredentials,
} from "./pki.js";

export const DEFAULT_NODE_DIR = "/var/lib/haven";
export const DEFAULT_CEPH_DIR = "/etc/ceph";
const FETCH_TIMEOUT_MS = 15_000;
const ONLINE_WITHIN_MS = 120_000;
/** A learner catches up with the leader in moments on a small etcd; a minute covers a slow disk. */
const PROMOTED_WITHIN_MS = 60_000;

export interface JoinOptions {
  token: string;
  /** The address the other nodes reach this server at (API, live migrations). */
  address: string;
  port: number;
  roles: NodeRole[];
  /** With the monitor role: the ports of the node's etcd member. */
  etcdPorts: { client: number; peer: number };
  /** The node's directory: its configuration, credentials and guests' state. */
  dir: string;
  /** Where the Ceph configuration and keyrings go (as a Ceph installation has them, in /etc/ceph). */
  cephDir: string;
  accel: "auto" | "kvm" | "tcg";
  run: RunMode;
  /** The CLI's state directory: its cluster file is written there unless one exists. */
  stateDir: string;
  progress: (line: string) => void;
}

/** A node of an installed cluster once it runs. */
export interface ServerNode {
  node: string;
  api: string;
  configFile: string;
  /** Where havend's log is: a file, or the journal of its unit. */
  log: string;
}

export async function joinCluster(options: JoinOptions): Promise<ServerNode> {
  const token = decodeJoinToken(options.token);
  if (isIP(options.address) === 0)
    throw inputError(`--address must be an IP address, got ${JSON.stringify(options.address)}`);
  const dir = resolve(options.dir);
  refuseExistingNode(dir);
  options.progress(`checking the cluster CA at ${token.api} against the token's fingerprint`);
  const ca = await fetchCa(token.api, token.ca);
  const { keyPem, csrPem } = await newNodeKey(token.node);
  options.progress(`asking ${token.api} to let ${token.node} join`);
  const cluster = new ApiClient([token.api], "", ca);
  const reply = joinResponseSchema.safeParse(
    await cluster.post<unknown>("/v1/join", {
      id: token.id,
      secret: token.secret,
      address: options.address,
      roles: options.roles,
      csr: csrPem,
      ...(options.roles.includes("monitor") && {
        etcd: { clientPort: options.etcdPorts.client, peerPort: options.etcdPorts.peer },
      }),
    }),
  );
  if (!reply.success) throw unavailable(`${token.api} answered the join with something unexpected`);
  const joined = reply.data;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  // Ceph's files first: a ceph.conf of another cluster stops the join before the node's own files are written.
  const storage = await writeStorage(joined.storage, joined.node, options.cephDir);
  const tlsDir = join(dir, "tls");
  await writeNodeCredentials(tlsDir, joined.caCertificate, joined.certificate, keyPem);
  const tokenFile = join(dir, "token");
  await writeFile(tokenFile, joined.apiToken + "\n", { mode: 0o600 });
  const etcdTls = await writeEtcdTls(joined.etcdTls, tlsDir, dir);
  const ownEtcd = await runJoinedEtcdMember(joined, options, dir, tlsDir, etcdTls);
  const config: NodeConfig = {
    cluster: joined.cluster,
    prefix: joined.prefix,
    node: joined.node,
    etcd: ownEtcd ? [ownEtcd, ...joined.etcd] : joined.etcd,
    listen: { host: options.address, port: options.port },
    tokenFile,
    stateDir: dir,
    storage,
    leaseTtlSeconds: joined.leaseTtlSeconds,
    accel: options.accel,
    shutdownMigrateSeconds: DEFAULT_SHUTDOWN_MIGRATE_SECONDS,
    guestDir: DEFAULT_GUEST_DIR,
    attributes: {},
    roles: options.roles,
    tlsDir,
    ...(etcdTls && { etcdTls }),
    migration: { host: options.address },
  };
  const started = await startNode(config, options.run, options.progress);
  const nodes = await waitOnline(new ApiClient([token.api], joined.apiToken, ca), started);
  await writeClientFile(options.stateDir, config, nodes, join(tlsDir, nodeFiles.caCert));
  return started;
}

/**
 * A joining monitor's etcd member: the cluster added it as a learner, it starts from the cluster's member
 * list, and it is promoted to a voter (once it has caught up) when the cluster said so. Returns its client URL
 * when it votes: a learner serves no client.
 */
async function runJoinedEtcdMember(
  joined: JoinResponse,
  options: JoinOptions,
  dir: string,
  tlsDir: string,
  etcdTls: TlsFiles | undefined,
): Promise<string | undefined> {
  const planned = joined.etcdMember;
  if (!planned) return undefined;
  const member = {
    name: planned.name,
    host: options.address,
    clientPort: options.etcdPorts.client,
    peerPort: options.etcdPorts.peer,
    dataDir: join(dir, "etcd"),
    tlsDir,
    initialCluster: planned.initialCluster,
    initialClusterState: "existing" as const,
  };
  const { endpoint } = etcdMember(member);
  options.progress(`starting etcd member ${planned.name} on ${endpoint}, a learner until it has caught up`);
  await runEtcdMember(member, dir, options.run);
  if (!planned.promote) return undefined;
  const etcd = new GatewayEtcdClient({
    endpoints: joined.etcd,
    ...(etcdTls && { tls: readTlsFiles(etcdTls) }),
  });
  let refusal = "";
  const promoted = () =>
    etcd.promote(planned.id).then(
      () => true,
      (err: Error) => ((refusal = err.message), false),
    );
  try {
    if (!(await pollUntil(promoted, PROMOTED_WITHIN_MS, 1000)))
      throw unavailable(
        `etcd did not make ${planned.name} a voting member within ${PROMOTED_WITHIN_MS / 1000} s ` +
          `(${refusal}); it runs as a learner: see ${join(dir, "etcd.log")}`,
      );
  } finally {
    etcd.close();
  }
  options.progress(`etcd member ${planned.name} votes`);
  return endpoint;
}

/** The cluster CA from the token's API, trusted only if its SHA-256 fingerprint is the token's. */
async function fetchCa(api: string, fingerprint: string): Promise<string> {
  let body: unknown;
  try {
    const response = await fetch(`${api}/v1/ca`, {
      dispatcher: uncheckedDispatcher(),
      signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
    });
    body = await response.json();
  } catch (err) {
    throw unavailable(`cannot reach ${api}: ${(err as Error).message}`);
  }
  const pem = (body as { certificate?: unknown }).certificate;
  if (typeof pem !== "string") throw unavailable(`${api} did not answer with the cluster CA certificate`);
  const got = fingerprintOf(new X509Certificate(pem).fingerprint256);
  if (got !== fingerprint)
    throw conflict(
      `${api} presented a CA whose fingerprint (${got}) is not the token's (${fingerprint}): not joining ` +
        `(a wrong address in the token, or someone in between)`,
    );
  return pem;
}

/** Ceph's files as a Ceph installation keeps them; an existing ceph.conf must be this cluster's. */
async function writeStorage(storage: JoinStorage, node: string, cephDir: string): Promise<StorageConfig> {
  if (storage.type === "dir") return storage;
  const dir = resolve(cephDir);
  const conf = join(dir, "ceph.conf");
  const existing = await readFile(conf, "utf8").catch(() => undefined);
  if (existing !== undefined && existing !== storage.conf)
    throw conflict(`${conf} exists and describes another Ceph cluster: give the join another --ceph-dir`);
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const adminKeyring = join(dir, `ceph.client.${storage.adminId}.keyring`);
  const nodeKeyring = join(dir, `ceph.client.${nodeCephId(node)}.keyring`);
  await writeFile(conf, storage.conf, { mode: 0o644 });
  await writeFile(adminKeyring, storage.adminKeyring, { mode: 0o600 });
  await writeFile(nodeKeyring, storage.nodeKeyring, { mode: 0o600 });
  return {
    type: "rbd",
    pool: storage.pool,
    conf,
    adminKeyring,
    adminId: storage.adminId,
    nodeKeyrings: { [node]: nodeKeyring },
    localDir: null,
  };
}

/** What the node presents to etcd: its own certificate, nothing (plain HTTP), or the identity it was given. */
async function writeEtcdTls(
  identity: JoinResponse["etcdTls"],
  tlsDir: string,
  dir: string,
): Promise<TlsFiles | undefined> {
  if (identity === null) return undefined;
  if (identity === "node") return nodeTlsFiles(tlsDir, "client");
  const etcdDir = join(dir, "etcd-client");
  await mkdir(etcdDir, { recursive: true, mode: 0o700 });
  const files: Partial<Record<keyof TlsFiles, string>> = {};
  for (const part of ["ca", "cert", "key"] as const) {
    const content = identity[part];
    if (content === undefined) continue;
    files[part] = join(etcdDir, `${part}.pem`);
    await writeFile(files[part], content, { mode: 0o600 });
  }
  if (files.ca === undefined) throw unavailable("the cluster handed over an etcd identity without its CA");
  return { ...files, ca: files.ca };
}

/** Until the node is in the cluster's node list; the list then. */
async function waitOnline(cluster: ApiClient, node: ServerNode): Promise<NodeView[]> {
  let nodes: NodeView[] = [];
  const online = async () => {
    nodes = await cluster.get<NodeView[]>("/v1/nodes").catch(() => []);
    return nodes.some((n) => n.name === node.node);
  };
  if (!(await pollUntil(online, ONLINE_WITHIN_MS, 500)))
    throw unavailable(
      `${node.node} did not come online within ${ONLINE_WITHIN_MS / 1000} s: see ${node.log}`,
    );
  return nodes;
}

function refuseExistingNode(dir: string): void {
  const configFile = join(dir, "havend.json");
  if (existsSync(configFile))
    throw conflict(`${dir} holds a node already (${configFile}): a server is set up once; use another --dir`);
}

/** Writes the node's configuration and runs its havend. */
async function startNode(
  config: NodeConfig,
  mode: RunMode,
  progress: (line: string) => void,
): Promise<ServerNode> {
  const configFile = join(config.stateDir, "havend.json");
  await writeFile(configFile, JSON.stringify(config, null, 2) + "\n", { mode: 0o600 });
  const log = await runHavend(configFile, config.stateDir, config.shutdownMigrateSeconds, mode);
  const { host, port } = config.listen;
  const api = `https://${host.includes(":") ? `[${host}]` : host}:${port}`;
  progress(`started havend ${config.node} on ${api}; waiting for it to come online`);
  return { node: config.node, api, configFile, log };
}

/**
 * The CLI's cluster file, so that `haven node list`, `haven node add` and the rest work on this server. A
 * state directory that describes a cluster already keeps its file.
 */
async function writeClientFile(
  stateDir: string,
  config: NodeConfig,
  nodes: NodeView[],
  caFile: string,
): Promise<void> {
  if (await readClusterFile(stateDir)) return;
  // This node first: the CLI asks it first, and the others when it does not answer.
  const self = nodes.find((n) => n.name === config.node)!;
  const others = nodes.filter((n) => n !== self);
  const file: ClusterFile = {
    name: config.cluster,
    prefix: config.prefix,
    etcd: { endpoints: config.etcd, ...(config.etcdTls && { client: config.etcdTls }), local: null },
    nodes: [
      { name: config.node, api: self.api, dir: config.stateDir, roles: config.roles },
      ...others.map((n) => ({ name: n.name, api: n.api, dir: "", roles: [...n.roles] })),
    ],
    tokenFile: config.tokenFile,
    caFile,
    storage: config.storage,
    guestDir: config.guestDir,
    leaseTtlSeconds: config.leaseTtlSeconds,
    accel: { accel: self.accel === "kvm" ? "kvm" : "tcg", reason: self.accelReason },
    installed: true,
  };
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  await writeFile(clusterFilePath(stateDir), JSON.stringify(file, null, 2) + "\n", { mode: 0o600 });
}

export interface InitOptions {
  name: string;
  address: string;
  port: number;
  roles: NodeRole[];
  dir: string;
  /** dir: disk images in DIR/images (one server, or a shared filesystem); attach: an existing Ceph's pool. */
  storage: { type: "dir" } | { type: "attach"; conf: string; keyring: string; pool: string };
  etcdPorts: { client: number; peer: number };
  leaseTtlSeconds: number;
  accel: "auto" | "kvm" | "tcg";
  run: RunMode;
  stateDir: string;
  progress: (line: string) => void;
}

/**
 * `haven init`: the first server of a new cluster. It holds the cluster CA (and so lets servers join), runs
 * the cluster's etcd member over TLS and havend, and attaches to the storage.
 */
export async function initCluster(options: InitOptions): Promise<ServerNode> {
  if (isIP(options.address) === 0)
    throw inputError(`--address must be an IP address, got ${JSON.stringify(options.address)}`);
  if (!nodeNameSchema.safeParse(options.name).success)
    throw inputError(`--name: invalid node name ${JSON.stringify(options.name)}`);
  if (!options.roles.includes("monitor") || options.roles.includes("storage"))
    throw inputError(
      "--roles: the first server runs the cluster's etcd, so it has the monitor role; OSDs (storage) are not set up by haven init",
    );
  const dir = resolve(options.dir);
  refuseExistingNode(dir);
  if (await readClusterFile(options.stateDir))
    throw conflict(`${options.stateDir} describes a cluster already: give haven init another --state-dir`);
  // The storage first: a Ceph that cannot be reached stops the init before anything is written.
  const storage = await prepareStorage(options.storage, dir, [], options.progress);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const caDir = join(dir, "ca");
  await createClusterCa(caDir, "haven");
  const tls = await issueNodeCredentials(
    caDir,
    options.name,
    certificateAddresses(options.address),
    join(dir, "tls"),
  );
  const member = {
    name: `etcd-${options.name}`,
    host: options.address,
    clientPort: options.etcdPorts.client,
    peerPort: options.etcdPorts.peer,
    dataDir: join(dir, "etcd"),
    tlsDir: tls.dir,
  };
  options.progress(`starting etcd member ${member.name} on ${etcdMember(member).endpoint}`);
  await runEtcdMember(member, dir, options.run);
  const tokenFile = join(dir, "token");
  const apiToken = randomBytes(32).toString("hex");
  await writeFile(tokenFile, apiToken + "\n", { mode: 0o600 });
  const config: NodeConfig = {
    cluster: "haven",
    prefix: `/haven/${randomBytes(4).toString("hex")}/`,
    node: options.name,
    etcd: [etcdMember(member).endpoint],
    listen: { host: options.address, port: options.port },
    tokenFile,
    stateDir: dir,
    storage,
    leaseTtlSeconds: options.leaseTtlSeconds,
    accel: options.accel,
    shutdownMigrateSeconds: DEFAULT_SHUTDOWN_MIGRATE_SECONDS,
    guestDir: DEFAULT_GUEST_DIR,
    attributes: {},
    roles: options.roles,
    tlsDir: tls.dir,
    caDir,
    etcdTls: nodeTlsFiles(tls.dir, "client"),
    migration: { host: options.address },
  };
  const started = await startNode(config, options.run, options.progress);
  const ca = await readFile(join(caDir, caFiles.cert), "utf8");
  const nodes = await waitOnline(new ApiClient([started.api], apiToken, ca), started);
  await writeClientFile(options.stateDir, config, nodes, join(caDir, caFiles.cert));
  return started;
}
