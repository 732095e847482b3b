// In-memory hypervisor for unit tests of the agent: guests are records, crashes are method calls.
//
// Live migration is driven by the test: startIncoming records a paused target with a fake URI, migrate
// records the request and reports "active"; then the test decides the outcome with the hooks
//   completeMigration(source)  source reports completed and is paused (like QEMU's postmigrate)
//   arrive(target)             the target guest runs (isRunning true)
//   failMigration(vm, error)   that side reports failed with `error`; the source keeps running
//   setProgress(vm, fields)    any other progress (transferred bytes, status, ...)
// and crash(vm) for a QEMU that dies mid-way. cancelMigration reports "cancelled".
import type { GuestInfo } from "../../core/hardware.js";
import type {
  GuestLaunch,
  GuestProcess,
  Hypervisor,
  IncomingOptions,
  MigrationProgress,
  OutgoingMigration,
} from "./port.js";

export type FakeGuest = GuestProcess & {
  launch: GuestLaunch;
  /** False while a target waits for its migration and after a source completed one (paused). */
  running: boolean;
  /** Set for a migration target: how it was started and the URI it returned. */
  incoming?: IncomingOptions & { uri: string };
};

const idle: MigrationProgress = {
  status: "none",
  transferredBytes: 0,
  remainingBytes: 0,
  totalBytes: 0,
  mbps: 0,
};

export class FakeHypervisor implements Hypervisor {
  readonly guests = new Map<string, FakeGuest>();
  /** Every start() (a guest booted here); migration targets are in `incomingStarted`. */
  readonly started: GuestLaunch[] = [];
  readonly incomingStarted: GuestLaunch[] = [];
  /** Every announce() call (a guest announced from its new node). */
  readonly announced: string[] = [];
  /** Every migrate() call, in order. */
  readonly migrations: Array<{ vm: string } & OutgoingMigration> = [];
  private readonly progress = new Map<string, MigrationProgress>();
  private nextPid = 1000;
  private nextPort = 49152;
  private readonly listeners = new Set<(vm: string, generation: number) => void>();
  /** Set to make the next start (or startIncoming) fail with this message. */
  failNextStart: string | undefined;
  /** Set to make the next migrate fail with this message (QEMU refusing the command). */
  failNextMigrate: string | undefined;

  start(launch: GuestLaunch): Promise<GuestProcess> {
    return this.add(launch, undefined);
  }

  async startIncoming(
    launch: GuestLaunch,
    options: IncomingOptions,
  ): Promise<{ guest: GuestProcess; uri: string }> {
    const uri = `tcp:${options.listenHost}:${this.nextPort++}`;
    const guest = await this.add(launch, { ...options, uri });
    return { guest, uri };
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

  isRunning(vm: string): Promise<boolean> {
    return Promise.resolve(this.guests.get(vm)?.running ?? false);
  }

  /** What guestInfo() answers per VM (no agent: absent). */
  readonly guestInfos = new Map<string, GuestInfo>();
  /** Every reboot, reset and disk resize asked for, in order. */
  readonly actions: string[] = [];

  guestInfo(vm: string): Promise<GuestInfo | undefined> {
    return Promise.resolve(this.guests.has(vm) ? this.guestInfos.get(vm) : undefined);
  }

  reboot(vm: string): Promise<void> {
    if (!this.guestInfos.has(vm))
      return Promise.reject(new Error(`the guest agent of ${vm} does not answer`));
    return this.act(vm, "reboot");
  }

  reset(vm: string): Promise<void> {
    return this.act(vm, "reset");
  }

  resizeDisk(vm: string, index: number, sizeBytes: number): Promise<void> {
    return this.act(vm, `resize disk${index} ${sizeBytes}`);
  }

  private act(vm: string, what: string): Promise<void> {
    if (!this.guests.get(vm)?.running)
      return Promise.reject(new Error(`no running QEMU for ${vm} on this node`));
    this.actions.push(`${what} ${vm}`);
    return Promise.resolve();
  }

  announce(vm: string): Promise<void> {
    if (!this.guests.get(vm)?.running)
      return Promise.reject(new Error(`no running QEMU for ${vm} on this node`));
    this.announced.push(vm);
    return Promise.resolve();
  }

  migrate(vm: string, migration: OutgoingMigration): Promise<void> {
    if (!this.guests.has(vm)) return Promise.reject(new Error(`no QEMU for ${vm} on this node`));
    if (this.failNextMigrate) {
      const message = this.failNextMigrate;
      this.failNextMigrate = undefined;
      return Promise.reject(new Error(message));
    }
    this.migrations.push({ vm, ...migration });
    this.progress.set(vm, { ...idle, status: "active" });
    return Promise.resolve();
  }

  migrationProgress(vm: string): Promise<MigrationProgress> {
    if (!this.guests.has(vm)) return Promise.reject(new Error(`no QEMU for ${vm} on this node`));
    return Promise.resolve({ ...(this.progress.get(vm) ?? idle) });
  }

  cancelMigration(vm: string): Promise<void> {
    if (!this.guests.has(vm)) return Promise.reject(new Error(`no QEMU for ${vm} on this node`));
    this.setProgress(vm, { status: "cancelled" });
    return Promise.resolve();
  }

  // --- test hooks ---

  /** The source's migration completed: it reports so, and its guest is paused from now on. */
  completeMigration(vm: string, downtimeMs = 30): void {
    this.setProgress(vm, { status: "completed", remainingBytes: 0, downtimeMs, totalTimeMs: 1000 });
    const guest = this.guests.get(vm);
    if (guest) guest.running = false;
  }

  /** The migration failed on this side (the source keeps running). */
  failMigration(vm: string, error: string): void {
    this.setProgress(vm, { status: "failed", error });
  }

  /** The target's guest arrived and runs. */
  arrive(vm: string): void {
    const guest = this.guests.get(vm);
    if (!guest) throw new Error(`no fake guest ${vm}`);
    guest.running = true;
    this.setProgress(vm, { status: "completed" });
  }

  setProgress(vm: string, fields: Partial<MigrationProgress>): void {
    this.progress.set(vm, { ...(this.progress.get(vm) ?? idle), ...fields });
  }

  private add(launch: GuestLaunch, incoming: FakeGuest["incoming"]): Promise<GuestProcess> {
    if (this.guests.has(launch.vm)) return Promise.reject(new Error(`guest ${launch.vm} already runs`));
    if (this.failNextStart) {
      const message = this.failNextStart;
      this.failNextStart = undefined;
      return Promise.reject(new Error(message));
    }
    const guest: FakeGuest = {
      vm: launch.vm,
      generation: launch.generation,
      pid: this.nextPid++,
      accel: launch.accel,
      startedAt: "now",
      launch,
      running: incoming === undefined,
      ...(incoming ? { incoming } : {}),
    };
    this.guests.set(launch.vm, guest);
    (incoming ? this.incomingStarted : this.started).push(launch);
    return Promise.resolve(guest);
  }

  private exit(vm: string): void {
    const guest = this.guests.get(vm);
    if (!guest) return;
    this.guests.delete(vm);
    this.progress.delete(vm);
    for (const listener of this.listeners) listener(vm, guest.generation);
  }
}
