// The systemd unit that keeps havend running on an installed server. Written by the code that installs a
// node; every setting that is not systemd's default says why.
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
After=network-online.target etcd.service ceph.target

[Service]
Type=simple
ExecStart=${options.node} ${options.havend} --config ${options.config}
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
