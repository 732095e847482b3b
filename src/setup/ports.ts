// The TCP ports a Haven server listens on by default (docs/install.md lists them for firewalls). The hosts
// of a local cluster use them too: each host has its own address.
export const PORTS = {
  /** havend's HTTPS API. */
  api: 7443,
  /** The etcd member's client and peer URLs (etcd's own defaults). */
  etcdClient: 2379,
  etcdPeer: 2380,
} as const;
