// The Hypervisor port of one simulated havend process, over the QEMU processes of Machines. A QEMU starts,
// powers down or quits after its VM's simulated times, on its node (a frozen node finishes later, a dead one
// never); the answer reaches havend through its process, so a havend killed meanwhile never hears it, and
// the QEMU it started is found again by the next havend's list().
import type {
  GuestLaunch,
  GuestProcess,
  Hypervisor,
  IncomingOptions,
  MigrationProgress,
  OutgoingMigration,
} from "../adapters/qemu/port.js";
import type { Proc } from "./machines.js";
import type { SimProcess } from "./process.js";
import type { World } from "./world.js";

/** A paused QEMU (incoming, or a source after the handover) quits at once instead of powering down. */
const QUIT_MS = 50;

const guestOf = (proc: Proc): GuestProcess => ({
  vm: proc.vm,
  generation: proc.generation,
  pid: proc.pid,
  accel: "tcg",
  startedAt: proc.startedAt,
});

const idle = { transferredBytes: 0, remainingBytes: 0, totalBytes: 0, mbps: 0 };

export class SimHypervisor implements Hypervisor {
  private readonly listeners = new Set<(vm: string, generation: number) => void>();

  constructor(
    private readonly world: World,
    private readonly process: SimProcess,
  ) {}

  private get node(): string {
    return this.process.node;
  }

  /** Machines reports a QEMU of this node gone (called in this process). */
  exited(proc: Proc): void {
    for (const listener of this.listeners) listener(proc.vm, proc.generation);
  }

  /** Runs `act` on the node after `delayMs`, and hands its outcome to havend. */
  private onNode<T>(delayMs: number, act: () => T | Error): Promise<T> {
    return new Promise((resolve, reject) =>
      this.world.nodeTask(
        this.node,
        delayMs,
        () => {
          const result = act();
          this.process.run(() => (result instanceof Error ? reject(result) : resolve(result)));
        },
        this.process.boot,
      ),
    );
  }

  private spawn(launch: GuestLaunch, mode: "running" | "incoming"): Proc | Error {
    const failure = this.world.takeStartFailure(launch.vm, this.node);
    if (failure !== undefined) return new Error(failure);
    if (this.world.machines.proc(this.node, launch.vm)) return new Error(`guest ${launch.vm} already runs`);
    const images = launch.disks.map((disk) => disk.image);
    const canary = this.world.isCanary(launch.vm);
    return this.world.machines.spawn(this.node, launch.vm, launch.generation, images, mode, canary);
  }

  start(launch: GuestLaunch): Promise<GuestProcess> {
    return this.onNode(this.world.timing(launch.vm).startMs, () => {
      const proc = this.spawn(launch, "running");
      return proc instanceof Error ? proc : guestOf(proc);
    });
  }

  startIncoming(
    launch: GuestLaunch,
    _options: IncomingOptions,
  ): Promise<{ guest: GuestProcess; uri: string }> {
    return this.onNode(this.world.timing(launch.vm).incomingMs, () => {
      const proc = this.spawn(launch, "incoming");
      return proc instanceof Error ? proc : { guest: guestOf(proc), uri: proc.uri! };
    });
  }

  list(): Promise<GuestProcess[]> {
    const procs = this.world.machines.all().filter((proc) => proc.node === this.node);
    return Promise.resolve(procs.map(guestOf));
  }

  /** Powers the guest down (or quits a paused QEMU); an injected failure leaves it running. */
  stop(vm: string): Promise<void> {
    const proc = this.world.machines.proc(this.node, vm);
    if (!proc) return Promise.resolve();
    const delay = proc.mode === "running" ? this.world.timing(vm).stopMs : QUIT_MS;
    return this.onNode(delay, () => {
      const failure = this.world.takeStopFailure(vm, this.node);
      if (failure !== undefined) return new Error(failure);
      this.world.machines.exit(proc, "quit");
    });
  }

  kill(vm: string): Promise<void> {
    const proc = this.world.machines.proc(this.node, vm);
    if (proc) this.world.machines.exit(proc, "kill");
    return Promise.resolve();
  }

  onExit(listener: (vm: string, generation: number) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  consolePaths(vm: string): { socket: string; log: string } {
    return { socket: `/sim/${this.node}/${vm}/console.sock`, log: `/sim/${this.node}/${vm}/serial.log` };
  }

  /** Simulated guests run no guest agent. */
  guestInfo(): Promise<undefined> {
    return Promise.resolve(undefined);
  }

  reboot(vm: string): Promise<void> {
    return Promise.reject(new Error(`the guest agent of ${vm} does not answer`));
  }

  reset(): Promise<void> {
    return Promise.resolve();
  }

  resizeDisk(): Promise<void> {
    return Promise.resolve();
  }

  announce(): Promise<void> {
    return Promise.resolve();
  }

  isRunning(vm: string): Promise<boolean> {
    return Promise.resolve(this.world.machines.proc(this.node, vm)?.mode === "running");
  }

  migrate(vm: string, migration: OutgoingMigration): Promise<void> {
    const proc = this.world.machines.proc(this.node, vm);
    if (!proc) return Promise.reject(new Error(`no QEMU for ${vm} on this node`));
    const { migrateMs, downtimeMs } = this.world.timing(vm);
    const refused = this.world.machines.startTransfer(proc, migration.uri, migrateMs, downtimeMs);
    return refused ? Promise.reject(refused) : Promise.resolve();
  }

  migrationProgress(vm: string): Promise<MigrationProgress> {
    const proc = this.world.machines.proc(this.node, vm);
    if (!proc) return Promise.reject(new Error(`no QEMU for ${vm} on this node`));
    const transfer = proc.sending;
    if (!transfer) return Promise.resolve({ ...idle, status: "none" });
    return Promise.resolve({
      ...idle,
      status: transfer.status,
      ...(transfer.status === "completed" ? { downtimeMs: transfer.downtimeMs } : {}),
      ...(transfer.error !== undefined ? { error: transfer.error } : {}),
    });
  }

  cancelMigration(vm: string): Promise<void> {
    const transfer = this.world.machines.proc(this.node, vm)?.sending;
    if (transfer) this.world.machines.cancelTransfer(transfer);
    return Promise.resolve();
  }
}
