// Storage for local clusters: a directory, a Ceph that Haven bootstraps on the cluster's hosts (a monitor on
// every monitor-role node, an OSD on every storage-role node), or an existing Ceph that Haven
// attaches to.
import { access, readFile, rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import { bootstrapLocalCeph, stopLocalCeph, type CephNode } from "./ceph/bootstrap.js";
import { cephStatus } from "../adapters/ceph/status.js";
import { type StorageConfig } from "../adapters/storage/config.js";
import { inputError, unavailable } from "../core/errors.js";
import { rolesOf, type NodeRole } from "../core/roles.js";
import type { ClusterFile } from "./cluster-file.js";
import { namespaceAt, type LocalHosts } from "./local-hosts.js";

export type StorageChoice =
  { type: "dir" } | { type: "rbd" } | { type: "attach"; conf: string; keyring: string; pool: string };

interface NodeAddress extends CephNode {
  roles: readonly NodeRole[];
}

/** Creates (or attaches) the storage of a new cluster; on failure leaves nothing behind. */
export async function prepareStorage(
  choice: StorageChoice,
  stateDir: string,
  nodes: NodeAddress[],
  progress: (line: string) => void,
): Promise<StorageConfig> {
  if (choice.type === "dir") return { type: "dir", path: join(stateDir, "images") };
  if (choice.type === "attach") return attachCeph(choice);
  const dir = join(stateDir, "ceph");
  try {
    return await bootstrap(dir, nodes, progress);
  } catch (err) {
    await stopLocalCeph(dir).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
    throw unavailable(`Ceph bootstrap failed: ${(err as Error).message}`);
  }
}

/** Starts whatever part of Haven's own local Ceph is not running (no-op for other storage). */
export async function ensureStorage(
  storage: StorageConfig,
  nodes: NodeAddress[],
  progress: (line: string) => void,
): Promise<void> {
  if (storage.type === "rbd" && storage.localDir) await bootstrap(storage.localDir, nodes, progress);
}

export async function stopStorage(storage: StorageConfig): Promise<void> {
  if (storage.type === "rbd" && storage.localDir) await stopLocalCeph(storage.localDir);
}

async function bootstrap(
  dir: string,
  nodes: NodeAddress[],
  progress: (line: string) => void,
): Promise<StorageConfig> {
  const ceph = await bootstrapLocalCeph({
    dir,
    mons: withRole(nodes, "monitor"),
    osds: withRole(nodes, "storage"),
    // Every havend checks that its node reaches the storage, whatever its roles.
    clients: nodes.map((node) => node.name),
    progress,
  });
  return {
    type: "rbd",
    pool: ceph.pool,
    conf: ceph.conf,
    adminKeyring: ceph.adminKeyring,
    adminId: "admin",
    nodeKeyrings: ceph.clientKeyrings,
    localDir: dir,
  };
}

/** The nodes of a cluster file as the storage sees them: name, address, host, roles. */
export const nodeAddresses = (
  nodes: ReadonlyArray<Pick<ClusterFile["nodes"][number], "name" | "api" | "roles">>,
  hosts: LocalHosts | undefined,
): NodeAddress[] =>
  nodes.map((node) => {
    const host = new URL(node.api).hostname;
    const namespace = namespaceAt(hosts, host);
    return { name: node.name, host, ...(namespace && { namespace }), roles: rolesOf(node) };
  });

const withRole = (nodes: NodeAddress[], role: NodeRole): CephNode[] =>
  nodes.filter((node) => node.roles.includes(role)).map(({ roles: _, ...node }) => node);

async function attachCeph(choice: { conf: string; keyring: string; pool: string }): Promise<StorageConfig> {
  const conf = resolve(choice.conf);
  const keyring = resolve(choice.keyring);
  for (const [flag, path] of [
    ["--ceph-conf", conf],
    ["--keyring", keyring],
  ] as const) {
    await access(path).catch(() => {
      throw inputError(`${flag}: file ${path} does not exist or is not readable`);
    });
  }
  const id = /^\s*\[client\.([^\]]+)\]/m.exec(await readFile(keyring, "utf8"))?.[1];
  if (!id) throw inputError(`--keyring: ${keyring} has no [client.NAME] section`);
  const status = await cephStatus({ conf, keyring, id }).catch((err: unknown) => {
    throw unavailable(`cannot attach to Ceph: ${(err as Error).message}`);
  });
  if (!status.pools.some((pool) => pool.name === choice.pool)) {
    throw inputError(`pool ${choice.pool} does not exist in the Ceph cluster ${status.fsid}`);
  }
  return {
    type: "rbd",
    pool: choice.pool,
    conf,
    adminKeyring: keyring,
    adminId: id,
    nodeKeyrings: {},
    localDir: null,
  };
}
