// The Linux watchdog device (/dev/watchdog: a hardware timer or the softdog module). Once opened it must be
// written to within its timeout or the kernel resets the machine; writing "V" before closing disarms it
// (the "magic close"), so a clean havend stop does not reboot the node.
import { closeSync, openSync, writeSync } from "node:fs";
import { sleep } from "../../lib/async.js";

export class Watchdog {
  private fd: number | undefined;

  constructor(readonly device: string) {}

  /** Arms the watchdog; from now on the machine resets unless it is fed. */
  open(): void {
    try {
      this.fd = openSync(this.device, "w");
    } catch (err) {
      throw new Error(
        `cannot open watchdog ${this.device}: ${(err as Error).message} (load softdog or a hardware driver, or remove "watchdog" from the havend config)`,
      );
    }
  }

  feed(): void {
    if (this.fd !== undefined) writeSync(this.fd, "1");
  }

  /** Disarms and closes it: for a clean stop only. */
  close(): void {
    if (this.fd === undefined) return;
    writeSync(this.fd, "V");
    closeSync(this.fd);
    this.fd = undefined;
  }

  /** Feeds it every `intervalMs` while `mayFeed()` says so, until the signal aborts; then disarms it. */
  async run(mayFeed: () => boolean, intervalMs: number, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      if (mayFeed()) this.feed();
      await sleep(intervalMs, signal);
    }
    this.close();
  }
}
