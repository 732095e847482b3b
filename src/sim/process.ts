// A simulated havend process and its clock. Everything that resumes the shipped programs — a timer, an etcd
// answer, a watch, a QEMU that exits — goes through its process: dropped once the process is dead (its node
// powered off, or havend killed), held back while its node is frozen (SIGSTOP) and run in order on thaw.
import type { Clock } from "../lib/clock.js";
import type { Scheduler } from "./scheduler.js";

/** Simulated time 0 on the wall clock (events carry ISO times, as in etcd). */
export const EPOCH_MS = Date.UTC(2025, 0, 1);

/** What a process needs of its node. */
export interface ProcessHost {
  readonly scheduler: Scheduler;
  /** Runs `run` on `node` now, or when it is thawed; never if it has been powered off since boot `boot`. */
  onNode(node: string, boot: number, run: () => void): void;
}

export class SimProcess {
  alive = true;

  constructor(
    private readonly host: ProcessHost,
    readonly node: string,
    /** The node's boot this process belongs to. */
    readonly boot: number,
  ) {}

  /** Runs `run` in this process now (or when its node is thawed); never once it is dead. */
  run(run: () => void): void {
    if (!this.alive) return;
    this.host.onNode(this.node, this.boot, () => {
      if (this.alive) run();
    });
  }

  /** Runs `run` in this process after `delayMs` of simulated time. */
  after(delayMs: number, run: () => void): void {
    this.host.scheduler.after(delayMs, () => this.run(run));
  }
}

/** The Clock port on simulated time: what `Date.now()` and `setTimeout` are to havend. */
export class SimClock implements Clock {
  constructor(
    private readonly scheduler: Scheduler,
    private readonly process: SimProcess,
  ) {}

  now(): number {
    return EPOCH_MS + this.scheduler.now;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      const done = () => {
        signal?.removeEventListener("abort", done);
        resolve();
      };
      signal?.addEventListener("abort", done, { once: true });
      this.process.after(ms, done);
    });
  }
}
