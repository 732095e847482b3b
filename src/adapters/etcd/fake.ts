// In-memory etcd for unit tests: same revision, compare, lease and watch semantics as etcd v3, with time
// taken from an injected clock so that lease expiry is deterministic (tests advance the clock, then call
// expireLeases()).
import { Buffer } from "node:buffer";
import {
  CompactedError,
  EtcdUnavailableError,
  LeaseNotFoundError,
  type Compare,
  type EtcdClient,
  type KeyValue,
  type TxnOp,
  type TxnResult,
  type WatchEvent,
  type WatchHandlers,
} from "./port.js";

interface Lease {
  ttlSeconds: number;
  deadlineMs: number;
  keys: Set<string>;
}

interface Watcher {
  prefix: string;
  /** First revision to deliver (a watch may start in the future). */
  start: number;
  handlers: WatchHandlers;
  fail(err: unknown): void;
}

/** All events of one revision, as etcd's history keeps them. */
interface Batch {
  revision: number;
  events: WatchEvent[];
}

export interface FakeEtcdOptions {
  now: () => number;
  /** Called with every revision's changes the moment they are applied (the simulator's event log). */
  onCommit?: (events: WatchEvent[], revision: number) => void;
}

export class FakeEtcd implements EtcdClient {
  private readonly now: () => number;
  private readonly onCommit: FakeEtcdOptions["onCommit"];
  private readonly store = new Map<string, KeyValue>();
  private readonly leases = new Map<string, Lease>();
  private readonly watchers = new Set<Watcher>();
  private history: Batch[] = [];
  /** etcd starts at revision 1 with an empty store; the first write is revision 2. */
  private rev = 1;
  private compactRevision = 0;
  private nextLeaseId = 7000;
  private unavailable = false;

  constructor(options: FakeEtcdOptions) {
    this.now = options.now;
    this.onCommit = options.onCommit;
  }

  get revision(): number {
    return this.rev;
  }

  // --- test helpers ---

  /** Simulates quorum loss: every call rejects and open watches break, until set back to false. */
  setUnavailable(unavailable: boolean): void {
    this.unavailable = unavailable;
    if (unavailable)
      for (const w of [...this.watchers]) w.fail(new EtcdUnavailableError("fake etcd unavailable"));
  }

  /** Forgets history before `revision`; watches starting earlier reject with CompactedError. */
  compact(revision: number): void {
    if (revision > this.rev)
      throw new Error(`cannot compact to future revision ${revision} (now ${this.rev})`);
    this.compactRevision = Math.max(this.compactRevision, revision);
    this.history = this.history.filter((batch) => batch.revision >= this.compactRevision);
  }

  /** The keys under a prefix right now, without waiting (for inspecting the state, never for the programs). */
  peek(prefix: string): KeyValue[] {
    return this.range(prefix, true);
  }

  /** Every lease gets its full TTL again from now: what etcd does when a new leader takes over. */
  restoreLeases(): void {
    for (const lease of this.leases.values()) lease.deadlineMs = this.now() + lease.ttlSeconds * 1000;
  }

  /** Revokes every lease whose TTL ran out by now() (deleting its keys); returns their ids. */
  expireLeases(): string[] {
    const expired = [...this.leases].filter(([, lease]) => lease.deadlineMs <= this.now()).map(([id]) => id);
    for (const id of expired) this.revoke(id);
    return expired;
  }

  // --- EtcdClient ---

  async get(key: string): Promise<KeyValue | undefined> {
    await this.check();
    const kv = this.store.get(key);
    return kv && { ...kv };
  }

  async list(prefix: string): Promise<{ kvs: KeyValue[]; revision: number }> {
    await this.check();
    return { kvs: this.range(prefix, true), revision: this.rev };
  }

  async put(key: string, value: string, options?: { lease?: string }): Promise<number> {
    await this.check();
    this.mutate((m) => m.put(key, value, options?.lease));
    return this.rev;
  }

  async delete(key: string, options?: { prefix?: boolean }): Promise<number> {
    await this.check();
    let deleted = 0;
    this.mutate((m) => (deleted = m.delete(key, options?.prefix ?? false)));
    return deleted;
  }

  async txn(compares: Compare[], success: TxnOp[], failure: TxnOp[] = []): Promise<TxnResult> {
    await this.check();
    const succeeded = compares.every((c) => compareHolds(c, this.store.get(c.key)));
    const ops = succeeded ? success : failure;
    // Validate like etcd before applying anything, so a refused txn changes nothing.
    const puts = ops.filter((op) => op.type === "put");
    if (new Set(puts.map((op) => op.key)).size !== puts.length) {
      throw new Error("etcdserver: duplicate key given in txn request");
    }
    const missingLease = puts.find((op) => op.lease && op.lease !== "0" && !this.leases.has(op.lease));
    if (missingLease?.lease) throw new LeaseNotFoundError(missingLease.lease);
    const responses: KeyValue[][] = [];
    this.mutate((m) => {
      for (const op of ops) {
        if (op.type === "get") {
          responses.push(this.range(op.key, op.prefix ?? false));
          continue;
        }
        if (op.type === "put") m.put(op.key, op.value, op.lease);
        else m.delete(op.key, op.prefix ?? false);
        responses.push([]);
      }
    });
    return { succeeded, revision: this.rev, responses };
  }

  async grantLease(ttlSeconds: number): Promise<string> {
    await this.check();
    const id = String(this.nextLeaseId++);
    this.leases.set(id, { ttlSeconds, deadlineMs: this.now() + ttlSeconds * 1000, keys: new Set() });
    return id;
  }

  async keepAlive(leaseId: string): Promise<number> {
    await this.check();
    const lease = this.leases.get(leaseId);
    if (!lease) return 0;
    // etcd refuses to renew a lease that already ran out, even if its revocation has not happened yet.
    if (lease.deadlineMs <= this.now()) {
      this.revoke(leaseId);
      return 0;
    }
    lease.deadlineMs = this.now() + lease.ttlSeconds * 1000;
    return lease.ttlSeconds;
  }

  async revokeLease(leaseId: string): Promise<void> {
    await this.check();
    this.revoke(leaseId);
  }

  async watch(
    prefix: string,
    fromRevision: number,
    handlers: WatchHandlers,
    signal: AbortSignal,
  ): Promise<void> {
    await this.check();
    if (signal.aborted) return;
    if (fromRevision > 0 && fromRevision < this.compactRevision)
      throw new CompactedError(this.compactRevision);
    const start = fromRevision > 0 ? fromRevision : this.rev + 1;
    return new Promise<void>((resolve, reject) => {
      const stop = (settle: () => void) => {
        if (!this.watchers.delete(watcher)) return;
        signal.removeEventListener("abort", onAbort);
        settle();
      };
      const onAbort = () => stop(resolve);
      const watcher: Watcher = { prefix, start, handlers, fail: (err) => stop(() => reject(toError(err))) };
      signal.addEventListener("abort", onAbort, { once: true });
      this.watchers.add(watcher);
      // etcd may have "lost quorum" while this call was on its way.
      if (this.unavailable) watcher.fail(new EtcdUnavailableError("fake etcd unavailable"));
      // History is in revision order: only its tail from `start` on is delivered.
      let first = this.history.length;
      while (first > 0 && this.history[first - 1]!.revision >= start) first--;
      for (const batch of this.history.slice(first)) this.deliver(watcher, batch);
    });
  }

  close(): void {
    this.setUnavailable(true);
  }

  // --- internals ---

  private async check(): Promise<void> {
    // Always answer asynchronously, as the real client does, so tests see the same interleavings.
    await Promise.resolve();
    if (this.unavailable) throw new EtcdUnavailableError("fake etcd unavailable (simulated quorum loss)");
  }

  private range(key: string, prefix: boolean): KeyValue[] {
    const kvs = prefix
      ? [...this.store.values()].filter((kv) => kv.key.startsWith(key))
      : [this.store.get(key)];
    return kvs
      .filter((kv) => kv !== undefined)
      .map((kv) => ({ ...kv }))
      .sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)));
  }

  private revoke(leaseId: string): void {
    const lease = this.leases.get(leaseId);
    if (!lease) return;
    this.leases.delete(leaseId);
    // All keys of a lease go in one revision, as etcd deletes them in one transaction.
    this.mutate((m) => {
      for (const key of lease.keys) m.delete(key, false);
    });
  }

  /** Applies writes at one new revision (only if something changed) and tells the watchers. */
  private mutate(apply: (m: { put: Mutator["put"]; delete: Mutator["delete"] }) => void): void {
    const mutator = new Mutator(this.rev + 1, this.store, this.leases);
    apply(mutator);
    if (mutator.events.length === 0) return;
    this.rev += 1;
    const batch = { revision: this.rev, events: mutator.events };
    this.history.push(batch);
    this.onCommit?.(batch.events, batch.revision);
    for (const watcher of this.watchers) this.deliver(watcher, batch);
  }

  private deliver(watcher: Watcher, batch: Batch): void {
    const events = batch.events.filter((e) => e.kv.key.startsWith(watcher.prefix));
    if (events.length === 0 || batch.revision < watcher.start) return;
    // Microtasks keep delivery ordered and asynchronous, like a stream, yet deterministic.
    queueMicrotask(() => {
      if (!this.watchers.has(watcher)) return;
      try {
        watcher.handlers.onEvents(events, batch.revision);
      } catch (err) {
        watcher.fail(err);
      }
    });
  }
}

/** The writes of one revision. */
class Mutator {
  readonly events: WatchEvent[] = [];

  constructor(
    private readonly revision: number,
    private readonly store: Map<string, KeyValue>,
    private readonly leases: Map<string, Lease>,
  ) {}

  put(key: string, value: string, lease = "0"): void {
    const newLease = lease === "0" ? undefined : this.leases.get(lease);
    if (lease !== "0" && !newLease) throw new LeaseNotFoundError(lease);
    const old = this.store.get(key);
    if (old && old.lease !== "0") this.leases.get(old.lease)?.keys.delete(key);
    newLease?.keys.add(key);
    const kv: KeyValue = {
      key,
      value,
      createRevision: old?.createRevision ?? this.revision,
      modRevision: this.revision,
      version: (old?.version ?? 0) + 1,
      lease,
    };
    this.store.set(key, kv);
    this.events.push({ type: "put", kv: { ...kv } });
  }

  delete(key: string, prefix: boolean): number {
    const keys = prefix ? [...this.store.keys()].filter((k) => k.startsWith(key)).sort() : [key];
    let deleted = 0;
    for (const k of keys) {
      const old = this.store.get(k);
      if (!old) continue;
      this.store.delete(k);
      if (old.lease !== "0") this.leases.get(old.lease)?.keys.delete(k);
      const kv = { key: k, value: "", createRevision: 0, modRevision: this.revision, version: 0, lease: "0" };
      this.events.push({ type: "delete", kv });
      deleted++;
    }
    return deleted;
  }
}

/** etcd's compare: a missing key has version, create and mod revision 0 and lease 0; a value compare fails. */
function compareHolds(c: Compare, kv: KeyValue | undefined): boolean {
  if (c.target === "value" && !kv) return false;
  const order =
    c.target === "value"
      ? Buffer.compare(Buffer.from(kv?.value ?? ""), Buffer.from(String(c.value)))
      : c.target === "lease" // int64: compare exactly
        ? Math.sign(Number(BigInt(kv?.lease ?? "0") - BigInt(c.value)))
        : Math.sign(
            ({ version: kv?.version, create: kv?.createRevision, mod: kv?.modRevision }[c.target] ?? 0) -
              Number(c.value),
          );
  const holds = { equal: order === 0, not_equal: order !== 0, greater: order > 0, less: order < 0 };
  return holds[c.result];
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
