// What a node holding the cluster CA's key offers to joining servers: their certificates, and the settings
// every node shares, read from this node's own configuration (Ceph's files as their contents).
import { readFile } from "node:fs/promises";
import { nodeClientKeyring } from "../adapters/ceph/clients.js";
import { adminIdentity, type StorageConfig } from "../adapters/storage/config.js";
import type { JoinAuthority } from "../api/join-service.js";
import type { JoinSettings, JoinStorage } from "../core/join.js";
import { caFiles, certificateAddresses, nodeTlsFiles, signNodeRequest } from "../setup/pki.js";
import { join } from "node:path";
import type { NodeConfig } from "./config.js";

export async function joinAuthority(
  config: NodeConfig,
  caDir: string,
  api: string,
  apiToken: string,
): Promise<JoinAuthority> {
  return {
    caCertificate: await readFile(join(caDir, caFiles.cert), "utf8"),
    api,
    sign: (node, address, csr) => signNodeRequest(caDir, node, certificateAddresses(address), csr),
    settingsFor: async (node): Promise<JoinSettings> => ({
      cluster: config.cluster,
      prefix: config.prefix,
      etcd: config.etcd,
      etcdTls: await etcdIdentity(config),
      leaseTtlSeconds: config.leaseTtlSeconds,
      apiToken,
      storage: await sharedStorage(config.storage, node),
    }),
  };
}

/**
 * Whether the cluster's etcd is Haven's own (`haven init`, `haven cluster up`): it trusts the cluster CA, so
 * this node reaches it with its own certificate. Only then may joining monitors add members to it.
 */
export function etcdTrustsClusterCa(config: NodeConfig): boolean {
  return config.tlsDir !== undefined && config.etcdTls?.cert === nodeTlsFiles(config.tlsDir, "client").cert;
}

/** A node of a cluster whose etcd trusts the cluster CA presents its own certificate; otherwise it gets ours. */
async function etcdIdentity(config: NodeConfig): Promise<JoinSettings["etcdTls"]> {
  const tls = config.etcdTls;
  if (!tls) return null;
  if (etcdTrustsClusterCa(config)) return "node";
  const read = (file: string | undefined) => (file === undefined ? undefined : readFile(file, "utf8"));
  const [ca, cert, key] = await Promise.all([read(tls.ca), read(tls.cert), read(tls.key)]);
  return { ...(ca && { ca }), ...(cert && { cert }), ...(key && { key }) };
}

async function sharedStorage(storage: StorageConfig, node: string): Promise<JoinStorage> {
  if (storage.type === "dir") return storage;
  const admin = adminIdentity(storage);
  return {
    type: "rbd",
    pool: storage.pool,
    adminId: storage.adminId,
    conf: await readFile(storage.conf, "utf8"),
    adminKeyring: await readFile(storage.adminKeyring, "utf8"),
    nodeKeyring: await nodeClientKeyring(admin, node, storage.pool),
  };
}
