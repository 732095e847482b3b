// Installing Haven on servers (docs/install.md): haven init on the first, haven node add NAME on the cluster
// and haven join TOKEN on every other.
import type { Command } from "commander";
import { inputError } from "../../core/errors.js";
import { parseRoles } from "../../core/roles.js";
import { systemdRuns, type RunMode } from "../../setup/services.js";
import { PORTS } from "../../setup/ports.js";
import {
  DEFAULT_CEPH_DIR,
  DEFAULT_NODE_DIR,
  initCluster,
  joinCluster,
  type ServerNode,
} from "../../setup/install.js";
import { progress, type CliContext } from "../context.js";
import { printJson } from "../output.js";
import { accelSetting, intOption, leaseTtlSetting } from "../parse.js";

interface ServerFlags {
  address: string;
  port: number;
  roles: string;
  dir: string;
  accel: string;
  run?: string;
  etcdClientPort: number;
  etcdPeerPort: number;
  json?: boolean;
}

/** The flags init and join share: where the server is, what it does, how its daemons run. */
function serverCommand(command: Command, defaultRoles: string, rolesHelp: string): Command {
  return command
    .requiredOption(
      "--address <ip>",
      "this server's address on the cluster network (API, etcd, live migrations)",
    )
    .option("--port <port>", "the API's port", intOption("--port"), PORTS.api)
    .option("--roles <roles>", rolesHelp, defaultRoles)
    .option(
      "--dir <dir>",
      "the node's directory: configuration, credentials, guests' state",
      DEFAULT_NODE_DIR,
    )
    .option("--accel <mode>", "auto (probe KVM, fall back to TCG), kvm or tcg", "auto")
    .option(
      "--etcd-client-port <port>",
      "with the monitor role: the etcd member's client port",
      intOption("--etcd-client-port"),
      PORTS.etcdClient,
    )
    .option(
      "--etcd-peer-port <port>",
      "with the monitor role: the etcd member's peer port",
      intOption("--etcd-peer-port"),
      PORTS.etcdPeer,
    )
    .option(
      "--run <how>",
      "systemd (install and enable the units) or process (default: systemd when it runs)",
    )
    .option("--json", "machine-readable output");
}

function common(flags: ServerFlags) {
  const accel = accelSetting(flags.accel);
  const run = (flags.run ?? (systemdRuns() ? "systemd" : "process")) as RunMode;
  if (!["systemd", "process"].includes(run)) throw inputError("--run must be systemd or process");
  for (const [flag, port] of [
    ["--port", flags.port],
    ["--etcd-client-port", flags.etcdClientPort],
    ["--etcd-peer-port", flags.etcdPeerPort],
  ] as const)
    if (port < 1 || port > 65535) throw inputError(`${flag} must be 1-65535`);
  return {
    address: flags.address,
    port: flags.port,
    etcdPorts: { client: flags.etcdClientPort, peer: flags.etcdPeerPort },
    roles: parseRoles(flags.roles),
    dir: flags.dir,
    accel,
    run,
    progress,
  };
}

function report(result: ServerNode, what: string, json?: boolean): void {
  if (json) return printJson(result);
  console.log(`${result.node} ${what}; its API is ${result.api}`);
}

export function registerInstall(program: Command, ctx: CliContext): void {
  serverCommand(
    program
      .command("init")
      .description(
        "make this server the first node of a new cluster: the cluster CA, an etcd member over TLS, the storage " +
          "and havend; then 'haven node add NAME' lets the others join (docs/install.md)",
      ),
    "compute+monitor",
    "this server's roles joined with + (it runs the cluster's etcd: monitor; compute to run guests)",
  )
    .option("--name <node>", "this node's name", "node1")
    .option(
      "--dir-storage",
      "keep disk images in DIR/images instead of Ceph (one server, or a filesystem all servers share)",
    )
    .option("--ceph-conf <file>", "attach to this Ceph cluster's ceph.conf (with --keyring)")
    .option("--keyring <file>", "cephx keyring for --ceph-conf (client.admin or a user that may blocklist)")
    .option("--pool <name>", "RBD pool for guest disks with --ceph-conf", "rbd")
    .option("--lease-ttl <seconds>", "node lease TTL", intOption("--lease-ttl"), 5)
    .action(
      async (
        flags: ServerFlags & {
          name: string;
          dirStorage?: boolean;
          cephConf?: string;
          keyring?: string;
          pool: string;
          leaseTtl: number;
        },
      ) => {
        const leaseTtlSeconds = leaseTtlSetting(flags.leaseTtl);
        if (Boolean(flags.cephConf) !== Boolean(flags.keyring))
          throw inputError("--ceph-conf and --keyring go together");
        if (Boolean(flags.cephConf) === Boolean(flags.dirStorage))
          throw inputError(
            "give the storage: --ceph-conf FILE --keyring FILE [--pool NAME], or --dir-storage",
          );
        const result = await initCluster({
          ...common(flags),
          name: flags.name,
          storage: flags.cephConf
            ? { type: "attach", conf: flags.cephConf, keyring: flags.keyring!, pool: flags.pool }
            : { type: "dir" },
          leaseTtlSeconds,
          stateDir: ctx.stateDir,
        });
        report(result, "created the cluster", flags.json);
      },
    );

  serverCommand(
    program
      .command("join <token>")
      .description(
        "make this server a node of a cluster: TOKEN comes from 'haven node add NAME' on the cluster; " +
          "writes the node's credentials and configuration and starts havend (docs/install.md)",
      ),
    "compute",
    "this server's roles joined with +: compute runs guests, monitor an etcd member (it votes once the " +
      "cluster has an odd number of monitors, up to five)",
  )
    .option("--ceph-dir <dir>", "where Ceph's configuration and keyrings go", DEFAULT_CEPH_DIR)
    .action(async (token: string, flags: ServerFlags & { cephDir: string }) => {
      const result = await joinCluster({
        ...common(flags),
        token,
        cephDir: flags.cephDir,
        stateDir: ctx.stateDir,
      });
      report(result, "joined the cluster", flags.json);
    });
}
