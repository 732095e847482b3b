// The CLI's client of havend's HTTP API: tries the nodes in turn until one answers, and turns error
// replies back into Haven's semantic errors (so exit codes match the API's status codes).
import { errorCodeFromHttpStatus, HavenError, unavailable } from "../core/errors.js";

/** Reads give up quickly on a node that accepts connections but does not answer (a frozen node). */
const READ_TIMEOUT_MS = 5_000;
const WRITE_TIMEOUT_MS = 60_000;

export class ApiClient {
  constructor(
    private readonly endpoints: string[],
    private readonly token: string,
  ) {}

  get<T>(path: string): Promise<T> {
    return this.request<T>("GET", path);
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

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const failures: string[] = [];
    const order = this.endpoints.map((_, i) => this.endpoints[(this.preferred + i) % this.endpoints.length]!);
    for (const endpoint of order) {
      let response: Response;
      try {
        response = await fetch(endpoint + path, {
          method,
          headers: { authorization: `Bearer ${this.token}`, "content-type": "application/json" },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(method === "GET" ? READ_TIMEOUT_MS : WRITE_TIMEOUT_MS),
        });
      } catch (err) {
        failures.push(
          `${endpoint}: ${(err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message}`,
        );
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
}
