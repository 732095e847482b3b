// One node's view of its QEMUs, shaped like the Hypervisor port but with callbacks at simulated times
// instead of promises. The processes themselves live in Machines, so they outlive nothing but their node.
import type { VmSpec } from "../core/model.js";
import type { Proc } from "./machines.js";
import type { World } from "./world.js";

export interface GuestInfo {
  vm: string;
  generation: number;
  pid: number;
  startedAt: string;
}

/** QMP's query-migrate, as the agent reads it. */
export interface Progress {
  status: string;
  transferredBytes: number;
  remainingBytes: number;
  totalBytes: number;
  mbps: number;
  downtimeMs?: number;
  error?: string;
}

/** A paused QEMU (incoming, or a source after the handover) quits at once instead of powering down. */
const QUIT_MS = 50;

const info = (proc: Proc): GuestInfo => ({
  vm: proc.vm,
  generation: proc.generation,
  pid: proc.pid,
  startedAt: proc.startedAt,
});

export class SimHypervisor {
  private listener: ((vm: string, generation: number) => void) | undefined;

  constructor(
    private readonly world: World,
    private readonly node: string,
  ) {}

  list(): GuestInfo[] {
    return this.world.machines
      .all()
      .filter((proc) => proc.node === this.node)
      .map(info);
  }

  onExit(listener: (vm: string, generation: number) => void): void {
    this.listener = listener;
  }

  /** Machines reports a QEMU of this node gone. */
  exited(proc: Proc): void {
    this.listener?.(proc.vm, proc.generation);
  }

  start(spec: VmSpec, generation: number, done: (result: GuestInfo | Error) => void): void {
    this.world.nodeTask(this.node, this.world.timing(spec.name).startMs, () => {
      const failure = this.world.takeStartFailure(spec.name, this.node);
      if (failure !== undefined) return done(new Error(failure));
      if (this.world.machines.proc(this.node, spec.name))
        return done(new Error(`guest ${spec.name} already runs`));
      const images = spec.disks.map((disk) => disk.image);
      done(info(this.world.machines.spawn(this.node, spec.name, generation, images, "running")));
    });
  }

  startIncoming(
    spec: VmSpec,
    generation: number,
    done: (result: { guest: GuestInfo; uri: string } | Error) => void,
  ): void {
    this.world.nodeTask(this.node, this.world.timing(spec.name).incomingMs, () => {
      const failure = this.world.takeStartFailure(spec.name, this.node);
      if (failure !== undefined) return done(new Error(failure));
      if (this.world.machines.proc(this.node, spec.name))
        return done(new Error(`guest ${spec.name} already runs`));
      const images = spec.disks.map((disk) => disk.image);
      const proc = this.world.machines.spawn(this.node, spec.name, generation, images, "incoming");
      done({ guest: info(proc), uri: proc.uri! });
    });
  }

  /** Powers the guest down (or quits a paused QEMU); `done` once the process is gone. */
  stop(vm: string, done: () => void): void {
    const proc = this.world.machines.proc(this.node, vm);
    if (!proc) return done();
    const delay = proc.mode === "running" ? this.world.timing(vm).stopMs : QUIT_MS;
    this.world.nodeTask(this.node, delay, () => {
      this.world.machines.exit(proc, "quit");
      done();
    });
  }

  kill(vm: string, done: () => void): void {
    const proc = this.world.machines.proc(this.node, vm);
    if (proc) this.world.machines.exit(proc, "kill");
    done();
  }

  isRunning(vm: string): boolean {
    return this.world.machines.proc(this.node, vm)?.mode === "running";
  }

  migrate(vm: string, uri: string): Error | undefined {
    const proc = this.world.machines.proc(this.node, vm);
    if (!proc) return new Error(`no QEMU for ${vm} on this node`);
    const { migrateMs, downtimeMs } = this.world.timing(vm);
    return this.world.machines.startTransfer(proc, uri, migrateMs, downtimeMs);
  }

  migrationProgress(vm: string): Progress {
    const empty = { transferredBytes: 0, remainingBytes: 0, totalBytes: 0, mbps: 0 };
    const proc = this.world.machines.proc(this.node, vm);
    if (!proc) return { ...empty, status: "failed", error: `QEMU is gone: no QEMU for ${vm} on this node` };
    const transfer = proc.sending;
    if (!transfer) return { ...empty, status: "none" };
    return {
      ...empty,
      status: transfer.status,
      ...(transfer.status === "completed" ? { downtimeMs: transfer.downtimeMs } : {}),
      ...(transfer.error !== undefined ? { error: transfer.error } : {}),
    };
  }

  cancelMigration(vm: string): void {
    const transfer = this.world.machines.proc(this.node, vm)?.sending;
    if (transfer) this.world.machines.cancelTransfer(transfer);
  }
}
