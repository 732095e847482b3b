// The CLI's client of havend's HTTP API: tries the nodes in turn until one answers, and turns error
// replies back into Haven's semantic errors (so exit codes match the API's status codes).
//
// A node is asked first whether it is alive at all (/healthz, answered without any I/O): a frozen or
// unreachable node is skipped after `liveMs`. A live node then gets as long as the request needs, which for
// reads that shell out to Ceph's tools on a busy machine is many seconds. A request that a live node did not
// finish in time is not sent to another node: that would repeat the work (or a write) elsewhere.
import { errorCodeFromHttpStatus, HavenError, unavailable } from "../core/errors.js";
import { tlsDispatcher, type Dispatcher } from "../lib/tls.js";

export interface ApiTimeouts {
  /** How long a node may take to answer /healthz before the next node is tried. */
  liveMs: number;
  /** How long a live node may take for a request. */
  requestMs: number;
}

const DEFAULT_TIMEOUTS: ApiTimeouts = { liveMs: 5_000, requestMs: 120_000 };

export interface RequestOptions {
  /** A request known to take long (reading a guest's whole disk): overrides the request timeout. */
  timeoutMs?: number;
}

export class ApiClient {
  /** Trusts only the cluster CA (PEM) for the nodes' HTTPS endpoints. */
  private readonly dispatcher: Dispatcher | undefined;

  constructor(
    private readonly endpoints: string[],
    private readonly token: string,
    ca?: string,
    private readonly timeouts: ApiTimeouts = DEFAULT_TIMEOUTS,
  ) {
    this.dispatcher = ca === undefined ? undefined : tlsDispatcher({ ca });
  }

  get<T>(path: string, options: RequestOptions = {}): Promise<T> {
    return this.request<T>("GET", path, undefined, options);
  }

  post<T>(path: string, body: unknown = {}): Promise<T> {
    return this.request<T>("POST", path, body);
  }

  patch<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>("PATCH", path, body);
  }

  delete<T>(path: string): Promise<T> {
    return this.request<T>("DELETE", path);
  }

  /** The node that answered last is asked first next time. */
  private preferred = 0;

  async request<T>(method: string, path: string, body?: unknown, options: RequestOptions = {}): Promise<T> {
    const failures: string[] = [];
    const order = this.endpoints.map((_, i) => this.endpoints[(this.preferred + i) % this.endpoints.length]!);
    const timeoutMs = options.timeoutMs ?? this.timeouts.requestMs;
    for (const endpoint of order) {
      const down = await this.unresponsive(endpoint);
      if (down) {
        failures.push(`${endpoint}: ${down}`);
        continue;
      }
      let response: Response;
      try {
        response = await fetch(endpoint + path, {
          method,
          headers: { authorization: `Bearer ${this.token}`, "content-type": "application/json" },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(timeoutMs),
          dispatcher: this.dispatcher,
        });
      } catch (err) {
        if ((err as Error).name === "TimeoutError")
          throw unavailable(`${endpoint} did not finish ${method} ${path} within ${timeoutMs / 1000} s`);
        failures.push(`${endpoint}: ${failureOf(err)}`);
        continue;
      }
      const payload = (await response.json().catch(() => null)) as {
        error?: { code: string; message: string };
      } | null;
      this.preferred = this.endpoints.indexOf(endpoint);
      if (response.ok) return payload as T;
      const message = payload?.error?.message ?? `HTTP ${response.status}`;
      if (response.status === 401) throw new HavenError("INPUT", `API refused the token: ${message}`);
      const code = errorCodeFromHttpStatus(response.status);
      if (code === "UNAVAILABLE") {
        failures.push(`${endpoint}: ${message}`);
        continue;
      }
      if (code) throw new HavenError(code, message);
      throw new Error(`${method} ${path} failed: ${message}`);
    }
    throw unavailable(
      `no Haven node answered (${failures.join("; ")}); is the cluster up? ('haven cluster up')`,
    );
  }

  /** Why `endpoint` cannot be asked (no answer to /healthz in time), or undefined if it can. */
  private async unresponsive(endpoint: string): Promise<string | undefined> {
    try {
      const response = await fetch(`${endpoint}/healthz`, {
        signal: AbortSignal.timeout(this.timeouts.liveMs),
        dispatcher: this.dispatcher,
      });
      return response.ok ? undefined : `health check answered HTTP ${response.status}`;
    } catch (err) {
      return failureOf(err);
    }
  }
}

function failureOf(err: unknown): string {
  const cause = (err as Error).cause;
  return cause instanceof Error ? cause.message : (err as Error).message;
}
