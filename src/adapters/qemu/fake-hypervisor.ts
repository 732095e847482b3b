// In-memory hypervisor for unit tests of the agent: guests are records, crashes are method calls.
import type { GuestLaunch, GuestProcess, Hypervisor } from "./port.js";

export class FakeHypervisor implements Hypervisor {
  readonly guests = new Map<string, GuestProcess & { launch: GuestLaunch }>();
  readonly started: GuestLaunch[] = [];
  private nextPid = 1000;
  private readonly listeners = new Set<(vm: string, generation: number) => void>();
  /** Set to make the next start fail with this message. */
  failNextStart: string | undefined;

  start(launch: GuestLaunch): Promise<GuestProcess> {
    if (this.guests.has(launch.vm)) return Promise.reject(new Error(`guest ${launch.vm} already runs`));
    if (this.failNextStart) {
      const message = this.failNextStart;
      this.failNextStart = undefined;
      return Promise.reject(new Error(message));
    }
    const guest = {
      vm: launch.vm,
      generation: launch.generation,
      pid: this.nextPid++,
      accel: launch.accel,
      startedAt: "now",
      launch,
    };
    this.guests.set(launch.vm, guest);
    this.started.push(launch);
    return Promise.resolve(guest);
  }

  list(): Promise<GuestProcess[]> {
    return Promise.resolve([...this.guests.values()]);
  }

  stop(vm: string): Promise<void> {
    this.exit(vm);
    return Promise.resolve();
  }

  kill(vm: string): Promise<void> {
    this.exit(vm);
    return Promise.resolve();
  }

  /** Simulates QEMU dying on its own. */
  crash(vm: string): void {
    this.exit(vm);
  }

  onExit(listener: (vm: string, generation: number) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  consolePaths(vm: string) {
    return { socket: `/fake/${vm}/console.sock`, log: `/fake/${vm}/serial.log` };
  }

  private exit(vm: string): void {
    const guest = this.guests.get(vm);
    if (!guest) return;
    this.guests.delete(vm);
    for (const listener of this.listeners) listener(vm, guest.generation);
  }
}
