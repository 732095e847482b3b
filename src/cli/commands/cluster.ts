// haven cluster up|down, haven status
import { constants } from "node:fs";
import { access } from "node:fs/promises";
import { resolve } from "node:path";
import type { Command } from "commander";
import { SHUTDOWN_POLICIES } from "../../core/model.js";
import { parseRolesList } from "../../core/roles.js";
import { inputError } from "../../core/errors.js";
import { waitFor } from "../../lib/async.js";
import type { TlsFiles } from "../../lib/tls.js";
import type { CliContext } from "../context.js";
import { progress } from "../context.js";
import { adminEtcdTls, clusterDown, clusterUp } from "../../setup/local-cluster.js";
import type { ClusterFile } from "../../setup/cluster-file.js";
import type { StorageChoice } from "../../setup/local-storage.js";
import { formatBytes, printJson } from "../output.js";
import { accelSetting, intOption, leaseTtlSetting } from "../parse.js";

interface StatusView {
  cluster: string;
  controller: string | null;
  storage: {
    kind: string;
    ok: boolean;
    summary: string;
    usage: { provisionedBytes: number; usedBytes: number; images: number } | null;
  };
  nodes: { online: number; names: string[]; versions: Record<string, string[]> };
  vms: { total: number; byState: Record<string, number> };
}

interface UpFlags {
  nodes?: number;
  roles?: string;
  etcd?: string;
  etcdCa?: string;
  etcdCert?: string;
  etcdKey?: string;
  etcdMembers?: number;
  accel: string;
  leaseTtl: number;
  storage: string;
  cephConf?: string;
  keyring?: string;
  pool: string;
  json?: boolean;
}

function storageChoice(options: UpFlags): StorageChoice {
  if (options.cephConf || options.keyring) {
    if (!options.cephConf || !options.keyring) throw inputError("--ceph-conf and --keyring go together");
    return { type: "attach", conf: options.cephConf, keyring: options.keyring, pool: options.pool };
  }
  if (options.storage !== "rbd" && options.storage !== "dir")
    throw inputError("--storage must be rbd or dir");
  return { type: options.storage };
}

/** --etcd-ca, --etcd-cert and --etcd-key, checked: they go with --etcd, cert and key together, files that exist. */
async function etcdClientFiles(options: UpFlags): Promise<TlsFiles | undefined> {
  const { etcdCa, etcdCert, etcdKey } = options;
  if (etcdCa === undefined) {
    if (etcdCert !== undefined || etcdKey !== undefined)
      throw inputError("--etcd-cert and --etcd-key need --etcd-ca");
    return undefined;
  }
  if (!options.etcd) throw inputError("--etcd-ca, --etcd-cert and --etcd-key go with --etcd");
  if ((etcdCert === undefined) !== (etcdKey === undefined))
    throw inputError("--etcd-cert and --etcd-key go together");
  const files: TlsFiles = {
    ca: resolve(etcdCa),
    ...(etcdCert !== undefined && { cert: resolve(etcdCert), key: resolve(etcdKey!) }),
  };
  for (const [flag, path] of Object.entries(files))
    await access(path, constants.R_OK).catch(() => {
      throw inputError(`--etcd-${flag}: cannot read ${path}`);
    });
  return files;
}

export function registerCluster(program: Command, ctx: CliContext): void {
  const cluster = program
    .command("cluster")
    .description("start and stop a local cluster; cluster-wide settings");
  cluster
    .command("up")
    .description(
      "start a local cluster (N nodes, each a host of its own on 198.18.0.0/16 running its havend, etcd member and Ceph daemons); starts what is missing if it exists",
    )
    .option("--nodes <n>", "number of nodes of a new cluster (default 3)", intOption("--nodes"))
    .option(
      "--roles <list>",
      "each new node's roles, one comma-separated entry per node, roles (compute, storage, monitor) joined " +
        "with '+', e.g. storage+monitor,storage+monitor,compute+monitor,compute (default: every role on every node)",
    )
    .option(
      "--etcd <urls>",
      "use an existing etcd cluster (comma-separated client URLs) instead of starting one",
    )
    .option("--etcd-ca <file>", "with --etcd over https: the CA that signed its certificates")
    .option(
      "--etcd-cert <file>",
      "with --etcd-ca: the client certificate the nodes present (needs --etcd-key)",
    )
    .option("--etcd-key <file>", "the key of --etcd-cert")
    .option(
      "--etcd-members <n>",
      "members of the local etcd: 1, or 3 (survives the loss of one) (default: 1)",
      intOption("--etcd-members"),
    )
    .option("--accel <mode>", "auto (probe KVM, fall back to TCG), kvm or tcg", "auto")
    .option("--lease-ttl <seconds>", "node lease TTL", intOption("--lease-ttl"), 5)
    .option(
      "--storage <kind>",
      "rbd (bootstrap a local Ceph: a monitor on every monitor node, an OSD on every storage node) or dir",
      "rbd",
    )
    .option("--ceph-conf <file>", "attach to an existing Ceph cluster with this ceph.conf (needs --keyring)")
    .option("--keyring <file>", "cephx keyring for --ceph-conf")
    .option("--pool <name>", "RBD pool for guest disks with --ceph-conf", "rbd")
    .option("--json", "print the cluster description as JSON")
    .action(async (options: UpFlags) => {
      const accel = accelSetting(options.accel);
      const leaseTtlSeconds = leaseTtlSetting(options.leaseTtl);
      const etcd = options.etcd?.split(",").map((url) => url.trim());
      for (const url of etcd ?? []) {
        if (!URL.canParse(url)) throw inputError(`--etcd: "${url}" is not a URL`);
      }
      const file = await clusterUp({
        stateDir: ctx.stateDir,
        nodes: options.nodes,
        roles: options.roles === undefined ? undefined : parseRolesList(options.roles),
        etcd,
        etcdClient: await etcdClientFiles(options),
        etcdMembers: options.etcdMembers,
        accel,
        leaseTtlSeconds,
        storage: storageChoice(options),
        progress,
      });
      const api = await ctx.api();
      progress(`waiting for ${file.nodes.length} nodes to come online…`);
      const status = await waitFor(
        "all nodes online",
        async () => {
          const current = await api.get<StatusView>("/v1/status").catch(() => undefined);
          return current && current.nodes.online >= file.nodes.length ? current : undefined;
        },
        60_000,
        300,
      );
      if (options.json) printJson({ stateDir: ctx.stateDir, ...file, status });
      else
        progress(
          `cluster ${file.name} is up: ${status.nodes.names.join(", ")} online (state in ${ctx.stateDir})`,
        );
    });
  cluster
    .command("down")
    .description("stop the local cluster's havends, guests and etcd")
    .option("--purge", "also delete the state directory (disks included)")
    .action(async (options: { purge?: boolean }) => {
      await clusterDown(ctx.stateDir, options.purge ?? false, progress);
    });

  program
    .command("status")
    .description("cluster overview: controller, nodes, VMs, storage")
    .option("--json", "machine-readable output")
    .action(async (options: { json?: boolean }) => {
      const status = await (await ctx.api()).get<StatusView>("/v1/status");
      if (options.json) return printJson(status);
      const states = Object.entries(status.vms.byState).map(([state, count]) => `${count} ${state}`);
      console.log(`cluster:    ${status.cluster}`);
      console.log(`controller: ${status.controller ?? "none elected"}`);
      console.log(`nodes:      ${status.nodes.online} online (${status.nodes.names.join(", ")})`);
      const versions = Object.entries(status.nodes.versions);
      console.log(
        `versions:   ${versions.length > 1 ? `mixed: ${versions.map(([v, names]) => `${v} (${names.join(", ")})`).join(", ")}` : (versions[0]?.[0] ?? "-")}`,
      );
      console.log(`vms:        ${status.vms.total}${states.length ? ` (${states.join(", ")})` : ""}`);
      const { kind, summary, usage } = status.storage;
      const used = usage
        ? ` (${usage.images} disks, ${formatBytes(usage.provisionedBytes)} provisioned, ${formatBytes(usage.usedBytes)} used)`
        : "";
      console.log(`storage:    ${kind}, ${summary}${used}`);
    });

  cluster
    .command("shutdown-policy [policy]")
    .description(
      "show or set what a node's shutdown or reboot does with its guests: migrate them away first (default), " +
        "stop them for HA failover elsewhere, or stop and freeze them until the node is back",
    )
    .option("--json", "machine-readable output")
    .action(async (policy: string | undefined, options: { json?: boolean }) => {
      const api = await ctx.api();
      if (policy !== undefined) {
        if (!(SHUTDOWN_POLICIES as readonly string[]).includes(policy))
          throw inputError(`unknown shutdown policy "${policy}" (${SHUTDOWN_POLICIES.join(", ")})`);
        await api.request("PUT", "/v1/shutdown-policy", { policy });
      }
      const view = await api.get<{ policy: string; frozen: Array<{ node: string; since: string }> }>(
        "/v1/shutdown-policy",
      );
      if (options.json) return printJson(view);
      console.log(`shutdown-policy ${view.policy}`);
      for (const { node, since } of view.frozen) console.log(`frozen: ${node} (since ${since})`);
    });

  program
    .command("env")
    .description(
      'print the shell exports that point haven, etcdctl, ceph, rbd and qemu-img at this cluster: eval "$(haven env)"',
    )
    .option("--json", "the variables as a JSON object")
    .action(async (options: { json?: boolean }) => {
      const variables = environmentOf(ctx.stateDir, await ctx.cluster());
      if (options.json) return printJson(variables);
      for (const [name, value] of Object.entries(variables))
        console.log(`export ${name}=${shellQuote(value)}`);
    });
}

/**
 * What a shell needs to use this cluster as an installed one: its state directory, etcd's endpoints with the
 * credentials etcdctl presents, and for Ceph storage the ceph.conf (whose keyring setting finds client.admin's
 * keyring in a local Ceph), or the attached cluster's identity for ceph and rbd.
 */
function environmentOf(stateDir: string, file: ClusterFile): Record<string, string> {
  const variables: Record<string, string> = {
    HAVEN_STATE_DIR: stateDir,
    ETCDCTL_ENDPOINTS: file.etcd.endpoints.join(","),
  };
  const etcdTls = adminEtcdTls(stateDir, file);
  if (etcdTls) {
    variables.ETCDCTL_CACERT = etcdTls.ca;
    if (etcdTls.cert) variables.ETCDCTL_CERT = etcdTls.cert;
    if (etcdTls.key) variables.ETCDCTL_KEY = etcdTls.key;
  }
  if (file.storage.type !== "rbd") return variables;
  variables.CEPH_CONF = file.storage.conf;
  if (!file.storage.localDir)
    variables.CEPH_ARGS = `--id ${file.storage.adminId} --keyring ${file.storage.adminKeyring}`;
  return variables;
}

const shellQuote = (value: string) => `'${value.replaceAll("'", "'\\''")}'`;
