// The CLI's client of havend's HTTP API: tries the nodes in turn until one answers, and turns error
// replies back into Haven's semantic errors (so exit codes match the API's status codes).
import { errorCodeFromHttpStatus, HavenError, unavailable } from "../core/errors.js";

export interface ApiTimeouts {
  /** Reads give up quickly on a node that accepts connections but does not answer (a frozen node). */
  readMs: number;
  writeMs: number;
}

const DEFAULT_TIMEOUTS: ApiTimeouts = { readMs: 5_000, writeMs: 60_000 };

export interface RequestOptions {
  /**
   * For an operation that may take long (reading a guest's disk): the node must first answer /healthz within
   * the read timeout, then the operation gets this long. A slow answer is then not taken for a dead node, and
   * the same slow work is not started again on every other node.
   */
  slowTimeoutMs?: number;
}

export class ApiClient {
  constructor(
    private readonly endpoints: string[],
    private readonly token: string,
    private readonly timeouts: ApiTimeouts = DEFAULT_TIMEOUTS,
  ) {}

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
    for (const endpoint of order) {
      if (options.slowTimeoutMs !== undefined) {
        const down = await this.unresponsive(endpoint);
        if (down) {
          failures.push(`${endpoint}: ${down}`);
          continue;
        }
      }
      let response: Response;
      try {
        response = await fetch(endpoint + path, {
          method,
          headers: { authorization: `Bearer ${this.token}`, "content-type": "application/json" },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(
            options.slowTimeoutMs ?? (method === "GET" ? this.timeouts.readMs : this.timeouts.writeMs),
          ),
        });
      } catch (err) {
        // A node that was alive but did not finish a slow operation in time: asking the next node to do the
        // same work would not help.
        if (options.slowTimeoutMs !== undefined && (err as Error).name === "TimeoutError")
          throw unavailable(
            `${endpoint} did not finish ${method} ${path} within ${options.slowTimeoutMs / 1000} s`,
          );
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

  /** Why `endpoint` cannot be asked (no answer to /healthz within the read timeout), or undefined if it can. */
  private async unresponsive(endpoint: string): Promise<string | undefined> {
    try {
      const response = await fetch(`${endpoint}/healthz`, {
        signal: AbortSignal.timeout(this.timeouts.readMs),
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
