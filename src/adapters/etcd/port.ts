// The one door to etcd. Everything Haven keeps in etcd goes through this interface; the real client talks
// to etcd's v3 JSON gateway, the fake keeps it in memory for unit tests.

export interface KeyValue {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
  version: number;
  /** Lease id as a decimal string ("0" when the key has no lease). */
  lease: string;
}

export type CompareTarget = "version" | "create" | "mod" | "value" | "lease";
export type CompareResult = "equal" | "not_equal" | "greater" | "less";

export interface Compare {
  key: string;
  target: CompareTarget;
  result: CompareResult;
  /** number for version/create/mod, string for value and lease. */
  value: number | string;
}

export type TxnOp =
  | { type: "put"; key: string; value: string; lease?: string }
  | { type: "delete"; key: string; prefix?: boolean }
  | { type: "get"; key: string; prefix?: boolean };

export interface TxnResult {
  succeeded: boolean;
  revision: number;
  /** One entry per op of the branch that ran; key-values for "get", empty arrays otherwise. */
  responses: KeyValue[][];
}

export interface WatchEvent {
  type: "put" | "delete";
  /** For deletes: key and modRevision are set, value is "". */
  kv: KeyValue;
}

export interface WatchHandlers {
  /** A batch of events, all at or below `revision`. */
  onEvents(events: WatchEvent[], revision: number): void;
}

/** Thrown by watch() when the requested start revision was compacted; relist and watch again. */
export class CompactedError extends Error {
  constructor(readonly compactRevision: number) {
    super(`etcd revision compacted (compact revision ${compactRevision})`);
    this.name = "CompactedError";
  }
}

/** Thrown when etcd cannot be reached or does not answer in time. */
export class EtcdUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "EtcdUnavailableError";
  }
}

/** Thrown by put/txn when the lease to attach no longer exists (expired or revoked): grant a new one. */
export class LeaseNotFoundError extends Error {
  constructor(readonly leaseId: string) {
    super(`etcd lease ${leaseId} not found (expired or revoked)`);
    this.name = "LeaseNotFoundError";
  }
}

/** One member of the etcd cluster, as its member list has it. */
export interface EtcdMember {
  id: string;
  /** Empty until a member added at run time has started. */
  name: string;
  peerUrls: string[];
  /** Empty until a member added at run time has started. */
  clientUrls: string[];
  /** A learner replicates the log without voting, and serves no client. */
  learner: boolean;
}

/** The client URLs of etcd's voting members: where clients send their requests (a learner serves none). */
export const voterUrls = (members: EtcdMember[]): string[] =>
  members.filter((m) => !m.learner).flatMap((m) => m.clientUrls);

/** etcd's membership, for a cluster whose etcd grows with its servers (GatewayEtcdClient has it). */
export interface EtcdMembership {
  members(): Promise<EtcdMember[]>;
  /** Adds a member that replicates the log without voting, so that one that never starts costs no quorum. */
  addLearner(peerUrls: string[]): Promise<EtcdMember>;
  /** Makes a learner a voter; etcd refuses while the learner has not caught up with the leader. */
  promote(id: string): Promise<void>;
  /** Removes a member from the cluster: the others stop replicating to it and its vote no longer counts. */
  remove(id: string): Promise<void>;
}

export interface EtcdClient {
  get(key: string): Promise<KeyValue | undefined>;
  /** All keys under a prefix, sorted by key, with the store revision the read was served at. */
  list(prefix: string): Promise<{ kvs: KeyValue[]; revision: number }>;
  put(key: string, value: string, options?: { lease?: string }): Promise<number>;
  delete(key: string, options?: { prefix?: boolean }): Promise<number>;
  txn(compares: Compare[], success: TxnOp[], failure?: TxnOp[]): Promise<TxnResult>;
  grantLease(ttlSeconds: number): Promise<string>;
  /** One keep-alive round trip; returns the remaining TTL in seconds, 0 when the lease no longer exists. */
  keepAlive(leaseId: string): Promise<number>;
  revokeLease(leaseId: string): Promise<void>;
  /**
   * Watch a prefix from a revision (inclusive). Resolves when `signal` aborts; rejects with CompactedError
   * when fromRevision was compacted, or with EtcdUnavailableError when the stream breaks.
   */
  watch(prefix: string, fromRevision: number, handlers: WatchHandlers, signal: AbortSignal): Promise<void>;
  close(): void;
}
