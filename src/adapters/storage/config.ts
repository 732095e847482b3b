// Which storage a cluster uses, as written in the cluster file and every node's havend config, and the one
// place that turns it into a backend.
import { z } from "zod";
import type { CephIdentity } from "../ceph/exec.js";
import { DirStorage } from "./dir.js";
import type { StorageBackend } from "./port.js";
import { cephStatus } from "../ceph/status.js";
import { deleteNodeClient } from "../ceph/clients.js";
import { openRbdStorage, RbdStorage } from "./rbd.js";

export const dirStorageConfigSchema = z.object({ type: z.literal("dir"), path: z.string().min(1) });

export const rbdStorageConfigSchema = z.object({
  type: z.literal("rbd"),
  pool: z.string().min(1),
  conf: z.string().min(1),
  /** The administrative identity: Ceph status, and every client when no per-node keyring exists. */
  adminKeyring: z.string().min(1),
  adminId: z.string().min(1),
  /** Per-node cephx identities (client.haven-<node>), so that each node's QEMUs can be told apart and fenced. */
  nodeKeyrings: z.record(z.string(), z.string()),
  /** Where Haven's own local Ceph lives, when Haven bootstrapped it; null when attached to an existing one. */
  localDir: z.string().nullable(),
});

export const storageConfigSchema = z.discriminatedUnion("type", [
  dirStorageConfigSchema,
  rbdStorageConfigSchema,
]);
export type StorageConfig = z.infer<typeof storageConfigSchema>;
export type RbdStorageConfig = z.infer<typeof rbdStorageConfigSchema>;

export const nodeCephId = (node: string) => `haven-${node}`;

export function adminIdentity(config: RbdStorageConfig): CephIdentity {
  return { conf: config.conf, keyring: config.adminKeyring, id: config.adminId };
}

export function nodeIdentity(config: RbdStorageConfig, node: string): CephIdentity {
  const keyring = config.nodeKeyrings[node];
  return keyring ? { conf: config.conf, keyring, id: nodeCephId(node) } : adminIdentity(config);
}

export function openStorage(config: StorageConfig): StorageBackend {
  if (config.type === "dir") return new DirStorage(config.path);
  return new RbdStorage({
    pool: config.pool,
    admin: adminIdentity(config),
    nodeIdentity: (node) => nodeIdentity(config, node),
  });
}

/** Deletes a removed node's own Ceph user (Ceph storage; dir storage has none). */
export function nodeUserRemover(config: StorageConfig): ((node: string) => Promise<void>) | undefined {
  if (config.type !== "rbd") return undefined;
  return (node) => deleteNodeClient(adminIdentity(config), node);
}

/** What only Ceph storage offers: Ceph's own status, and images in other pools. */
export function cephExtras(config: StorageConfig): {
  cephStatus?: () => Promise<unknown>;
  storageForPool?: (pool: string) => Promise<StorageBackend>;
} {
  if (config.type !== "rbd") return {};
  return {
    cephStatus: () => cephStatus(adminIdentity(config)),
    storageForPool: (pool) =>
      openRbdStorage({
        pool,
        admin: adminIdentity(config),
        nodeIdentity: (node) => nodeIdentity(config, node),
      }),
  };
}
