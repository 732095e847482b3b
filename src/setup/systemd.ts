// The systemd units that keep Haven's own daemons running on an installed server: havend, and the etcd member
// of a monitor node. Written by the code that installs a node; every setting that is not systemd's default
// says why. Ceph's daemons run under the units Debian's Ceph packages ship (ceph-mon@, ceph-osd@, ceph-mgr@).
import { etcdMember, type EtcdMemberOptions } from "./etcd.js";

/** The unit names, as havend's ordering refers to them. */
export const UNITS = { havend: "havend.service", etcd: "haven-etcd.service" } as const;
export interface HavendUnitOptions {
  /** The Node.js binary havend runs on (Haven pins its own, newer than Debian's). */
  node: string;
  /** bin/havend.js of the installed Haven. */
  havend: string;
  /** The node's havend configuration file. */
  config: string;
  /** How long a shutdown under the migrate policy may wait for the guests to move (havend's setting). */
  shutdownMigrateSeconds: number;
}

export function havendUnit(options: HavendUnitOptions): string {
  return `[Unit]
Description=Haven node daemon (havend)
# etcd and Ceph are stopped after havend at shutdown: leaving by the shutdown policy needs them, and the
# network, to move guests away.
Wants=network-online.target
After=network-online.target ${UNITS.etcd} ceph.target

[Service]
Type=simple
ExecStart=${[options.node, options.havend, "--config", options.config].map(quoted).join(" ")}
# Guests are daemonized QEMUs: stopping or restarting havend (an upgrade) leaves them running, and the next
# havend re-attaches to them. Only a host shutdown applies the shutdown policy.
KillMode=process
# The migrate policy waits for the guests to move away, then havend shuts the rest down and gives its lease up.
TimeoutStopSec=${options.shutdownMigrateSeconds + 60}
Restart=on-failure
RestartSec=2

[Install]
WantedBy=multi-user.target
`;
}

/** An ExecStart word: systemd splits on whitespace unless the word is quoted. */
const quoted = (word: string) => (/[\s"\\]/.test(word) ? `"${word.replace(/["\\]/g, "\\$&")}"` : word);

/** The etcd member's unit: the same arguments `haven cluster up` starts a local member with. */
export function etcdUnit(options: { etcd: string; member: EtcdMemberOptions }): string {
  const { name, args } = etcdMember(options.member);
  return `[Unit]
Description=Haven cluster store (etcd member ${name})
Wants=network-online.target
After=network-online.target

[Service]
# etcd tells systemd when it has joined its cluster and serves clients.
Type=notify
ExecStart=${[options.etcd, ...args].map(quoted).join(" ")}
Restart=on-failure
RestartSec=2
# Every client connection and watch stream holds a descriptor.
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
`;
}
