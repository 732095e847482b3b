// havend: the node daemon. Composition root: wires etcd, storage, QEMU and the fence agents into the node's
// Havend (lease, agent, controller when elected, see havend.ts) and the HTTP API, by hand.
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { readFile, writeFile, mkdir } from "node:fs/promises";
import { availableParallelism, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ClusterStore } from "../adapters/etcd/cluster-store.js";
import { CommandFenceRunner } from "../adapters/fence/command.js";
import { Watchdog } from "../adapters/fence/watchdog.js";
import { GatewayEtcdClient } from "../adapters/etcd/gateway-client.js";
import { probeAccelerator } from "../adapters/qemu/accel.js";
import { readDhcpLeases } from "../adapters/network/dhcp-leases.js";
import { LinuxHostNetwork } from "../adapters/network/linux.js";
import { writeSeedImage } from "../adapters/cloud-init/seed-image.js";
import { qemuCapabilities } from "../adapters/qemu/capabilities.js";
import { QemuHypervisor } from "../adapters/qemu/hypervisor.js";
import type { Accelerator } from "../adapters/qemu/port.js";
import { cephExtras, nodeUserRemover, openStorage } from "../adapters/storage/config.js";
import { createApiServer } from "../api/server.js";
import { HavenService } from "../api/service.js";
import { ImportService } from "../api/import-service.js";
import { JoinService } from "../api/join-service.js";
import { etcdTrustsClusterCa, joinAuthority } from "./join-authority.js";
import { DEFAULT_SHUTDOWN_POLICY, type NodeInfo } from "../core/model.js";
import { sleep } from "../lib/async.js";
import { systemClock } from "../lib/clock.js";
import { createLogger, type Logger } from "../lib/log.js";
import { VERSION } from "../lib/version.js";
import { loadNodeConfig, type NodeConfig } from "./config.js";
import { Havend, nodeConditions, RefusedToJoin } from "./havend.js";
import { leaseFileAt } from "../agent/node-lease.js";
import { hostShuttingDown } from "../adapters/host/shutdown.js";
import { readTlsIdentity } from "../setup/pki.js";
import { readTlsFiles } from "../lib/tls.js";

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { config: { type: "string" } } });
  if (!values.config) throw new Error("usage: havend --config FILE");
  const config = loadNodeConfig(values.config);
  const log = createLogger(`havend.${config.node}`);
  const shutdown = new AbortController();
  // Ends the process; replaced, once the node runs, by a stop that first applies the shutdown policy.
  let stop = () => shutdown.abort();
  // Replaced, once the node runs, by its leaving: guests moved away, then the process ends.
  let removed = () => shutdown.abort();
  for (const signal of ["SIGTERM", "SIGINT"] as const) process.on(signal, () => stop());

  await mkdir(config.stateDir, { recursive: true });
  const token = readFileSync(config.tokenFile, "utf8").trim();
  const etcd = new GatewayEtcdClient({
    endpoints: config.etcd,
    ...(config.etcdTls && { tls: readTlsFiles(config.etcdTls) }),
    ...(config.localAddress !== undefined && { localAddress: config.localAddress }),
  });
  const store = new ClusterStore(etcd, config.prefix);
  const storage = openStorage(config.storage);
  const network = new LinuxHostNetwork();
  const hypervisor = new QemuHypervisor({
    runDir: join(config.stateDir, "guests"),
    network,
    log: (message, fields) => log.child("qemu").info(message, fields),
  });
  const accel = await chooseAccelerator(config, log);
  const info = nodeInfo(config, accel, await nodeConditions(storage, network));
  const havend = new Havend({
    info,
    leaseTtlSeconds: config.leaseTtlSeconds,
    selfFenceMarginMs: config.selfFenceMarginMs,
    clock: systemClock,
    store,
    hypervisor,
    storage,
    fenceAgents: new CommandFenceRunner(),
    network,
    leaseFile: leaseFileAt(join(config.stateDir, "lease")),
    accel: accel.accel,
    migration: { host: config.migration?.host ?? config.listen.host, tlsDir: config.tlsDir },
    onRemoved: () => removed(),
    log,
  });
  await havend.register(shutdown.signal);
  if (shutdown.signal.aborted) return;

  const { storageForPool } = cephExtras(config.storage);
  const service = new HavenService(store, storage, {
    name: config.cluster,
    guestDir: config.guestDir,
    ...cephExtras(config.storage),
    capabilities: () => qemuCapabilities(),
    writeSeed: writeSeedImage,
    ...(config.dhcpLeases !== undefined && { dhcpLeases: () => readDhcpLeases(config.dhcpLeases!) }),
  });
  // Haven's own etcd (not one the cluster was attached to) grows as monitors join, and nodes follow it.
  const ownEtcd = etcdTrustsClusterCa(config);
  const joins = new JoinService(
    store,
    systemClock,
    randomBytes,
    config.caDir && config.tlsDir ? await joinAuthority(config, config.caDir, info.api, token) : undefined,
    config.node,
    {
      removeStorageUser: nodeUserRemover(config.storage),
      ...(ownEtcd && { etcd }),
      cephFollowsRoles: config.storage.type === "rbd" && config.storage.localDir !== null,
    },
  );
  const server = createApiServer({
    service,
    token,
    log: log.child("api"),
    consoleSocket: (vm) => hypervisor.consolePaths(vm).socket,
    imports: new ImportService(store, storage, {
      pool: config.storage.type === "rbd" ? config.storage.pool : null,
      ...(storageForPool && { storageForPool }),
      capabilities: () => qemuCapabilities(),
      random: (bytes) => randomBytes(bytes),
    }),
    joins,
    ...(config.tlsDir && { tls: readTlsIdentity(config.tlsDir, "server") }),
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.listen.port, config.listen.host, resolve);
  });
  log.info("havend ready", { api: info.api, accel: accel.accel, version: VERSION });
  const watchdog = config.watchdog && new Watchdog(config.watchdog.device);
  watchdog?.open();
  if (watchdog) log.info("watchdog armed", { ...config.watchdog });

  const loops = new AbortController();
  const running = havend.run(AbortSignal.any([loops.signal, shutdown.signal]));
  let leaving: Promise<void> | undefined;
  const endLoops = async () => {
    loops.abort();
    await running;
  };
  stop = () => {
    leaving ??= leaveIfHostStops(havend, store, config, log, endLoops).finally(() => shutdown.abort());
  };
  removed = () => {
    leaving ??= havend
      .leaveRemoved(endLoops, config.shutdownMigrateSeconds * 1000)
      .catch((err: unknown) => log.error("leaving the cluster failed", { err }))
      .finally(() => shutdown.abort());
  };
  await Promise.all([
    running,
    ownEtcd && followEtcdMembers(etcd, log, AbortSignal.any([loops.signal, shutdown.signal])),
    watchdog?.run(() => havend.mayFeedWatchdog(), config.watchdog!.feedIntervalMs, shutdown.signal),
  ]);
  await leaving;
  server.close();
  server.closeAllConnections();
  hypervisor.close();
  etcd.close();
  // Unless the host went down, guests keep running: a stopped agent is not a stopped node, and the next
  // havend re-attaches to them.
  log.info("havend stopped", { guestsLeftRunning: havend.agent.runningGuests });
}

/** How often a node reads etcd's member list. */
const ETCD_MEMBERS_EVERY_MS = 30_000;

/**
 * Haven's own etcd grows as monitors join: the node sends its requests to the voting members etcd lists,
 * not only to those its configuration was written with, so that it keeps etcd when those are gone.
 */
async function followEtcdMembers(etcd: GatewayEtcdClient, log: Logger, signal: AbortSignal): Promise<void> {
  let failing = false;
  while (!signal.aborted) {
    try {
      const before = etcd.knownEndpoints.join(" ");
      await etcd.syncEndpoints();
      if (etcd.knownEndpoints.join(" ") !== before)
        log.info("following etcd's voting members", { endpoints: etcd.knownEndpoints });
      failing = false;
    } catch (err) {
      if (!failing) log.warn("cannot read etcd's member list; keeping the endpoints known", { err });
      failing = true;
    }
    await sleep(ETCD_MEMBERS_EVERY_MS, signal);
  }
}

/**
 * A stop while the host goes down (or `haven node shutdown` asked for it) applies the cluster's shutdown
 * policy to the node's guests; a stop of havend alone (a restart, an upgrade) leaves them running.
 */
async function leaveIfHostStops(
  havend: Havend,
  store: ClusterStore,
  config: NodeConfig,
  log: Logger,
  endLoops: () => Promise<void>,
): Promise<void> {
  if (!(await hostShuttingDown(config.stateDir))) return;
  const policy = await store.getShutdownPolicy().catch(() => DEFAULT_SHUTDOWN_POLICY);
  await havend
    .leave(policy, endLoops, config.shutdownMigrateSeconds * 1000)
    .catch((err: unknown) => log.error("leaving by the shutdown policy failed", { policy, err }));
}

function nodeInfo(
  config: NodeConfig,
  accel: { accel: Accelerator; reason: string },
  conditions: Pick<NodeInfo, "storage" | "bridges">,
): NodeInfo {
  return {
    name: config.node,
    api: `${config.tlsDir ? "https" : "http"}://${config.listen.host}:${config.listen.port}`,
    capacity: config.capacity ?? {
      vcpus: availableParallelism(),
      memoryMb: Math.floor(totalmem() / 1024 / 1024),
    },
    attributes: config.attributes,
    roles: config.roles,
    accel: accel.accel,
    accelReason: accel.reason,
    ...conditions,
    startedAt: new Date().toISOString(),
    version: VERSION,
  };
}

/** KVM only when a short probe boot really works; the answer is kept in the node's state dir. */
async function chooseAccelerator(
  config: NodeConfig,
  log: Logger,
): Promise<{ accel: Accelerator; reason: string }> {
  if (config.accel !== "auto") return { accel: config.accel, reason: `configured: ${config.accel}` };
  const cacheFile = join(config.stateDir, "accel.json");
  const cached = await readFile(cacheFile, "utf8").then(
    (text) => JSON.parse(text) as { accel: Accelerator; reason: string },
    () => undefined,
  );
  if (cached) return cached;
  log.info("probing accelerator");
  const result = await probeAccelerator({
    kernel: join(config.guestDir, "vmlinuz"),
    initrd: join(config.guestDir, "initramfs.img"),
  });
  await writeFile(cacheFile, JSON.stringify(result));
  log.info("accelerator chosen", { ...result });
  return result;
}

main().catch((err: unknown) => {
  // A refusal to join is the administrator's to act on, not a crash: its reason alone, without a stack. A
  // removed node exits with success, so that its service manager leaves it stopped.
  const refused = err instanceof RefusedToJoin ? err : undefined;
  process.stderr.write(`havend: ${refused ? refused.message : ((err as Error).stack ?? String(err))}\n`);
  process.exit(refused && !refused.retry ? 0 : 1);
});
