// EtcdClient over etcd's v3 JSON gateway (grpc-gateway in front of the gRPC API), so Haven needs no gRPC
// dependency: plain fetch, base64 keys and values, int64 fields as decimal strings. Over https, each request
// goes through a dispatcher that trusts the cluster CA alone and presents the node's certificate.
import { Buffer } from "node:buffer";
import { z } from "zod";
import {
  CompactedError,
  EtcdUnavailableError,
  LeaseNotFoundError,
  type Compare,
  type EtcdClient,
  type EtcdMember,
  type EtcdMembership,
  type KeyValue,
  type TxnOp,
  type TxnResult,
  type WatchEvent,
  type WatchHandlers,
  voterUrls,
} from "./port.js";
import { clientDispatcher, type Dispatcher, type TlsIdentity } from "../../lib/tls.js";

export interface GatewayEtcdClientOptions {
  /** Client URLs of the etcd members, e.g. ["http://127.0.0.1:2379"]. */
  endpoints: string[];
  /** Per attempt (and for a watch: until etcd confirms it). Default 2000. */
  requestTimeoutMs?: number;
  /** For https endpoints: the cluster CA to trust and the certificate etcd asks clients for. */
  tls?: TlsIdentity;
  /** The address connections leave from (default: the kernel's choice). */
  localAddress?: string;
}

/** etcd answered, but with an error that retrying elsewhere would not fix (bad request, etc.). */
export class EtcdRequestError extends Error {
  constructor(
    message: string,
    readonly grpcCode: number | undefined,
  ) {
    super(message);
    this.name = "EtcdRequestError";
  }
}

// --- gateway JSON shapes (only the fields Haven reads; int64 arrive as strings) ---
const int64 = z.union([z.string(), z.number()]).optional();
const header = z.object({ revision: int64 }).optional();
const rawKv = z.object({
  key: z.string(),
  value: z.string().optional(),
  create_revision: int64,
  mod_revision: int64,
  version: int64,
  lease: int64,
});
const rangeResponse = z.object({ header, kvs: z.array(rawKv).optional() });
const putResponse = z.object({ header });
const deleteResponse = z.object({ header, deleted: int64 });
const txnResponse = z.object({
  header,
  succeeded: z.boolean().optional(),
  responses: z.array(z.object({ response_range: rangeResponse.optional() })).optional(),
});
const leaseGrantResponse = z.object({ ID: int64, TTL: int64, error: z.string().optional() });
const streamError = z.object({ message: z.string().optional(), grpc_code: z.number().optional() }).optional();
// Streaming RPCs (keepalive, watch) wrap each message in {"result": ...} or {"error": ...}.
const keepAliveResponse = z.object({ result: z.object({ TTL: int64 }).optional(), error: streamError });
const watchMessage = z.object({
  result: z
    .object({
      header,
      created: z.boolean().optional(),
      canceled: z.boolean().optional(),
      cancel_reason: z.string().optional(),
      compact_revision: int64,
      events: z.array(z.object({ type: z.string().optional(), kv: rawKv })).optional(),
    })
    .optional(),
  error: streamError,
});
const rawMember = z.object({
  ID: int64,
  name: z.string().optional(),
  peerURLs: z.array(z.string()).optional(),
  clientURLs: z.array(z.string()).optional(),
  isLearner: z.boolean().optional(),
});
const memberListResponse = z.object({ members: z.array(rawMember).optional() });
const memberAddResponse = z.object({ member: rawMember });
const errorBody = z.object({
  message: z.string().optional(),
  error: z.string().optional(),
  code: z.number().optional(),
});

const GRPC_NOT_FOUND = 5;

export class GatewayEtcdClient implements EtcdClient, EtcdMembership {
  private endpoints: string[];
  private readonly timeoutMs: number;
  /** Index of the endpoint that answered last; requests start there so a dead member costs one miss. */
  private preferred = 0;
  private readonly closing = new AbortController();
  private readonly dispatcher: Dispatcher | undefined;

  constructor(options: GatewayEtcdClientOptions) {
    if (options.endpoints.length === 0) throw new Error("GatewayEtcdClient needs at least one endpoint");
    this.endpoints = options.endpoints.map(withoutTrailingSlash);
    this.timeoutMs = options.requestTimeoutMs ?? 2000;
    this.dispatcher = clientDispatcher(options);
  }

  async get(key: string): Promise<KeyValue | undefined> {
    const res = await this.call("/v3/kv/range", { key: b64(key) }, rangeResponse, true);
    const kv = res.kvs?.[0];
    return kv && toKeyValue(kv);
  }

  async list(prefix: string): Promise<{ kvs: KeyValue[]; revision: number }> {
    const res = await this.call("/v3/kv/range", prefixRange(prefix), rangeResponse, true);
    return { kvs: (res.kvs ?? []).map(toKeyValue), revision: num(res.header?.revision) };
  }

  async put(key: string, value: string, options?: { lease?: string }): Promise<number> {
    const body = { key: b64(key), value: b64(value), lease: options?.lease };
    const res = await this.call("/v3/kv/put", body, putResponse, false, options?.lease);
    return num(res.header?.revision);
  }

  async delete(key: string, options?: { prefix?: boolean }): Promise<number> {
    const body = options?.prefix ? prefixRange(key) : { key: b64(key) };
    return num((await this.call("/v3/kv/deleterange", body, deleteResponse, false)).deleted);
  }

  async txn(compares: Compare[], success: TxnOp[], failure: TxnOp[] = []): Promise<TxnResult> {
    const body = {
      compare: compares.map(toCompare),
      success: success.map(toRequestOp),
      failure: failure.map(toRequestOp),
    };
    const writes = [...success, ...failure].some((op) => op.type !== "get");
    const leaseId = findLease(success, failure);
    const res = await this.call("/v3/kv/txn", body, txnResponse, !writes, leaseId);
    const succeeded = res.succeeded ?? false;
    const ran = succeeded ? success : failure;
    const responses = ran.map((op, i) =>
      op.type === "get" ? (res.responses?.[i]?.response_range?.kvs ?? []).map(toKeyValue) : [],
    );
    return { succeeded, revision: num(res.header?.revision), responses };
  }

  async grantLease(ttlSeconds: number): Promise<string> {
    const res = await this.call(
      "/v3/lease/grant",
      { TTL: String(ttlSeconds), ID: "0" },
      leaseGrantResponse,
      false,
    );
    if (res.error) throw new EtcdRequestError(`etcd refused a lease: ${res.error}`, undefined);
    return String(res.ID ?? "0");
  }

  async keepAlive(leaseId: string): Promise<number> {
    const res = await this.call("/v3/lease/keepalive", { ID: leaseId }, keepAliveResponse, true);
    if (res.error)
      throw new EtcdRequestError(`lease keep-alive failed: ${res.error.message}`, res.error.grpc_code);
    // etcd omits TTL (int64 zero) when the lease does not exist any more.
    return num(res.result?.TTL);
  }

  async revokeLease(leaseId: string): Promise<void> {
    try {
      await this.call("/v3/lease/revoke", { ID: leaseId }, putResponse, true, leaseId);
    } catch (err) {
      // Revoking is idempotent for Haven: a lease that is already gone is what we wanted.
      if (!(err instanceof LeaseNotFoundError)) throw err;
    }
  }

  /** The client URLs requests go to, in the order they are tried from the start. */
  get knownEndpoints(): readonly string[] {
    return [...this.endpoints];
  }

  async members(): Promise<EtcdMember[]> {
    const res = await this.call("/v3/cluster/member/list", {}, memberListResponse, true);
    return (res.members ?? []).map(toMember);
  }

  async addLearner(peerUrls: string[]): Promise<EtcdMember> {
    const body = { peerURLs: peerUrls, isLearner: true };
    return toMember((await this.call("/v3/cluster/member/add", body, memberAddResponse, false)).member);
  }

  async promote(id: string): Promise<void> {
    await this.call("/v3/cluster/member/promote", { ID: id }, memberListResponse, false);
  }

  async remove(id: string): Promise<void> {
    await this.call("/v3/cluster/member/remove", { ID: id }, memberListResponse, false);
  }

  /**
   * Follows etcd's membership: from now on requests go to the voting members' client URLs (a cluster whose
   * etcd grew since this client was configured has members it was not told of). Known endpoints keep their
   * order, new ones come after them, and the one that answered last stays the first one tried.
   */
  async syncEndpoints(): Promise<void> {
    const voters = voterUrls(await this.members()).map(withoutTrailingSlash);
    if (voters.length === 0) return;
    const current = this.endpoints[this.preferred];
    const kept = this.endpoints.filter((e) => voters.includes(e));
    this.endpoints = [...kept, ...voters.filter((e) => !kept.includes(e))];
    this.preferred = Math.max(0, this.endpoints.indexOf(current ?? ""));
  }

  async watch(
    prefix: string,
    fromRevision: number,
    handlers: WatchHandlers,
    signal: AbortSignal,
  ): Promise<void> {
    const body = JSON.stringify({
      create_request: { ...prefixRange(prefix), start_revision: String(fromRevision), progress_notify: true },
    });
    const failures: string[] = [];
    for (const index of this.endpointOrder()) {
      const endpoint = this.endpoints[index] ?? "";
      const attempt = new AbortController();
      // The timeout only guards opening the watch; once etcd confirmed it, the stream may idle for hours.
      const timer = setTimeout(() => attempt.abort(new Error("timed out")), this.timeoutMs);
      let created = false;
      let handlerError: { err: unknown } | undefined;
      try {
        const res = await fetch(`${endpoint}/v3/watch`, {
          method: "POST",
          headers: REQUEST_HEADERS,
          body,
          signal: AbortSignal.any([signal, this.closing.signal, attempt.signal]),
          dispatcher: this.dispatcher,
        });
        if (!res.ok || !res.body) {
          const failure = await httpFailure(res);
          if (!failure.retryable) throw failure.error;
          this.failed(index, failure.error.message, failures);
          continue;
        }
        const splitter = new JsonLineSplitter();
        for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
          for (const line of splitter.push(chunk)) {
            const message = parse(watchMessage, line, "/v3/watch");
            if (message.error) throw new EtcdUnavailableError(`etcd watch failed: ${message.error.message}`);
            const result = message.result;
            if (!result) continue;
            if (result.created && !created) {
              created = true;
              clearTimeout(timer);
              this.preferred = index;
            }
            const compactRevision = num(result.compact_revision);
            if (compactRevision > 0) throw new CompactedError(compactRevision);
            if (result.canceled) {
              throw new EtcdUnavailableError(
                `etcd canceled the watch on ${prefix}: ${result.cancel_reason ?? ""}`,
              );
            }
            // A message with neither events nor flags is a progress notification: nothing to deliver.
            if (!result.events?.length) continue;
            const events = result.events.map(toWatchEvent);
            try {
              handlers.onEvents(events, num(result.header?.revision));
            } catch (err) {
              handlerError = { err };
              throw err;
            }
          }
        }
        if (signal.aborted) return;
        throw new EtcdUnavailableError(`etcd watch stream from ${endpoint} ended`);
      } catch (err) {
        if (signal.aborted) return;
        if (handlerError || err instanceof CompactedError || err instanceof EtcdRequestError) throw err;
        if (this.closing.signal.aborted) throw new EtcdUnavailableError("etcd client closed", { cause: err });
        if (err instanceof EtcdUnavailableError) throw err;
        if (created)
          throw new EtcdUnavailableError(`etcd watch stream from ${endpoint} broke`, { cause: err });
        this.failed(index, describe(err), failures);
      } finally {
        clearTimeout(timer);
        attempt.abort(); // releases the connection whichever way the stream ended
      }
    }
    throw new EtcdUnavailableError(`cannot open an etcd watch on any endpoint (${failures.join("; ")})`);
  }

  /** Aborts in-flight requests and watches; later calls fail with EtcdUnavailableError. */
  close(): void {
    this.closing.abort();
    void this.dispatcher?.close();
  }

  /**
   * POSTs to each endpoint in turn until one answers. A request that might have reached etcd (timeout,
   * reset, "request timed out") is retried elsewhere only when it is idempotent: repeating a write could apply
   * it twice or report a compare-and-swap as lost although it won, so the caller gets "outcome unknown".
   */
  private async call<T>(
    path: string,
    body: object,
    schema: z.ZodType<T>,
    idempotent: boolean,
    leaseId?: string,
  ): Promise<T> {
    const failures: string[] = [];
    for (const index of this.endpointOrder()) {
      const endpoint = this.endpoints[index] ?? "";
      if (this.closing.signal.aborted) throw new EtcdUnavailableError("etcd client closed");
      let res: Response;
      let text: string;
      try {
        const timeout = AbortSignal.timeout(this.timeoutMs);
        const signal = AbortSignal.any([this.closing.signal, timeout]);
        res = await fetch(`${endpoint}${path}`, {
          method: "POST",
          headers: REQUEST_HEADERS,
          body: JSON.stringify(body),
          signal,
          dispatcher: this.dispatcher,
        });
        text = await res.text();
      } catch (err) {
        if (this.closing.signal.aborted) throw new EtcdUnavailableError("etcd client closed", { cause: err });
        this.failed(index, describe(err), failures);
        if (idempotent || neverSent(err)) continue;
        throw outcomeUnknown(path, failures, err);
      }
      if (!res.ok) {
        const failure = httpFailureFromText(res.status, text, leaseId);
        if (!failure.retryable) throw failure.error;
        this.failed(index, failure.error.message, failures);
        if (idempotent || failure.neverApplied) continue;
        throw outcomeUnknown(path, failures, failure.error);
      }
      this.preferred = index;
      return parse(schema, text, path);
    }
    throw new EtcdUnavailableError(`no etcd endpoint answered ${path} (${failures.join("; ")})`);
  }

  /** Records a failed attempt; a failing preferred endpoint loses its place so the next call starts elsewhere. */
  private failed(index: number, reason: string, failures: string[]): void {
    failures.push(`${this.endpoints[index]}: ${reason}`);
    if (index === this.preferred) this.preferred = (index + 1) % this.endpoints.length;
  }

  private endpointOrder(): number[] {
    return this.endpoints.map((_, i) => (this.preferred + i) % this.endpoints.length);
  }
}

/**
 * Splits a byte stream into JSON values, one per line: the gateway writes one compact JSON object per line,
 * but a network chunk may end mid-object or carry several objects.
 */
export class JsonLineSplitter {
  private readonly decoder = new TextDecoder();
  private buffered = "";

  push(chunk: Uint8Array): unknown[] {
    this.buffered += this.decoder.decode(chunk, { stream: true });
    const lines = this.buffered.split("\n");
    this.buffered = lines.pop() ?? "";
    return lines.filter((line) => line.trim() !== "").map((line) => JSON.parse(line) as unknown);
  }
}

// "hasleader" metadata (forwarded by the gateway) makes etcd refuse requests and cancel watches on a member
// that lost its leader, instead of serving stale reads or a watch that silently stops (etcd clientv3's
// WithRequireLeader).
const REQUEST_HEADERS = { "content-type": "application/json", "grpc-metadata-hasleader": "true" };

function outcomeUnknown(path: string, failures: string[], cause: unknown): EtcdUnavailableError {
  return new EtcdUnavailableError(`etcd ${path} failed, outcome unknown (${failures.join("; ")})`, { cause });
}

async function httpFailure(res: Response) {
  return httpFailureFromText(res.status, await res.text().catch(() => ""), undefined);
}

function httpFailureFromText(status: number, text: string, leaseId: string | undefined) {
  let body: z.infer<typeof errorBody> = {};
  try {
    body = errorBody.parse(JSON.parse(text));
  } catch {
    // not JSON: keep the raw text in the message below
  }
  const message = body.message ?? body.error ?? (text.trim() || `HTTP ${status}`);
  // 503/504 are gRPC Unavailable/DeadlineExceeded: no leader, member stopping, proposal timed out.
  if (status === 503 || status === 504) {
    const error = new EtcdUnavailableError(`etcd unavailable: ${message}`);
    // Refused before anything was proposed: no leader, or a membership change while the cluster is unhealthy.
    const neverApplied = message.includes("no leader") || message.includes("unhealthy cluster");
    return { retryable: true, neverApplied, error };
  }
  if (body.code === GRPC_NOT_FOUND && message.includes("lease not found")) {
    return { retryable: false, neverApplied: true, error: new LeaseNotFoundError(leaseId ?? "?") };
  }
  return {
    retryable: false,
    neverApplied: true,
    error: new EtcdRequestError(`etcd refused: ${message}`, body.code),
  };
}

/** True when the connection was never established, so the request cannot have reached etcd. */
function neverSent(err: unknown): boolean {
  const code = errorCode(err);
  return (
    code === "ECONNREFUSED" || code === "EHOSTUNREACH" || code === "ENETUNREACH" || code === "EADDRNOTAVAIL"
  );
}

function errorCode(err: unknown): string | undefined {
  const cause: unknown = err instanceof Error ? err.cause : undefined;
  if (cause && typeof cause === "object" && "code" in cause && typeof cause.code === "string")
    return cause.code;
  return undefined;
}

function describe(err: unknown): string {
  if (err instanceof Error && err.name === "TimeoutError") return "timed out";
  const code = errorCode(err);
  if (code) return code;
  return err instanceof Error ? err.message : String(err);
}

/** Validates a gateway answer (a JSON text, or a value already parsed from a stream line). */
function parse<T>(schema: z.ZodType<T>, json: unknown, path: string): T {
  let value = json;
  if (typeof json === "string") {
    try {
      value = JSON.parse(json);
    } catch {
      throw new EtcdRequestError(`etcd answered ${path} with non-JSON: ${json.slice(0, 200)}`, undefined);
    }
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw new EtcdRequestError(`unexpected etcd answer on ${path}: ${parsed.error.message}`, undefined);
  }
  return parsed.data;
}

function findLease(success: TxnOp[], failure: TxnOp[]): string | undefined {
  for (const op of [...success, ...failure]) if (op.type === "put" && op.lease) return op.lease;
  return undefined;
}

function toCompare(c: Compare): object {
  const field = {
    version: "version",
    create: "create_revision",
    mod: "mod_revision",
    value: "value",
    lease: "lease",
  }[c.target];
  const value = c.target === "value" ? b64(String(c.value)) : String(c.value);
  return { key: b64(c.key), target: c.target.toUpperCase(), result: c.result.toUpperCase(), [field]: value };
}

function toRequestOp(op: TxnOp): object {
  if (op.type === "put") return { request_put: { key: b64(op.key), value: b64(op.value), lease: op.lease } };
  const range = op.prefix ? prefixRange(op.key) : { key: b64(op.key) };
  return op.type === "get" ? { request_range: range } : { request_delete_range: range };
}

function toKeyValue(kv: z.infer<typeof rawKv>): KeyValue {
  return {
    key: unb64(kv.key),
    value: kv.value === undefined ? "" : unb64(kv.value),
    createRevision: num(kv.create_revision),
    modRevision: num(kv.mod_revision),
    version: num(kv.version),
    lease: String(kv.lease ?? "0"),
  };
}

function toWatchEvent(event: { type?: string | undefined; kv: z.infer<typeof rawKv> }): WatchEvent {
  // proto3 JSON omits enum zero values, so a missing type is PUT.
  const type = event.type === "DELETE" ? "delete" : "put";
  const kv = toKeyValue(event.kv);
  return { type, kv: type === "delete" ? { ...kv, value: "" } : kv };
}

/** {key, range_end} covering every key that starts with `prefix`. */
function prefixRange(prefix: string): { key: string; range_end: string } {
  // etcd's convention for "all keys": key "\0", range_end "\0".
  if (prefix === "")
    return { key: Buffer.from([0]).toString("base64"), range_end: Buffer.from([0]).toString("base64") };
  return { key: b64(prefix), range_end: prefixRangeEnd(Buffer.from(prefix, "utf8")).toString("base64") };
}

/** The smallest key greater than every key with this prefix: drop trailing 0xff bytes, increment the last. */
function prefixRangeEnd(prefix: Buffer): Buffer {
  for (let i = prefix.length - 1; i >= 0; i--) {
    const byte = prefix[i] ?? 0;
    if (byte < 0xff) {
      const end = Buffer.from(prefix.subarray(0, i + 1));
      end[i] = byte + 1;
      return end;
    }
  }
  return Buffer.from([0]); // all bytes 0xff: no upper bound
}

function b64(text: string): string {
  return Buffer.from(text, "utf8").toString("base64");
}

function unb64(text: string): string {
  return Buffer.from(text, "base64").toString("utf8");
}

const withoutTrailingSlash = (url: string) => url.replace(/\/+$/, "");

function toMember(raw: z.infer<typeof rawMember>): EtcdMember {
  return {
    id: String(raw.ID ?? "0"),
    name: raw.name ?? "",
    peerUrls: raw.peerURLs ?? [],
    clientUrls: raw.clientURLs ?? [],
    learner: raw.isLearner ?? false,
  };
}

function num(value: string | number | undefined): number {
  return value === undefined ? 0 : Number(value);
}
