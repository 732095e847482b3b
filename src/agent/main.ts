// havend: the node daemon. Composition root: wires etcd, storage, QEMU, the agent, the controller
// (when elected) and the HTTP API by hand.
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
import type { HostNetwork } from "../adapters/network/port.js";
import { writeSeedImage } from "../adapters/cloud-init/seed-image.js";
import { qemuCapabilities } from "../adapters/qemu/capabilities.js";
import { QemuHypervisor } from "../adapters/qemu/hypervisor.js";
import type { Accelerator } from "../adapters/qemu/port.js";
import { cephExtras, openStorage } from "../adapters/storage/config.js";
import type { StorageBackend, StorageHealth } from "../adapters/storage/port.js";
import { createApiServer } from "../api/server.js";
import { HavenService } from "../api/service.js";
import { ImportService } from "../api/import-service.js";
import { Controller } from "../controller/controller.js";
import type { NodeInfo } from "../core/model.js";
import { DEFAULT_SELF_FENCE_MARGIN_MS, mayFeedWatchdog, mayRunGuests } from "../core/self-fence.js";
import { sleep } from "../lib/async.js";
import { createLogger, type Logger } from "../lib/log.js";
import { VERSION } from "../lib/version.js";
import { Agent } from "./agent.js";
import { loadNodeConfig, type NodeConfig } from "./config.js";
import { NodeLease } from "./node-lease.js";

const STORAGE_HEALTH_INTERVAL_MS = 10_000;

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { config: { type: "string" } } });
  if (!values.config) throw new Error("usage: havend --config FILE");
  const config = loadNodeConfig(values.config);
  const log = createLogger(`havend.${config.node}`);
  const shutdown = new AbortController();
  for (const signal of ["SIGTERM", "SIGINT"] as const) process.on(signal, () => shutdown.abort());

  await mkdir(config.stateDir, { recursive: true });
  const token = readFileSync(config.tokenFile, "utf8").trim();
  const etcd = new GatewayEtcdClient({ endpoints: config.etcd });
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
  const lease = new NodeLease(
    store,
    info,
    config.leaseTtlSeconds,
    join(config.stateDir, "lease"),
    log.child("lease"),
  );
  await registerUntilReachable(lease, log, shutdown.signal);
  if (shutdown.signal.aborted) return;

  const leaseValid = () =>
    mayRunGuests(Date.now(), lease.deadline(config.selfFenceMarginMs ?? DEFAULT_SELF_FENCE_MARGIN_MS));
  const agent = new Agent({
    node: config.node,
    store,
    hypervisor,
    storage,
    accel: accel.accel,
    lease: () => lease.id,
    leaseValid,
    leaseExpiresAt: () => lease.deadline(0),
    publishGuests: (guests) => lease.update({ guests }),
    migration: { host: config.migration?.host ?? config.listen.host, tlsDir: config.migration?.tlsDir },
    log: log.child("agent"),
  });
  const controller = new Controller({
    node: config.node,
    store,
    storage,
    fenceAgents: new CommandFenceRunner(),
    lease: () => lease.id,
    log: log.child("controller"),
  });
  const service = new HavenService(store, storage, {
    name: config.cluster,
    guestDir: config.guestDir,
    ...cephExtras(config.storage),
    capabilities: () => qemuCapabilities(),
    writeSeed: writeSeedImage,
    ...(config.dhcpLeases !== undefined && { dhcpLeases: () => readDhcpLeases(config.dhcpLeases!) }),
  });
  const server = createApiServer({
    service,
    token,
    log: log.child("api"),
    consoleSocket: (vm) => hypervisor.consolePaths(vm).socket,
    imports: new ImportService(store, storage, {
      pool: config.storage.type === "rbd" ? config.storage.pool : null,
    }),
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.listen.port, config.listen.host, resolve);
  });
  log.info("havend ready", { api: info.api, accel: accel.accel, version: VERSION });
  const watchdog = config.watchdog && new Watchdog(config.watchdog.device);
  watchdog?.open();
  if (watchdog) log.info("watchdog armed", { ...config.watchdog });

  await Promise.all([
    lease.keepAlive(
      shutdown.signal,
      () => agent.selfFence(),
      () => agent.resetReported(),
    ),
    agent.run(shutdown.signal),
    controller.run(shutdown.signal),
    watchNodeConditions(storage, network, lease, log, shutdown.signal),
    watchdog?.run(
      () => mayFeedWatchdog(leaseValid(), agent.runningGuests),
      config.watchdog!.feedIntervalMs,
      shutdown.signal,
    ),
  ]);
  // Guests keep running: a stopped agent is not a stopped node. The next havend re-attaches to them.
  server.close();
  server.closeAllConnections();
  hypervisor.close();
  etcd.close();
  log.info("havend stopped; guests left running");
}

function nodeInfo(
  config: NodeConfig,
  accel: { accel: Accelerator; reason: string },
  conditions: NodeConditions,
): NodeInfo {
  return {
    name: config.node,
    api: `http://${config.listen.host}:${config.listen.port}`,
    capacity: config.capacity ?? {
      vcpus: availableParallelism(),
      memoryMb: Math.floor(totalmem() / 1024 / 1024),
    },
    attributes: config.attributes,
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

/** What decides whether a guest can run here besides room: the storage reached, the bridges offered. */
type NodeConditions = { storage: StorageHealth; bridges: string[] };

async function nodeConditions(storage: StorageBackend, network: HostNetwork): Promise<NodeConditions> {
  const [health, bridges] = await Promise.all([storage.health(), network.bridges()]);
  return { storage: health, bridges };
}

/** Republishes the node record whenever the node's storage health or its bridges change. */
async function watchNodeConditions(
  storage: StorageBackend,
  network: HostNetwork,
  lease: NodeLease,
  log: Logger,
  signal: AbortSignal,
): Promise<void> {
  let last = "";
  while (!signal.aborted) {
    const conditions = await nodeConditions(storage, network);
    const fingerprint = JSON.stringify(conditions);
    if (fingerprint !== last) {
      if (last) log.info("node conditions changed", { ...conditions });
      await lease.update(conditions).catch((err: unknown) => log.warn("node update failed", { err }));
      last = fingerprint;
    }
    await sleep(STORAGE_HEALTH_INTERVAL_MS, signal);
  }
}

async function registerUntilReachable(lease: NodeLease, log: Logger, signal: AbortSignal): Promise<void> {
  for (let delay = 200; !signal.aborted; delay = Math.min(delay * 2, 5000)) {
    try {
      await lease.register();
      return;
    } catch (err) {
      log.warn("cannot register node yet", { err, retryInMs: delay });
      await sleep(delay, signal);
    }
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`havend: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
