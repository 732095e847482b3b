// havend's configuration file: one per node, written by `haven cluster up` for local clusters.
import { readFileSync } from "node:fs";
import { z } from "zod";
import { storageConfigSchema } from "../adapters/storage/config.js";
import { nodeNameSchema } from "../core/model.js";
import { NODE_ROLES, rolesSchema } from "../core/roles.js";
import { tlsFilesSchema } from "../lib/tls.js";

export const DEFAULT_SHUTDOWN_MIGRATE_SECONDS = 300;

export const nodeConfigSchema = z.object({
  cluster: z.string().min(1),
  /** Key prefix in etcd, so several clusters can share one etcd. */
  prefix: z.string().min(1).endsWith("/"),
  node: nodeNameSchema,
  etcd: z.array(z.url()).min(1),
  listen: z.object({ host: z.string().min(1), port: z.number().int().min(1).max(65535) }),
  tokenFile: z.string().min(1),
  /** This node's own state: guests' pidfiles, sockets, serial logs. */
  stateDir: z.string().min(1),
  storage: storageConfigSchema,
  leaseTtlSeconds: z.number().int().min(2).max(300).default(5),
  /** Guests are killed this long (default DEFAULT_SELF_FENCE_MARGIN_MS) before the node lease could expire on etcd's side (invariant 2). */
  selfFenceMarginMs: z.number().int().min(200).max(60_000).optional(),
  accel: z.enum(["auto", "kvm", "tcg"]).default("auto"),
  /** A host shutdown under the `migrate` policy waits this long for the node's guests to move away. */
  shutdownMigrateSeconds: z.number().int().min(0).max(3600).default(DEFAULT_SHUTDOWN_MIGRATE_SECONDS),
  /** Where the canary guest's kernel and initramfs are (guest/build in a checkout). */
  guestDir: z.string().min(1),
  capacity: z.object({ vcpus: z.number().int().min(1), memoryMb: z.number().int().min(1) }).optional(),
  attributes: z.record(z.string(), z.string()).default({}),
  /** compute, storage, monitor (core/roles.ts); guests are placed only on compute nodes. Default: all. */
  roles: rolesSchema.default([...NODE_ROLES]),
  /**
   * This node's credentials from the cluster CA, in QEMU's tls-creds-x509 layout (ca-cert.pem,
   * server-cert.pem/-key.pem, client-cert.pem/-key.pem): the API is served over HTTPS with them and live
   * migrations use them. Without it the API is plain HTTP and migrations can only use TCP.
   */
  tlsDir: z.string().min(1).optional(),
  /**
   * The cluster CA's directory (certificate and key) when this node holds it: it then makes join tokens
   * (`haven node add`) and signs joining servers' certificates. Needs tlsDir.
   */
  caDir: z.string().min(1).optional(),
  /**
   * The address havend's connections to etcd leave from (default: the kernel's choice). A local cluster's
   * node uses its own loopback address, as a host would, so that `haven node partition` can cut them.
   */
  localAddress: z.string().min(1).optional(),
  /** How havend reaches an etcd over https: the CA to trust, and the client certificate and key to present. */
  etcdTls: tlsFilesSchema.optional(),
  /** Live migration: the address incoming migrations listen on (default: the API's). */
  migration: z.object({ host: z.string().min(1) }).optional(),
  /** A dnsmasq lease file of the guest network (local clusters): `vm show` reports the addresses it gave. */
  dhcpLeases: z.string().min(1).optional(),
  /**
   * Optional Linux watchdog (e.g. /dev/watchdog with softdog or a hardware timer), fed while the node may run
   * its guests: a hung agent, or guests outliving the lease, reset the machine. Off unless configured.
   */
  watchdog: z
    .object({
      device: z.string().min(1),
      feedIntervalMs: z.number().int().min(100).max(60_000).default(1000),
    })
    .optional(),
});
export type NodeConfig = z.infer<typeof nodeConfigSchema>;

export function loadNodeConfig(path: string): NodeConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new Error(`cannot read havend config ${path}: ${(err as Error).message}`);
  }
  const parsed = nodeConfigSchema.safeParse(raw);
  if (!parsed.success) throw new Error(`invalid havend config ${path}: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}
