// One simulated havend (src/agent/main.ts + node-lease.ts): registers the node under a lease, keeps it alive
// every TTL/5, kills every guest once the self-fencing deadline of core/self-fence.ts has passed (checked
// every 100 ms), and runs the agent and the controller candidate. It lives until its node powers off.
import type { NodeInfo } from "../core/model.js";
import { keepAliveIntervalMs, mayRunGuests, selfFenceDeadline } from "../core/self-fence.js";
import { REQUEST_TIMEOUT_MS, SimAgent, type AgentHost } from "./agent.js";
import { SimController } from "./controller.js";
import { isEtcdError } from "./etcd.js";
import { SimHypervisor } from "./hypervisor.js";
import type { SimNode, World } from "./world.js";

const LEASE_GUARD_MS = 100;
const MAX_REGISTER_BACKOFF_MS = 5000;
/** As node-lease.ts: keep-alives outstanding at once. */
const MAX_IN_FLIGHT = 4;

export class SimHavend implements AgentHost {
  private lease: string | undefined;
  /** When the last keep-alive that etcd answered was sent (wall ms). */
  private lastRenewSentAt = 0;
  private inFlight = 0;
  private registering = false;
  private info: NodeInfo;
  readonly hypervisor: SimHypervisor;
  readonly agent: SimAgent;
  readonly controller: SimController;

  constructor(
    private readonly world: World,
    private readonly simNode: SimNode,
  ) {
    this.info = {
      name: simNode.name,
      api: `http://10.0.0.${simNode.index}:7300`,
      capacity: simNode.capacity,
      attributes: {},
      accel: "tcg",
      accelReason: "simulated",
      storage: { ok: true, summary: "HEALTH_OK" },
      startedAt: world.iso(),
      version: "sim",
    };
    this.hypervisor = new SimHypervisor(world, simNode.name);
    this.agent = new SimAgent(world, this, this.hypervisor);
    this.controller = new SimController(world, this);
  }

  get node(): string {
    return this.simNode.name;
  }

  leaseId(): string {
    if (!this.lease) throw new Error("node is not registered yet");
    return this.lease;
  }

  /** Until when this node may run guests (wall ms). */
  deadline(): number {
    return selfFenceDeadline(this.lastRenewSentAt, this.world.config.ttlSeconds, this.world.config.marginMs);
  }

  leaseValid(): boolean {
    return mayRunGuests(this.world.wall(), this.deadline());
  }

  publishGuests(guests: NonNullable<NodeInfo["guests"]>): void {
    this.info = { ...this.info, guests };
    this.world.etcd.putNode(this.node, this.info, this.leaseId());
  }

  boot(): void {
    this.registerUntilReachable(200);
  }

  private registerUntilReachable(delay: number): void {
    try {
      this.register();
    } catch (err) {
      if (!isEtcdError(err)) throw err;
      const next = Math.min(delay * 2, MAX_REGISTER_BACKOFF_MS);
      this.world.nodeTask(this.node, REQUEST_TIMEOUT_MS + delay, () => this.registerUntilReachable(next));
      return;
    }
    this.agent.run();
    this.guard();
    this.scheduleKeepAlive();
    this.controller.run();
  }

  /** Reuses the lease from the lease file while etcd still has it, as a restarted havend does. */
  private register(): void {
    const { etcd } = this.world;
    const sentAt = this.world.wall();
    etcd.check(this.node, "register");
    const previous = this.simNode.leaseFile;
    if (previous && etcd.keepAliveArrives(previous) > 0) this.lease = previous;
    else {
      this.lease = etcd.grantLease(this.node, this.world.config.ttlSeconds * 1000);
      this.simNode.leaseFile = this.lease;
    }
    this.lastRenewSentAt = sentAt;
    etcd.putNode(this.node, this.info, this.lease);
  }

  private guard(): void {
    if (!this.leaseValid() && this.agent.running.size > 0) this.agent.selfFence();
    this.world.nodeTask(this.node, LEASE_GUARD_MS, () => this.guard());
  }

  private scheduleKeepAlive(): void {
    this.world.nodeTask(this.node, keepAliveIntervalMs(this.world.config.ttlSeconds), () => this.keepAlive());
  }

  /**
   * One keep-alive round trip, as node-lease.ts sends them: every TTL/5 on a fixed cadence, whether or not
   * earlier ones were answered (at most MAX_IN_FLIGHT outstanding). It reaches etcd after half the latency
   * and its answer comes back after the other half; etcd holds it while it has no quorum and answers once
   * quorum is back; the client gives up after its request timeout.
   */
  private keepAlive(): void {
    this.scheduleKeepAlive();
    if (this.registering || this.inFlight >= MAX_IN_FLIGHT) return;
    const sentAt = this.world.wall();
    const id = this.leaseId();
    const latency = this.world.keepAliveLatency(this.node);
    // The answer comes back to this process only: a node that rebooted meanwhile never hears of it.
    const epoch = this.simNode.epoch;
    const givesUpAt = this.world.now() + REQUEST_TIMEOUT_MS;
    this.inFlight++;
    let settled = false;
    const settle = () => {
      if (settled) return false;
      settled = true;
      this.inFlight--;
      return true;
    };
    this.world.nodeTask(this.node, REQUEST_TIMEOUT_MS, settle, epoch);
    if (!this.world.reachable(this.node)) return;
    this.world.clock.after(latency / 2, () =>
      this.world.etcd.keepAliveRequest(id, (ttl) => {
        const back = this.world.now() + latency / 2;
        if (back >= givesUpAt) return;
        this.world.nodeTask(
          this.node,
          latency / 2,
          () => {
            if (settle()) this.answered(id, ttl, sentAt);
          },
          epoch,
        );
      }),
    );
  }

  private answered(id: string, ttl: number, sentAt: number): void {
    if (id !== this.lease) return; // answered for a lease replaced meanwhile
    if (ttl === 0) return this.leaseLost();
    this.lastRenewSentAt = Math.max(this.lastRenewSentAt, sentAt);
  }

  /** etcd says the lease is gone: kill the guests that ran on it, then register anew. */
  private leaseLost(): void {
    if (this.registering) return;
    this.registering = true;
    this.lastRenewSentAt = 0;
    this.agent.selfFence();
    this.simNode.leaseFile = "";
    try {
      this.register();
      this.agent.resetReported();
    } catch (err) {
      if (!isEtcdError(err)) throw err;
    } finally {
      this.registering = false;
    }
  }
}
