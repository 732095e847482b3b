// The simulated machines below Haven: QEMU processes on every node, live-migration streams between them, and
// the shared RBD storage with its watchers, exclusive locks and blocklist (and the canary guests' records,
// canary.ts). A QEMU's RBD client address is `10.0.0.<node index>:0/<pid>`, so a fence in the log names the
// process it cut off.
import { CanaryDisks, type LostWrite } from "./canary.js";

/** running: the guest runs and writes; incoming: a migration target, paused with inactive disks; postmigrate:
 * a source after the handover, paused for good. */
export type ProcMode = "running" | "incoming" | "postmigrate";
/** quit: an orderly exit (disks closed, lock released); kill/crash: the process died; power: the node died. */
export type ExitHow = "quit" | "kill" | "crash" | "power";

export interface Proc {
  vm: string;
  node: string;
  generation: number;
  pid: number;
  client: string;
  images: string[];
  mode: ProcMode;
  alive: boolean;
  startedAt: string;
  /** Simulated ms it was spawned at. */
  spawnedAt: number;
  /** Incoming QEMUs: where they listen. */
  uri?: string;
  /** The migration stream this QEMU sends (source) or receives (target). */
  sending?: Transfer;
  receiving?: Transfer;
  /** A canary guest: the sequence number it writes next. */
  canary?: { next: number };
}

export interface Transfer {
  source: Proc;
  target: Proc;
  remainingMs: number;
  status: "active" | "completed" | "failed" | "cancelled";
  error?: string;
  downtimeMs?: number;
}

export interface MachinesEnv {
  now(): number;
  wall(): number;
  at(time: number, run: () => void): void;
  nodeIndex(node: string): number;
  /** Whether a node can move migration data now (powered, not frozen, not cut off). */
  canStream(node: string): boolean;
  /** Whether a node's processes run now (powered, not frozen). */
  canRun(node: string): boolean;
  /** A canary's acknowledged record was overwritten. */
  lostWrite(lost: LostWrite): void;
  /** A QEMU exited; its node's agent hears of it. */
  exited(proc: Proc, how: ExitHow): void;
}

/** How often a migration stream makes progress, and how long QEMU waits to exit when its stream breaks. */
const STREAM_TICK_MS = 100;
const BROKEN_STREAM_EXIT_MS = 100;
/** A canary guest writes and acknowledges one record this often. */
const CANARY_WRITE_MS = 1000;
export const CONNECTION_RESET = "Unable to write to socket: Connection reset by peer";

export class Machines {
  private readonly procs = new Map<string, Map<string, Proc>>();
  readonly blocklist = new Set<string>();
  private readonly locks = new Map<string, Proc>();
  /** Set: storage fencing fails with this message. */
  fenceError: string | undefined;
  readonly canaries: CanaryDisks;
  /** Per VM: the next migration streams that break, and with which message. */
  private readonly streamFailures = new Map<string, { left: number; message: string }>();
  private nextPid = 1000;
  private nextPort = 49152;

  constructor(private readonly env: MachinesEnv) {
    this.canaries = new CanaryDisks((lost) => env.lostWrite(lost));
  }

  proc(node: string, vm: string): Proc | undefined {
    return this.procs.get(node)?.get(vm);
  }

  /** Every live QEMU, oldest first. */
  all(): Proc[] {
    return [...this.procs.values()].flatMap((byVm) => [...byVm.values()]).sort((a, b) => a.pid - b.pid);
  }

  spawn(
    node: string,
    vm: string,
    generation: number,
    images: string[],
    mode: ProcMode,
    canary = false,
  ): Proc {
    const pid = this.nextPid++;
    const proc: Proc = {
      vm,
      node,
      generation,
      pid,
      client: `10.0.0.${this.env.nodeIndex(node)}:0/${pid}`,
      images,
      mode,
      alive: true,
      startedAt: new Date(this.env.wall()).toISOString(),
      spawnedAt: this.env.now(),
    };
    if (mode === "incoming") proc.uri = `tcp:10.0.0.${this.env.nodeIndex(node)}:${this.nextPort++}`;
    let byVm = this.procs.get(node);
    if (!byVm) this.procs.set(node, (byVm = new Map<string, Proc>()));
    byVm.set(vm, proc);
    if (mode === "running") this.takeLocks(proc);
    // A booting canary resumes after the highest record on disk; a migration target from the source's memory.
    if (canary && mode === "running") this.runCanary(proc, this.canaries.highest(vm) + 1);
    if (canary && mode === "incoming") proc.canary = { next: 0 };
    return proc;
  }

  private runCanary(proc: Proc, next: number): void {
    proc.canary = { next };
    const write = () => {
      if (!proc.alive || proc.mode !== "running") return;
      // A frozen QEMU writes nothing (it resumes where it was); a blocklisted one gets EIO.
      if (this.env.canRun(proc.node) && this.isWriter(proc)) {
        this.canaries.write(proc.node, proc.vm, proc.canary!.next, proc.pid);
        proc.canary!.next++;
      }
      this.env.at(this.env.now() + CANARY_WRITE_MS, write);
    };
    this.env.at(this.env.now() + CANARY_WRITE_MS, write);
  }

  exit(proc: Proc, how: ExitHow): void {
    if (!proc.alive) return;
    proc.alive = false;
    this.procs.get(proc.node)?.delete(proc.vm);
    // An orderly exit closes the images and releases the exclusive lock; a dead client keeps holding it.
    if (how === "quit")
      for (const image of proc.images) if (this.locks.get(image) === proc) this.locks.delete(image);
    const sending = proc.sending?.status === "active" ? proc.sending : undefined;
    const receiving = proc.receiving?.status === "active" ? proc.receiving : undefined;
    // A process that dies on a live node closes its sockets (the peer sees a reset); a dead node sends nothing,
    // so its peer's stream just stalls.
    if (how !== "power") {
      if (sending) this.breakStream(sending.target);
      if (receiving) {
        receiving.status = "failed";
        receiving.error = CONNECTION_RESET;
      }
    }
    this.env.exited(proc, how);
  }

  powerOff(node: string): void {
    for (const proc of [...(this.procs.get(node)?.values() ?? [])]) this.exit(proc, "power");
  }

  /** Whether the QEMU can write to shared storage now (or, if frozen, the moment it is thawed). */
  isWriter(proc: Proc): boolean {
    return (
      proc.alive && proc.mode === "running" && proc.images.length > 0 && !this.blocklist.has(proc.client)
    );
  }

  // --- storage ---
  /** `rbd status`: the clients that have the image open (a blocklisted client's watch is dropped). */
  watchers(image: string): string[] {
    return this.all()
      .filter((proc) => proc.images.includes(image) && !this.blocklist.has(proc.client))
      .map((proc) => proc.client)
      .sort();
  }

  /** Blocklists every watcher and the lock holder (dead or alive), then breaks the lock: RbdStorage.fence. */
  fence(image: string): string[] {
    if (this.fenceError !== undefined) throw new Error(this.fenceError);
    const holder = this.locks.get(image);
    const addresses = [...new Set([...this.watchers(image), ...(holder ? [holder.client] : [])])].sort();
    for (const address of addresses) this.blocklist.add(address);
    this.locks.delete(image);
    return addresses;
  }

  unfence(addresses: string[]): void {
    for (const address of addresses) this.blocklist.delete(address);
  }

  private takeLocks(proc: Proc): void {
    for (const image of proc.images) this.locks.set(image, proc);
  }

  // --- live migration streams ---
  /** The source QEMU starts sending to the incoming QEMU listening on `uri`. */
  startTransfer(source: Proc, uri: string, durationMs: number, downtimeMs: number): Error | undefined {
    const target = this.all().find((proc) => proc.uri === uri && proc.mode === "incoming");
    if (!target) return new Error(`${uri}: Connection refused`);
    const transfer: Transfer = { source, target, remainingMs: durationMs, status: "active", downtimeMs };
    source.sending = transfer;
    target.receiving = transfer;
    const failure = this.streamFailures.get(source.vm);
    if (failure && failure.left > 0) {
      failure.left--;
      this.env.at(this.env.now() + STREAM_TICK_MS, () => this.failTransfer(transfer, failure.message));
    }
    this.env.at(this.env.now() + STREAM_TICK_MS, () => this.tick(transfer));
    return undefined;
  }

  /** The next `times` migration streams of `vm` break with `message` as soon as they start. */
  failNextTransfers(vm: string, times: number, message: string): void {
    if (times > 0) this.streamFailures.set(vm, { left: times, message });
  }

  /** The stream breaks (network, TLS, QEMU error): the source reports `error`, the target QEMU exits. */
  failTransfer(transfer: Transfer, error: string): void {
    if (transfer.status !== "active") return;
    transfer.status = "failed";
    transfer.error = error;
    this.breakStream(transfer.target);
  }

  /** `migrate_cancel` on the source: it keeps running; the target QEMU sees its stream end and exits. */
  cancelTransfer(transfer: Transfer): void {
    if (transfer.status !== "active") return;
    transfer.status = "cancelled";
    this.breakStream(transfer.target);
  }

  private breakStream(target: Proc): void {
    this.env.at(this.env.now() + BROKEN_STREAM_EXIT_MS, () => {
      if (target.alive && target.mode === "incoming") this.exit(target, "crash");
    });
  }

  private tick(transfer: Transfer): void {
    if (transfer.status !== "active") return;
    const { source, target } = transfer;
    // A dead end (its node died, see exit) leaves the stream hanging for good.
    if (!source.alive || !target.alive) return;
    if (this.env.canStream(source.node) && this.env.canStream(target.node))
      transfer.remainingMs -= STREAM_TICK_MS;
    if (transfer.remainingMs > 0) {
      this.env.at(this.env.now() + STREAM_TICK_MS, () => this.tick(transfer));
      return;
    }
    // The handover: the source pauses and hands the lock over in the same instant the target starts running.
    transfer.status = "completed";
    source.mode = "postmigrate";
    target.mode = "running";
    this.takeLocks(target);
    if (source.canary && target.canary) this.runCanary(target, source.canary.next);
  }
}
