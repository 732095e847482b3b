// A cluster's description on the admin's machine: where etcd and the nodes' APIs are, and the token.
// `haven cluster up` writes it into the state directory; every other command reads it.
import { readFile, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { z } from "zod";
import { storageConfigSchema } from "../adapters/storage/config.js";
import { inputError } from "../core/errors.js";
import { rolesSchema } from "../core/roles.js";
import { labNetworkSchema } from "./local-network.js";
import { localHostsSchema } from "./local-hosts.js";
import { tlsFilesSchema } from "../lib/tls.js";

/** One member of an etcd that `haven cluster up` runs itself: `name` is also its etcd --name. */
export const localEtcdMemberSchema = z.object({
  name: z.string(),
  /** The address of its client and peer URLs: a host's (local hosts) or a loopback address (before). */
  host: z.string(),
  clientPort: z.number(),
  peerPort: z.number(),
  dataDir: z.string(),
  /** Client and peer URLs over TLS with certificates from the cluster CA (false in clusters made before). */
  tls: z.boolean().default(false),
});
export type LocalEtcdMember = z.infer<typeof localEtcdMemberSchema>;

// Cluster files written before multi-member etcd described their one member without a name or host.
const singleMemberFileSchema = z
  .object({ dataDir: z.string(), clientPort: z.number(), peerPort: z.number() })
  .transform(({ dataDir, clientPort, peerPort }) => ({
    members: [{ name: "etcd", host: "127.0.0.1", clientPort, peerPort, dataDir, tls: false }],
  }));

export const clusterFileSchema = z.object({
  name: z.string(),
  prefix: z.string(),
  etcd: z.object({
    endpoints: z.array(z.string()).min(1),
    /** For an etcd Haven did not start, served over https: the CA to trust and the client identity. */
    client: tlsFilesSchema.optional(),
    /** Present when Haven started this etcd itself (1 or 3 members). */
    local: z
      .union([z.object({ members: z.array(localEtcdMemberSchema).min(1) }), singleMemberFileSchema])
      .nullable(),
  }),
  /** Each node's roles; absent in clusters made before roles, whose nodes have them all. */
  nodes: z.array(
    z.object({ name: z.string(), api: z.string(), dir: z.string(), roles: rolesSchema.optional() }),
  ),
  tokenFile: z.string(),
  /** The cluster CA's certificate, the only CA trusted for the nodes' HTTPS APIs (absent: plain HTTP). */
  caFile: z.string().optional(),
  storage: storageConfigSchema,
  guestDir: z.string(),
  leaseTtlSeconds: z.number(),
  accel: z.object({ accel: z.enum(["kvm", "tcg"]), reason: z.string() }),
  /**
   * Written by `haven init` or `haven join` on an installed server, whose daemons run under systemd: the
   * local-cluster commands (cluster up/down, fault injection) leave it alone.
   */
  installed: z.boolean().optional(),
  /** The guest network with its DHCP server (absent in clusters made before it existed). */
  network: labNetworkSchema.optional(),
  /**
   * The hosts (network namespaces) the nodes run in, by node name, and the servers' hosts made to join
   * (`haven host add`); absent in local clusters made before, whose nodes share 127.0.10.N.
   */
  hosts: localHostsSchema.optional(),
});
export type ClusterFile = z.infer<typeof clusterFileSchema>;

/** --state-dir, else $HAVEN_STATE_DIR, else ~/.local/state/haven. */
export function resolveStateDir(flag: string | undefined): string {
  return resolve(flag ?? process.env.HAVEN_STATE_DIR ?? join(homedir(), ".local", "state", "haven"));
}

export const clusterFilePath = (stateDir: string) => join(stateDir, "cluster.json");

export async function readClusterFile(stateDir: string): Promise<ClusterFile | undefined> {
  const text = await readFile(clusterFilePath(stateDir), "utf8").catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return undefined;
    throw err;
  });
  if (text === undefined) return undefined;
  const parsed = clusterFileSchema.safeParse(JSON.parse(text));
  if (!parsed.success) throw inputError(`${clusterFilePath(stateDir)} is not a Haven cluster file`);
  return parsed.data;
}

/** Writes the cluster file (mode 0600: it names the token file and etcd's credentials). */
export async function writeClusterFile(stateDir: string, cluster: ClusterFile): Promise<void> {
  await writeFile(clusterFilePath(stateDir), JSON.stringify(cluster, null, 2) + "\n", { mode: 0o600 });
}

export async function requireClusterFile(stateDir: string): Promise<ClusterFile> {
  const file = await readClusterFile(stateDir);
  if (!file) throw inputError(`no cluster in ${stateDir}; run 'haven cluster up' or pass --state-dir`);
  return file;
}
