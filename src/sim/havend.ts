// One simulated havend process: the shipped Havend (src/havend/havend.ts) — node lease, agent, controller
// candidate — wired to the node's simulated clock, etcd client, QEMUs, storage, fence agents, console logs
// and lease file, as src/havend/main.ts wires it to the real ones.
import { ClusterStore } from "../adapters/etcd/cluster-store.js";
import { FakeHostNetwork } from "../adapters/network/fake.js";
import { Havend } from "../havend/havend.js";
import type { NodeInfo } from "../core/model.js";
import { createLogger, silentLogger } from "../lib/log.js";
import { simConsoleLogs, simFenceRunner, simLeaseFile, simStorage } from "./adapters.js";
import type { SimEtcdClient } from "./etcd.js";
import { SimHypervisor } from "./hypervisor.js";
import { SimClock, SimProcess } from "./process.js";
import type { SimNode, World } from "./world.js";

/** Every simulated cluster's keys live under this prefix. */
export const SIM_PREFIX = "/haven/sim/";

export class SimHavend {
  readonly process: SimProcess;
  /** Simulated ms it was started at: it gets one lease-guard period to register and act. */
  readonly startedAt: number;
  /** Whether it has registered since it started (until then it vouches for nothing). */
  registered = false;
  readonly hypervisor: SimHypervisor;
  readonly havend: Havend;
  private readonly etcd: SimEtcdClient;
  /** SIGTERM: havend stops cleanly (its guests keep running). */
  private readonly shutdown = new AbortController();

  constructor(world: World, node: SimNode) {
    this.process = new SimProcess(world, node.name, node.boot);
    this.startedAt = world.now();
    const clock = new SimClock(world.scheduler, this.process);
    this.etcd = world.etcd.client({
      // A dead process sends nothing (and hears nothing: its answers are dropped).
      reachable: () => this.process.alive && world.reachable(node.name),
      after: (delayMs, run) => this.process.after(delayMs, run),
      keepAliveLatencyMs: () => node.keepAliveLatencyMs,
    });
    this.hypervisor = new SimHypervisor(world, this.process);
    const info: NodeInfo = {
      name: node.name,
      api: `http://10.0.0.${node.index}:7300`,
      capacity: node.capacity,
      attributes: {},
      accel: "tcg",
      accelReason: "simulated",
      storage: { ok: true, summary: "HEALTH_OK" },
      startedAt: new Date(clock.now()).toISOString(),
      version: "sim",
    };
    this.havend = new Havend({
      info,
      leaseTtlSeconds: world.config.ttlSeconds,
      selfFenceMarginMs: world.config.marginMs,
      clock,
      store: new ClusterStore(this.etcd, SIM_PREFIX, clock),
      hypervisor: this.hypervisor,
      storage: simStorage(world, node.name),
      fenceAgents: simFenceRunner(world, this.process),
      network: new FakeHostNetwork(),
      leaseFile: simLeaseFile(world, node.name),
      accel: "tcg",
      migration: { host: `10.0.0.${node.index}`, tlsDir: `/sim/${node.name}/tls` },
      consoleLogs: simConsoleLogs(world, node.name),
      log: world.programLog
        ? createLogger(`havend.${node.name}`, (line) => world.programLog!(line))
        : silentLogger,
    });
  }

  /** havend starts: registers (continuing the lease in its lease file while etcd has it), then runs. */
  start(): void {
    const { signal } = this.shutdown;
    void this.havend
      .register(signal)
      .then(() => {
        if (signal.aborted) return;
        this.registered = true;
        return this.havend.run(signal);
      })
      .then(() => this.etcd.close());
  }

  /** SIGTERM: the programs end their loops (the controller resigns); guests keep running. */
  stop(): void {
    this.shutdown.abort();
  }

  /** SIGKILL, or the node lost power: nothing of this process runs again. */
  kill(): void {
    this.process.alive = false;
    this.etcd.close();
  }
}
