// The node's liveness in etcd: a lease kept alive every TTL/10 and the node record written under it, so the
// record vanishes when the node stops renewing. The lease id is kept in a lease file so that a restarted agent
// continues the same lease instead of flapping the node offline.
import { readFile, writeFile } from "node:fs/promises";
import type { ClusterStore } from "../adapters/etcd/cluster-store.js";
import type { NodeInfo } from "../core/model.js";
import { keepAliveDue, keepAliveIntervalMs, selfFenceDeadline } from "../core/self-fence.js";
import type { Clock } from "../lib/clock.js";
import type { Logger } from "../lib/log.js";

/** Keep-alives outstanding at once; more only pile up against an etcd that does not answer at all. */
const MAX_KEEPALIVES_IN_FLIGHT = 8;

/** Where the lease id outlives the havend process ("" when there is none). */
export interface LeaseFile {
  read(): Promise<string>;
  write(leaseId: string): Promise<void>;
}

/** The lease file in the node's state directory (mode 0600). */
export function leaseFileAt(path: string): LeaseFile {
  return {
    read: () => readFile(path, "utf8").catch(() => ""),
    write: (leaseId) => writeFile(path, leaseId, { mode: 0o600 }),
  };
}

export class NodeLease {
  private leaseId: string | undefined;
  /** When the last keep-alive that etcd answered was sent (ms); the self-fencing deadline counts from it. */
  lastRenewSentAt = 0;

  constructor(
    private readonly store: ClusterStore,
    private info: NodeInfo,
    private readonly ttlSeconds: number,
    private readonly leaseFile: LeaseFile,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  /** The current lease id; throws before the first registration. */
  get id(): string {
    if (!this.leaseId) throw new Error("node is not registered yet");
    return this.leaseId;
  }

  /**
   * Registers the node (reusing a still-valid lease from a previous run) and returns the lease id.
   * `beforePublish` runs once etcd has answered, before the node record appears: it may refuse the node.
   */
  async register(beforePublish?: () => Promise<void>): Promise<string> {
    const previous = (await this.leaseFile.read()).trim();
    const sentAt = this.clock.now();
    if (previous && (await this.store.etcd.keepAlive(previous).catch(() => 0)) > 0) {
      this.leaseId = previous;
      this.log.info("continuing lease", { leaseId: this.leaseId });
    } else {
      this.leaseId = await this.store.etcd.grantLease(this.ttlSeconds);
      await this.leaseFile.write(this.leaseId);
      this.log.info("lease granted", { leaseId: this.leaseId, ttlSeconds: this.ttlSeconds });
    }
    this.lastRenewSentAt = sentAt;
    await beforePublish?.();
    await this.store.putNode(this.info, this.leaseId);
    return this.leaseId;
  }

  /** Publishes a changed node record (e.g. storage health) under the current lease. */
  async update(change: Partial<NodeInfo>): Promise<void> {
    this.info = { ...this.info, ...change };
    if (this.leaseId) await this.store.putNode(this.info, this.leaseId);
  }

  /**
   * Gives the lease up (a node leaving on purpose, its guests stopped): its record and statuses go at once, so
   * the controller acts without waiting for the TTL. The lease file is emptied: the next start registers anew.
   */
  async revoke(): Promise<void> {
    const leaseId = this.leaseId;
    if (!leaseId) return;
    this.leaseId = undefined;
    await this.leaseFile.write("");
    await this.store.etcd.revokeLease(leaseId);
  }

  /** Until when this node may run guests (see core/self-fence.ts). */
  deadline(marginMs: number): number {
    return selfFenceDeadline(this.lastRenewSentAt, this.ttlSeconds, marginMs);
  }

  /**
   * Keeps the lease alive until the signal aborts: one keep-alive every TTL/10, on a fixed cadence whether or
   * not the previous one was answered yet, so that one lost or slow answer does not delay the next (a slow etcd
   * must not make the node self-fence while its lease is fine), and twice as often while the last one sent is
   * unanswered (see keepAliveIntervalMs). When etcd says the lease is gone, `onLost` runs
   * first (the agent kills its guests: they ran on a lease that no longer exists), then the node registers again.
   */
  async keepAlive(
    signal: AbortSignal,
    onLost: () => Promise<void>,
    onNewLease: (leaseId: string) => void,
  ): Promise<void> {
    const intervalMs = keepAliveIntervalMs(this.ttlSeconds);
    let inFlight = 0;
    let lastSentAt = 0;
    let ticks = 0;
    let registering = false;
    const renew = async (leaseId: string, sentAt: number) => {
      const ttl = await this.store.etcd.keepAlive(leaseId);
      if (leaseId !== this.leaseId) return; // answered for a lease we have replaced meanwhile
      if (ttl > 0) {
        this.lastRenewSentAt = Math.max(this.lastRenewSentAt, sentAt);
        return;
      }
      if (registering) return;
      registering = true;
      try {
        this.log.warn("lease lost, registering again", { leaseId });
        this.lastRenewSentAt = 0;
        await onLost();
        await this.leaseFile.write("");
        onNewLease(await this.register());
      } finally {
        registering = false;
      }
    };
    while (!signal.aborted) {
      await this.clock.sleep(intervalMs / 2, signal);
      ticks++;
      if (signal.aborted || registering || inFlight >= MAX_KEEPALIVES_IN_FLIGHT) continue;
      if (!keepAliveDue(ticks, this.lastRenewSentAt >= lastSentAt)) continue;
      const now = this.clock.now();
      ticks = 0;
      inFlight++;
      lastSentAt = now;
      void renew(this.id, now)
        .catch((err: unknown) => this.log.warn("lease keep-alive failed", { err, leaseId: this.leaseId }))
        .finally(() => inFlight--);
    }
  }
}
