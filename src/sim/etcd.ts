// The simulated etcd: one in-memory store (the FakeEtcd adapter: revisions, compare-and-swap, leases,
// watches) behind a client per caller that adds what the network and quorum do to the programs' requests.
// A caller that cannot reach etcd, or an etcd without quorum, answers nothing: the request fails after the
// client's timeout, as GatewayEtcdClient's would. Keep-alives take the configured latency and wait for quorum;
// watches deliver after a delay and retry with the informer's backoff while their caller is cut off. Leases
// expire on the etcd side one TTL after the last keep-alive reached it; without quorum nothing expires, and
// when quorum returns every lease gets a full TTL (what a new etcd leader does). The leader is the first live
// member; when it dies the others answer "no leader" to every request until they have elected a new one.
import { FakeEtcd } from "../adapters/etcd/fake.js";
import {
  EtcdUnavailableError,
  type Compare,
  type EtcdClient,
  type KeyValue,
  type TxnOp,
  type TxnResult,
  type WatchEvent,
  type WatchHandlers,
} from "../adapters/etcd/port.js";
import { EPOCH_MS } from "./process.js";
import type { Scheduler } from "./scheduler.js";

/** A request that gets no answer fails after this long (GatewayEtcdClient's default). */
export const REQUEST_TIMEOUT_MS = 2000;
const MAX_WATCH_BACKOFF_MS = 5000;
/**
 * How long etcd is without a leader after its leader dies: the followers notice after their election timeout,
 * which etcd randomises between one and two of its 1 s default, then vote. This is the worst case.
 */
export const ELECTION_MS = 2000;
/** History kept for watches that start in the past; older revisions are compacted away. */
const HISTORY_REVISIONS = 1000;

/** Who sends a request: a node's havend process, or the API (which any reachable member serves). */
export interface EtcdCaller {
  reachable(): boolean;
  /** Runs `run` in the caller after `delayMs` (never once it died, late while it is frozen). */
  after(delayMs: number, run: () => void): void;
  keepAliveLatencyMs(): number;
}

export interface SimEtcdOptions {
  scheduler: Scheduler;
  /** How long a change takes to reach a watcher. */
  watchDelayMs: number;
  /** Every revision's changes, the moment they are applied. */
  onCommit: (events: WatchEvent[]) => void;
}

export class SimEtcd {
  readonly data: FakeEtcd;
  private membersDown = new Set<string>();
  private quorumLost = false;
  private parkedKeepAlives: Array<() => void> = [];
  /** Until when (simulated ms) the members have no leader. */
  private leaderlessUntil = 0;

  constructor(
    private readonly options: SimEtcdOptions,
    /** etcd members, for member loss: quorum needs more than half of them. */
    readonly members = ["etcd1", "etcd2", "etcd3"],
  ) {
    this.data = new FakeEtcd({
      now: () => EPOCH_MS + options.scheduler.now,
      onCommit: (events, revision) => {
        options.onCommit(events);
        if (revision % HISTORY_REVISIONS === 0) this.data.compact(revision - HISTORY_REVISIONS);
      },
    });
  }

  get quorum(): boolean {
    return !this.quorumLost && this.membersDown.size * 2 < this.members.length;
  }

  /** Whether etcd answers requests: it has quorum and is not electing a leader. */
  get serving(): boolean {
    return this.quorum && this.options.scheduler.now >= this.leaderlessUntil;
  }

  /** `quorum-loss` / `quorum-back`: etcd as a whole stops and starts answering. */
  setQuorumLost(lost: boolean): void {
    const before = this.quorum;
    this.quorumLost = lost;
    this.quorumChanged(before);
  }

  /** One member dies or comes back; the clients fail over to the others. */
  setMemberDown(member: string, down: boolean): void {
    const before = this.quorum;
    const leader = this.members.find((m) => !this.membersDown.has(m));
    if (down) this.membersDown.add(member);
    else this.membersDown.delete(member);
    if (down && member === leader) this.leaderlessUntil = this.options.scheduler.now + ELECTION_MS;
    this.quorumChanged(before);
  }

  private quorumChanged(before: boolean): void {
    if (before || !this.quorum) return;
    this.data.restoreLeases();
    this.scheduleExpiry();
    for (const answer of this.parkedKeepAlives.splice(0)) answer();
  }

  client(caller: EtcdCaller): SimEtcdClient {
    return new SimEtcdClient(this, caller, this.options);
  }

  /** A keep-alive reaching etcd: answered now, once quorum is back, or refused during an election. */
  keepAliveArrives(id: string, answer: (ttl: number) => void, refuse: () => void): void {
    const arrive = () =>
      void this.data.keepAlive(id).then((ttl) => {
        if (ttl > 0) this.scheduleExpiry();
        answer(ttl);
      });
    if (!this.quorum) this.parkedKeepAlives.push(arrive);
    else if (this.serving) arrive();
    else refuse();
  }

  /** Leases are renewed for their full TTL; the check runs when the one just renewed could expire. */
  scheduleExpiry(ttlMs = this.ttlMs): void {
    this.options.scheduler.after(ttlMs, () => {
      if (this.quorum) this.data.expireLeases();
    });
  }

  /** The TTL the nodes use (set by the world). */
  ttlMs = 5000;
}

export class SimEtcdClient implements EtcdClient {
  /** Ends this caller's watches when its process dies. */
  private readonly dead = new AbortController();

  constructor(
    private readonly server: SimEtcd,
    private readonly caller: EtcdCaller,
    private readonly options: SimEtcdOptions,
  ) {}

  private request<T>(what: string, send: () => Promise<T>): Promise<T> {
    if (this.caller.reachable() && this.server.serving) return send();
    if (this.caller.reachable() && this.server.quorum) return this.noLeader(what);
    return new Promise((_, reject) =>
      this.caller.after(REQUEST_TIMEOUT_MS, () =>
        reject(new EtcdUnavailableError(`etcd ${what}: no answer within ${REQUEST_TIMEOUT_MS} ms`)),
      ),
    );
  }

  /** etcd's answer while it elects a leader. */
  private noLeader<T>(what: string): Promise<T> {
    return new Promise((_, reject) =>
      this.caller.after(0, () => reject(new EtcdUnavailableError(`etcd ${what}: no leader`))),
    );
  }

  get(key: string): Promise<KeyValue | undefined> {
    return this.request("get", () => this.server.data.get(key));
  }

  list(prefix: string): Promise<{ kvs: KeyValue[]; revision: number }> {
    return this.request("range", () => this.server.data.list(prefix));
  }

  put(key: string, value: string, options?: { lease?: string }): Promise<number> {
    return this.request("put", () => this.server.data.put(key, value, options));
  }

  delete(key: string, options?: { prefix?: boolean }): Promise<number> {
    return this.request("delete", () => this.server.data.delete(key, options));
  }

  txn(compares: Compare[], success: TxnOp[], failure?: TxnOp[]): Promise<TxnResult> {
    return this.request("txn", () => this.server.data.txn(compares, success, failure));
  }

  grantLease(ttlSeconds: number): Promise<string> {
    return this.request("lease grant", async () => {
      const id = await this.server.data.grantLease(ttlSeconds);
      this.server.scheduleExpiry(ttlSeconds * 1000);
      return id;
    });
  }

  revokeLease(leaseId: string): Promise<void> {
    return this.request("lease revoke", () => this.server.data.revokeLease(leaseId));
  }

  /**
   * One keep-alive round trip: it reaches etcd after half the latency (a request sent while cut off is lost),
   * waits there for quorum, and its answer takes the other half; the client gives up after its timeout.
   */
  keepAlive(leaseId: string): Promise<number> {
    const { scheduler } = this.options;
    return new Promise((resolve, reject) => {
      let settled = false;
      const givesUpAt = scheduler.now + REQUEST_TIMEOUT_MS;
      this.caller.after(REQUEST_TIMEOUT_MS, () => {
        if (settled) return;
        settled = true;
        reject(new EtcdUnavailableError(`etcd lease keep-alive: no answer within ${REQUEST_TIMEOUT_MS} ms`));
      });
      if (!this.caller.reachable()) return;
      const half = this.caller.keepAliveLatencyMs() / 2;
      const answer = (settle: () => void) => {
        if (scheduler.now + half >= givesUpAt) return;
        this.caller.after(half, () => {
          if (settled) return;
          settled = true;
          settle();
        });
      };
      scheduler.after(half, () =>
        this.server.keepAliveArrives(
          leaseId,
          (ttl) => answer(() => resolve(ttl)),
          () => answer(() => reject(new EtcdUnavailableError("etcd lease keep-alive: no leader"))),
        ),
      );
    });
  }

  /**
   * Events reach the caller `watchDelayMs` after the change, all that came meanwhile in one batch; while the
   * caller cannot reach etcd (or etcd has no quorum) delivery is retried with the informer's backoff
   * (100 ms doubling to 5 s). Opening a watch is a request like any other.
   */
  watch(prefix: string, fromRevision: number, handlers: WatchHandlers, signal: AbortSignal): Promise<void> {
    return this.request("watch", () => {
      const buffered: WatchEvent[] = [];
      let lastRevision = 0;
      let pending = false;
      let backoffMs = 0;
      const attempt = (delayMs: number) =>
        this.caller.after(delayMs, () => {
          if (signal.aborted) return;
          if (!this.caller.reachable() || !this.server.serving) {
            backoffMs = Math.min(Math.max(backoffMs * 2, 100), MAX_WATCH_BACKOFF_MS);
            return attempt(backoffMs);
          }
          pending = false;
          backoffMs = 0;
          if (buffered.length > 0) handlers.onEvents(buffered.splice(0), lastRevision);
        });
      const collect = (events: WatchEvent[], revision: number) => {
        buffered.push(...events);
        lastRevision = revision;
        if (pending) return;
        pending = true;
        attempt(this.options.watchDelayMs);
      };
      return this.server.data.watch(
        prefix,
        fromRevision,
        { onEvents: collect },
        AbortSignal.any([signal, this.dead.signal]),
      );
    });
  }

  /** The caller died: its watches end (a dead process hears nothing). */
  close(): void {
    this.dead.abort();
  }
}
