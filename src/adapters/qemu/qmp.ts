// Haven's own QMP client: one unix-socket connection to one QEMU, one execute() with id-matched replies and
// timeouts, events fanned out to listeners, and an optional per-VM transcript (one JSON line per message) so
// an operator can read afterwards exactly what Haven asked QEMU and what QEMU answered.
import { appendFileSync } from "node:fs";
import { createConnection, type Socket } from "node:net";
import { z } from "zod";

/** QEMU answered a command with {"error": {class, desc}}. */
export class QmpError extends Error {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super(`QMP ${command} failed: ${errorClass}: ${desc}`);
    this.name = "QmpError";
  }
}

/** No reply within the command's timeout (the connection stays usable; a late reply is dropped). */
export class QmpTimeoutError extends Error {
  constructor(
    readonly command: string,
    readonly timeoutMs: number,
  ) {
    super(`QMP ${command} got no reply within ${timeoutMs} ms`);
    this.name = "QmpTimeoutError";
  }
}

/** The connection closed (usually: QEMU exited) before the reply arrived. */
export class QmpClosedError extends Error {
  constructor(readonly command: string) {
    super(`QMP connection closed before ${command} was answered`);
    this.name = "QmpClosedError";
  }
}

export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
  /** QEMU's own timestamp, in milliseconds since the epoch. */
  timeMs: number;
}

export interface QmpConnectOptions {
  /** Bound for the socket connect + greeting + qmp_capabilities. Default 5000. */
  timeoutMs?: number;
  /** Append every sent and received message here as one JSON line. */
  transcriptFile?: string;
}

export interface QmpStatus {
  running: boolean;
  status: string;
}

export interface QmpBlockDevice {
  device: string;
  qdev?: string;
  nodeName?: string;
  filename?: string;
  readOnly?: boolean;
}

const greetingSchema = z.object({
  QMP: z.object({ version: z.unknown(), capabilities: z.array(z.unknown()) }),
});
const returnSchema = z.object({ return: z.unknown(), id: z.string().optional() });
const errorSchema = z.object({
  error: z.object({ class: z.string(), desc: z.string() }),
  id: z.string().optional(),
});
const eventSchema = z.object({
  event: z.string(),
  data: z.record(z.string(), z.unknown()).optional(),
  timestamp: z.object({ seconds: z.number(), microseconds: z.number() }),
});
const statusSchema = z.object({ running: z.boolean(), status: z.string() });
const blockSchema = z.array(
  z.object({
    device: z.string(),
    qdev: z.string().optional(),
    inserted: z
      .object({ "node-name": z.string().optional(), file: z.string().optional(), ro: z.boolean().optional() })
      .optional(),
  }),
);

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export class QmpClient {
  /** Resolves once the socket has closed, for whatever reason (QEMU exit, close(), peer reset). */
  readonly closed: Promise<void>;
  private resolveClosed!: () => void;
  private isClosed = false;
  private nextId = 1;
  private buffer = "";
  private readonly pending = new Map<string, Pending>();
  private readonly listeners = new Set<(event: QmpEvent) => void>();
  private greeting: ((err?: Error) => void) | undefined;

  private constructor(
    private readonly socket: Socket,
    private readonly transcriptFile: string | undefined,
  ) {
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => this.onData(chunk));
    // An error is always followed by "close"; pending work is failed there.
    socket.on("error", () => undefined);
    socket.on("close", () => this.onClose());
  }

  /** Connects, waits for the greeting and leaves capabilities-negotiation mode. */
  static async connect(socketPath: string, options: QmpConnectOptions = {}): Promise<QmpClient> {
    const timeoutMs = options.timeoutMs ?? 5000;
    const socket = createConnection(socketPath);
    const client = new QmpClient(socket, options.transcriptFile);
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => finish(new Error(`QMP greeting from ${socketPath} timed out`)),
          timeoutMs,
        );
        const onError = (err: Error) => finish(err);
        const onClose = () => finish(new Error(`QMP socket ${socketPath} closed before the greeting`));
        function finish(err?: Error) {
          clearTimeout(timer);
          socket.off("error", onError);
          socket.off("close", onClose);
          client.greeting = undefined;
          if (err) reject(err);
          else resolve();
        }
        socket.once("error", onError);
        socket.once("close", onClose);
        client.greeting = finish;
      });
      await client.execute("qmp_capabilities", undefined, { timeoutMs });
      return client;
    } catch (err) {
      client.close();
      throw err;
    }
  }

  /** Runs one command; resolves with its "return" value, rejects with QmpError/QmpTimeoutError/QmpClosedError. */
  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    options: { timeoutMs?: number } = {},
  ) {
    const timeoutMs = options.timeoutMs ?? 5000;
    if (this.isClosed) return Promise.reject(new QmpClosedError(command));
    const id = `haven-${this.nextId++}`;
    const message = args === undefined ? { execute: command, id } : { execute: command, arguments: args, id };
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new QmpTimeoutError(command, timeoutMs));
      }, timeoutMs);
      this.pending.set(id, { command, resolve: (value) => resolve(value as T), reject, timer });
      this.record("send", message);
      this.socket.write(JSON.stringify(message) + "\n");
    });
  }

  /** Subscribes to asynchronous events (SHUTDOWN, STOP, RESUME, ...); returns the unsubscribe function. */
  onEvent(listener: (event: QmpEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Drops the connection; QEMU keeps running. */
  close(): void {
    this.socket.destroy();
  }

  async queryStatus(): Promise<QmpStatus> {
    const { running, status } = statusSchema.parse(await this.execute("query-status"));
    return { running, status };
  }

  async cont(): Promise<void> {
    await this.execute("cont");
  }

  async stop(): Promise<void> {
    await this.execute("stop");
  }

  /** Presses the virtual ACPI power button; the guest decides whether to power off. */
  async systemPowerdown(): Promise<void> {
    await this.execute("system_powerdown");
  }

  /** Asks QEMU to exit now. QEMU may close the socket before its reply arrives, which counts as success. */
  async quit(): Promise<void> {
    try {
      await this.execute("quit");
    } catch (err) {
      if (!(err instanceof QmpClosedError)) throw err;
    }
  }

  async queryBlock(): Promise<QmpBlockDevice[]> {
    return blockSchema.parse(await this.execute("query-block")).map((b) => ({
      device: b.device,
      qdev: b.qdev,
      nodeName: b.inserted?.["node-name"],
      filename: b.inserted?.file,
      readOnly: b.inserted?.ro,
    }));
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let newline: number;
    while ((newline = this.buffer.indexOf("\n")) >= 0) {
      const line = this.buffer.slice(0, newline).trim();
      this.buffer = this.buffer.slice(newline + 1);
      if (line !== "") this.onLine(line);
    }
  }

  private onLine(line: string): void {
    let message: unknown;
    try {
      message = JSON.parse(line);
    } catch {
      this.record("recv-unparsable", line);
      return;
    }
    this.record("recv", message);
    if (greetingSchema.safeParse(message).success) {
      this.greeting?.();
      return;
    }
    const ok = returnSchema.safeParse(message);
    if (ok.success) return this.settle(ok.data.id, (p) => p.resolve(ok.data.return));
    const failed = errorSchema.safeParse(message);
    if (failed.success) {
      const { class: errorClass, desc } = failed.data.error;
      return this.settle(failed.data.id, (p) => p.reject(new QmpError(p.command, errorClass, desc)));
    }
    const event = eventSchema.safeParse(message);
    if (event.success) {
      const { seconds, microseconds } = event.data.timestamp;
      const qmpEvent: QmpEvent = {
        event: event.data.event,
        data: event.data.data ?? {},
        timeMs: seconds * 1000 + Math.floor(microseconds / 1000),
      };
      for (const listener of [...this.listeners]) {
        try {
          listener(qmpEvent);
        } catch {
          // A faulty listener must not break the parser (and with it every later reply).
        }
      }
    }
  }

  private settle(id: string | undefined, action: (pending: Pending) => void): void {
    // Replies without a known id are late replies to timed-out commands: already recorded, nothing to do.
    const pending = id === undefined ? undefined : this.pending.get(id);
    if (!pending || id === undefined) return;
    this.pending.delete(id);
    clearTimeout(pending.timer);
    action(pending);
  }

  private onClose(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    for (const [id, pending] of this.pending) {
      this.pending.delete(id);
      clearTimeout(pending.timer);
      pending.reject(new QmpClosedError(pending.command));
    }
    this.record("closed", null);
    this.resolveClosed();
  }

  private record(direction: string, message: unknown): void {
    if (!this.transcriptFile) return;
    // Synchronous append: QMP traffic is a few messages per operation, and it keeps the lines in order even
    // when the process dies right after.
    try {
      appendFileSync(
        this.transcriptFile,
        JSON.stringify({ time: new Date().toISOString(), direction, message }) + "\n",
      );
    } catch {
      // The transcript is a diagnostic aid; failing to write it must not fail the command.
    }
  }
}
