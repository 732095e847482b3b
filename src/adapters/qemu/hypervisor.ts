// The real Hypervisor: daemonized QEMU per VM under <runDir>/<vm>/, supervised through QMP and /proc.
// QEMU outlives the agent on purpose; a new agent finds it again through the pidfile (list()).
// A migration target is a guest like any other (listed, supervised, reported to onExit) whose QEMU starts with
// `-incoming defer`; the QMP side of migrations lives in migration.ts.
import { spawn } from "node:child_process";
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import type { GuestInfo } from "../../core/hardware.js";
import { LinuxHostNetwork } from "../network/linux.js";
import { guestShutdown, readGuestInfo } from "./guest-agent.js";
import type { HostNetwork } from "../network/port.js";
import { resolve } from "node:path";
import { z } from "zod";
import { pollUntil, sleep } from "../../lib/async.js";
import { buildQemuArgs } from "./cmdline.js";
import {
  argAfter,
  guestFiles,
  isExitingQemu,
  ourQemuArgv,
  readPid,
  removeRuntimeFiles,
  signal,
  writeRbdKeys,
  type GuestFiles,
} from "./guest-files.js";
import {
  cancelMigration,
  listenForIncoming,
  queryMigration,
  startOutgoingMigration,
  uriHost,
} from "./migration.js";
import type {
  Accelerator,
  GuestLaunch,
  GuestProcess,
  Hypervisor,
  IncomingOptions,
  MigrationProgress,
  OutgoingMigration,
} from "./port.js";
import { QmpClient } from "./qmp.js";

export interface QemuHypervisorOptions {
  /** Node state dir for guests; one subdirectory per VM. */
  runDir: string;
  qemuBinary?: string;
  /** Plugs guests' taps into bridges; default: this Linux host's. */
  network?: HostNetwork;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
}

/** Generation reported for a live QEMU whose launch.json is missing or belongs to an older QEMU. */
export const unknownGeneration = -1;

const pollMs = 500;
const fastPollMs = 50;
const daemonizeTimeoutMs = 30_000;
const qmpStartTimeoutMs = 10_000;
const killTimeoutMs = 30_000;
const quitGraceMs = 3000;

// VM names become directory names and QEMU option values: no separators, no commas, no leading dot.
const vmNamePattern = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

const launchFileSchema = z.object({
  launch: z.object({ generation: z.number().int(), accel: z.enum(["kvm", "tcg"]) }),
  startedAt: z.string(),
  pid: z.number().int(),
});

interface Guest {
  info: GuestProcess;
  files: GuestFiles;
  qmp: QmpClient | undefined;
  poll: NodeJS.Timeout;
  exited: boolean;
}

export class QemuHypervisor implements Hypervisor {
  private readonly runDir: string;
  private readonly qemuBinary: string;
  private readonly network: HostNetwork;
  private readonly log: (msg: string, fields?: Record<string, unknown>) => void;
  private readonly guests = new Map<string, Guest>();
  private readonly starting = new Set<string>();
  private readonly exitListeners = new Set<(vm: string, generation: number) => void>();
  private isClosed = false;

  constructor(options: QemuHypervisorOptions) {
    // Absolute: QEMU chdirs to / when it daemonizes, and /proc cmdline comparisons need one spelling.
    this.runDir = resolve(options.runDir);
    this.qemuBinary = options.qemuBinary ?? "qemu-system-x86_64";
    this.network = options.network ?? new LinuxHostNetwork();
    this.log = options.log ?? (() => undefined);
  }

  async start(launch: GuestLaunch): Promise<GuestProcess> {
    return (await this.startExclusive(launch)).info;
  }

  /**
   * Starts QEMU paused in `inmigrate`. Does not wait for the guest to run: it runs once the migration has
   * completed (isRunning). If the migration fails, QEMU 7.2 either exits (onExit fires) or, when only the TLS
   * handshake failed, stays paused and listening forever: the caller kills it in both cases.
   */
  async startIncoming(
    launch: GuestLaunch,
    options: IncomingOptions,
  ): Promise<{ guest: GuestProcess; uri: string }> {
    uriHost(options.listenHost); // a bad address fails here, before a QEMU is started for nothing
    const { info, uri } = await this.startExclusive(launch, options);
    if (uri === undefined) throw new Error(`incoming QEMU for ${launch.vm} reported no URI`);
    return { guest: info, uri };
  }

  async isRunning(vm: string): Promise<boolean> {
    const guest = await this.guestFor(checkVmName(vm));
    if (!guest) return false;
    const qmp = await this.requireQmp(guest);
    return (await qmp.queryStatus()).running;
  }

  async migrate(vm: string, migration: OutgoingMigration): Promise<void> {
    const qmp = await this.qmpOfRunning(vm);
    // Absolute: QEMU's working directory is / once daemonized.
    const tls = migration.tls && { ...migration.tls, dir: resolve(migration.tls.dir) };
    await startOutgoingMigration(qmp, { ...migration, tls });
    this.log("migration started", { vm, uri: migration.uri, tls: tls !== undefined });
  }

  async guestInfo(vm: string): Promise<GuestInfo | undefined> {
    const guest = await this.guestFor(checkVmName(vm));
    return guest ? readGuestInfo(guest.files.guestAgentSocket) : undefined;
  }

  async reboot(vm: string): Promise<void> {
    const guest = await this.guestFor(checkVmName(vm));
    if (!guest) throw new Error(`no QEMU for ${vm} on this node`);
    await guestShutdown(guest.files.guestAgentSocket, "reboot").catch((err: unknown) => {
      throw new Error(
        `the guest agent of ${vm} does not answer (${(err as Error).message}): a graceful reboot needs qemu-guest-agent in the guest; 'haven vm reset' resets it hard`,
      );
    });
  }

  async reset(vm: string): Promise<void> {
    await (await this.qmpOfRunning(vm)).execute("system_reset");
  }

  async resizeDisk(vm: string, index: number, sizeBytes: number): Promise<void> {
    await (
      await this.qmpOfRunning(vm)
    ).execute("block_resize", { "node-name": `disk${index}`, size: sizeBytes });
  }

  async announce(vm: string): Promise<void> {
    // Five rounds of gratuitous ARP/RARP from every NIC, 50 ms apart at first: switches learn the new port at
    // once, and a lost packet is repeated.
    await (
      await this.qmpOfRunning(vm)
    ).execute("announce-self", { initial: 50, max: 550, rounds: 5, step: 100 });
  }

  async migrationProgress(vm: string): Promise<MigrationProgress> {
    return queryMigration(await this.qmpOfRunning(vm));
  }

  async cancelMigration(vm: string): Promise<void> {
    await cancelMigration(await this.qmpOfRunning(vm));
    this.log("migration cancelled", { vm });
  }

  async list(): Promise<GuestProcess[]> {
    this.checkOpen();
    let names: string[];
    try {
      names = (await readdir(this.runDir, { withFileTypes: true }))
        .filter((e) => e.isDirectory())
        .map((e) => e.name);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw err;
    }
    const found: GuestProcess[] = [];
    for (const vm of names.filter((name) => vmNamePattern.test(name))) {
      if (this.starting.has(vm)) continue;
      const guest = await this.guestFor(vm);
      if (guest) found.push({ ...guest.info });
    }
    return found;
  }

  async stop(vm: string, graceMs: number): Promise<void> {
    const guest = await this.guestFor(checkVmName(vm));
    if (!guest) return;
    const qmp = await this.qmpFor(guest);
    if (!(await isPaused(qmp))) {
      try {
        if (!qmp) throw new Error("no QMP connection");
        await qmp.systemPowerdown();
      } catch (err) {
        this.log("system_powerdown failed", { vm, error: String(err) });
      }
      if (await this.waitGone(guest, graceMs)) return;
      this.log("guest did not power down in time, quitting QEMU", { vm, graceMs });
    }
    try {
      if (!qmp) throw new Error("no QMP connection");
      await qmp.quit();
    } catch {
      // SIGTERM is QEMU's other orderly exit: it flushes and closes its block devices like quit does.
      signal(guest.info.pid, "SIGTERM");
    }
    if (await this.waitGone(guest, quitGraceMs)) return;
    this.log("QEMU did not quit in time, killing it", { vm, pid: guest.info.pid });
    await this.killGuest(guest);
  }

  async kill(vm: string): Promise<void> {
    const guest = await this.guestFor(checkVmName(vm));
    if (guest) await this.killGuest(guest);
  }

  onExit(listener: (vm: string, generation: number) => void): () => void {
    this.exitListeners.add(listener);
    return () => this.exitListeners.delete(listener);
  }

  consolePaths(vm: string): { socket: string; log: string } {
    const files = guestFiles(this.runDir, checkVmName(vm));
    return { socket: files.consoleSocket, log: files.serialLog };
  }

  /** Drops QMP connections and timers WITHOUT stopping guests (agent shutdown); a later list() re-attaches. */
  close(): void {
    this.isClosed = true;
    for (const guest of this.guests.values()) {
      clearInterval(guest.poll);
      guest.qmp?.close();
    }
    this.guests.clear();
  }

  /** One start at a time per VM; `incoming` makes it a migration target. */
  private async startExclusive(
    launch: GuestLaunch,
    incoming?: IncomingOptions,
  ): Promise<{ info: GuestProcess; uri?: string }> {
    const vm = checkVmName(launch.vm);
    this.checkOpen();
    if (this.starting.has(vm)) throw new Error(`QEMU for ${vm} is already being started`);
    this.starting.add(vm);
    try {
      return await this.startUnlocked(launch, incoming);
    } finally {
      this.starting.delete(vm);
    }
  }

  private async startUnlocked(
    launch: GuestLaunch,
    incoming?: IncomingOptions,
  ): Promise<{ info: GuestProcess; uri?: string }> {
    const vm = launch.vm;
    const files = guestFiles(this.runDir, vm);
    if (await this.guestFor(vm)) throw new Error(`QEMU for ${vm} is already running`);
    await mkdir(files.dir, { recursive: true });
    removeRuntimeFiles(files);
    // The console log belongs to one QEMU: what an earlier QEMU of this VM printed here (an earlier
    // generation, or a deleted VM of the same name) must not pass for this one's output.
    await rename(files.serialLog, `${files.serialLog}.1`).catch(() => undefined);

    const startedAt = new Date().toISOString();
    const begun = Date.now();
    let pid: number | undefined;
    let qmp: QmpClient | undefined;
    let keyFiles: string[] = [];
    try {
      keyFiles = await writeRbdKeys(launch, files.dir);
      const tlsDir = incoming?.tls && resolve(incoming.tls.dir);
      const mode = incoming ? { incoming: { tlsDir } } : {};
      const args = buildQemuArgs(launch, { ...files, secretDir: files.dir }, mode);
      await this.runDaemonizing(args);
      pid = await readPid(files.pidFile);
      if (pid === undefined) throw new Error(`QEMU for ${vm} started but wrote no pidfile`);
      if (!(await ourQemuArgv(pid, vm, files.pidFile)))
        throw new Error(`QEMU for ${vm} exited right after start`);
      qmp = await connectQmp(files, qmpStartTimeoutMs);
      // The guest waits (-S, or for its migration) until its network cards are in their bridges.
      for (const nic of launch.nics ?? []) await this.network.plug(nic.tap, nic.bridge, nic.vlan);
      let uri: string | undefined;
      if (incoming) {
        uri = await listenForIncoming(qmp, { listenHost: incoming.listenHost, tls: tlsDir !== undefined });
      } else {
        await qmp.cont();
        const status = await qmp.queryStatus();
        if (!status.running)
          throw new Error(`guest ${vm} is not running after start (QMP status ${status.status})`);
      }
      await writeFile(files.launchFile, JSON.stringify({ launch, startedAt, pid }, null, 2) + "\n");
      const info: GuestProcess = { vm, generation: launch.generation, pid, accel: launch.accel, startedAt };
      this.supervise(info, files, qmp);
      this.log(incoming ? "incoming guest listening" : "guest started", {
        vm,
        pid,
        generation: launch.generation,
        accel: launch.accel,
        ms: Date.now() - begun,
        ...(uri !== undefined ? { uri, tls: tlsDir !== undefined } : {}),
      });
      return { info: { ...info }, uri };
    } catch (err) {
      // Rollback: no stray QEMU and no pidfile may survive a failed start (one writer per disk).
      qmp?.close();
      const victim = pid ?? (await readPid(files.pidFile));
      if (victim !== undefined && (await ourQemuArgv(victim, vm, files.pidFile))) {
        signal(victim, "SIGKILL");
        const dead = await pollUntil(
          async () => !(await ourQemuArgv(victim, vm, files.pidFile)),
          killTimeoutMs,
        );
        if (!dead) this.log("QEMU survived SIGKILL after a failed start", { vm, pid: victim });
      }
      removeRuntimeFiles(files);
      this.log("guest start failed", { vm, error: String(err) });
      throw err;
    } finally {
      // QEMU reads its secrets once while starting; they need not stay on disk.
      await Promise.all(keyFiles.map((path) => rm(path, { force: true })));
    }
  }

  /** Runs QEMU until its -daemonize parent exits, i.e. until the daemon is initialised or has failed. */
  private runDaemonizing(args: string[]): Promise<void> {
    return new Promise((resolvePromise, reject) => {
      const child = spawn(this.qemuBinary, args, { stdio: ["ignore", "ignore", "pipe"] });
      let stderr = "";
      child.stderr
        .setEncoding("utf8")
        .on("data", (chunk: string) => (stderr = (stderr + chunk).slice(-4000)));
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        reject(new Error(`QEMU did not finish starting within ${daemonizeTimeoutMs} ms: ${stderr.trim()}`));
      }, daemonizeTimeoutMs);
      child.once("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      // "close" (not "exit"): stderr is complete then. The daemon points its stderr at /dev/null before
      // releasing the parent, so the pipe does close.
      child.once("close", (code, sig) => {
        clearTimeout(timer);
        if (code === 0) resolvePromise();
        else
          reject(
            new Error(
              `QEMU failed to start (${sig ?? `exit code ${code}`}): ${stderr.trim() || "no stderr"}`,
            ),
          );
      });
    });
  }

  private supervise(info: GuestProcess, files: GuestFiles, qmp: QmpClient | undefined): Guest {
    const guest: Guest = {
      info,
      files,
      qmp: undefined,
      exited: false,
      // The poll is the source of truth (QMP may be unavailable); QMP closing only makes us look sooner.
      poll: setInterval(() => void this.checkAlive(guest), pollMs),
    };
    this.guests.set(info.vm, guest);
    if (qmp) this.attachQmp(guest, qmp);
    return guest;
  }

  private attachQmp(guest: Guest, qmp: QmpClient): void {
    guest.qmp = qmp;
    qmp.onEvent((event) =>
      this.log("qmp event", { vm: guest.info.vm, event: event.event, data: event.data }),
    );
    void qmp.closed.then(() => {
      if (guest.qmp === qmp) guest.qmp = undefined;
      if (guest.exited || this.isClosed) return;
      return this.waitGone(guest, 5000).then(() => undefined);
    });
  }

  private async checkAlive(guest: Guest): Promise<boolean> {
    if (guest.exited) return false;
    const { pid, vm } = guest.info;
    const alive = (await ourQemuArgv(pid, vm, guest.files.pidFile)) !== undefined || isExitingQemu(pid);
    if (!alive) this.handleExit(guest);
    return alive;
  }

  /** True once the guest's QEMU is gone (exit handled), false if still alive after `ms`. */
  private async waitGone(guest: Guest, ms: number): Promise<boolean> {
    return pollUntil(async () => !(await this.checkAlive(guest)), ms);
  }

  private async killGuest(guest: Guest): Promise<void> {
    if (!(await this.checkAlive(guest))) return;
    signal(guest.info.pid, "SIGKILL");
    if (!(await this.waitGone(guest, killTimeoutMs))) {
      throw new Error(
        `QEMU for ${guest.info.vm} (pid ${guest.info.pid}) still alive ${killTimeoutMs} ms after SIGKILL`,
      );
    }
  }

  private handleExit(guest: Guest): void {
    if (guest.exited || this.isClosed) return;
    guest.exited = true;
    clearInterval(guest.poll);
    guest.qmp?.close();
    const { vm, pid, generation } = guest.info;
    if (this.guests.get(vm) === guest) this.guests.delete(vm);
    try {
      if (!this.starting.has(vm)) removeRuntimeFiles(guest.files, pid);
    } catch (err) {
      this.log("could not clean up after guest exit", { vm, error: String(err) });
    }
    this.log("guest exited", { vm, pid, generation });
    for (const listener of [...this.exitListeners]) {
      try {
        listener(vm, generation);
      } catch (err) {
        this.log("exit listener failed", { vm, error: String(err) });
      }
    }
  }

  /** The supervised guest for `vm`, re-attaching to a live QEMU found through its pidfile; else undefined. */
  private async guestFor(vm: string): Promise<Guest | undefined> {
    const known = this.guests.get(vm);
    if (known) return (await this.checkAlive(known)) ? known : undefined;
    const files = guestFiles(this.runDir, vm);
    const pid = await readPid(files.pidFile);
    const argv = pid === undefined ? undefined : await ourQemuArgv(pid, vm, files.pidFile);
    if (pid === undefined || argv === undefined) {
      if (pid !== undefined && !this.starting.has(vm)) removeRuntimeFiles(files, pid);
      return undefined;
    }
    const info = await this.describe(vm, pid, argv, files);
    const raced = this.guests.get(vm);
    if (raced) return raced;
    const guest = this.supervise(info, files, undefined);
    this.log("re-attached to running guest", { vm, pid, generation: info.generation });
    try {
      const qmp = await connectQmp(files, 3000);
      if (guest.exited || this.isClosed) qmp.close();
      else this.attachQmp(guest, qmp);
    } catch (err) {
      // Still supervised through /proc; stop() falls back to signals.
      this.log("re-attached without QMP", { vm, error: String(err) });
    }
    return guest;
  }

  private async describe(vm: string, pid: number, argv: string[], files: GuestFiles): Promise<GuestProcess> {
    const accel: Accelerator = argAfter(argv, "-accel") === "kvm" ? "kvm" : "tcg";
    try {
      const saved = launchFileSchema.parse(JSON.parse(await readFile(files.launchFile, "utf8")));
      if (saved.pid === pid)
        return { vm, pid, generation: saved.launch.generation, accel, startedAt: saved.startedAt };
    } catch {
      // Missing or unreadable: fall through.
    }
    // A live QEMU without its launch record (the agent died mid-start) must still be visible, or it would be
    // an unsupervised writer; an unknown generation never matches a placement, so the agent stops it.
    const startedAt = (await stat(files.pidFile)).mtime.toISOString();
    return { vm, pid, generation: unknownGeneration, accel, startedAt };
  }

  private async qmpFor(guest: Guest): Promise<QmpClient | undefined> {
    if (guest.qmp) return guest.qmp;
    try {
      const qmp = await connectQmp(guest.files, 2000);
      if (guest.exited) {
        qmp.close();
        return undefined;
      }
      this.attachQmp(guest, qmp);
      return qmp;
    } catch {
      return undefined;
    }
  }

  /** QMP of a live guest, or a clear error (migration commands need both). */
  private async qmpOfRunning(vm: string): Promise<QmpClient> {
    const guest = await this.guestFor(checkVmName(vm));
    if (!guest) throw new Error(`no QEMU for ${vm} on this node`);
    return this.requireQmp(guest);
  }

  private async requireQmp(guest: Guest): Promise<QmpClient> {
    const qmp = await this.qmpFor(guest);
    if (!qmp) throw new Error(`QMP of ${guest.info.vm} (pid ${guest.info.pid}) is not reachable`);
    return qmp;
  }

  private checkOpen(): void {
    if (this.isClosed) throw new Error("QemuHypervisor is closed");
  }
}

function checkVmName(vm: string): string {
  if (!vmNamePattern.test(vm)) throw new Error(`invalid VM name for the hypervisor: ${JSON.stringify(vm)}`);
  return vm;
}

/**
 * A paused guest (postmigrate after a migration, inmigrate on a target, or stopped) cannot see the ACPI power
 * button, so stop() quits it at once instead of waiting graceMs for nothing.
 */
async function isPaused(qmp: QmpClient | undefined): Promise<boolean> {
  if (!qmp) return false;
  try {
    return !(await qmp.queryStatus()).running;
  } catch {
    return false;
  }
}

/** Connects to QMP, retrying while the socket does not exist yet or another client holds it. */
async function connectQmp(files: GuestFiles, timeoutMs: number): Promise<QmpClient> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const remaining = deadline - Date.now();
    try {
      return await QmpClient.connect(files.qmpSocket, {
        timeoutMs: Math.max(100, Math.min(remaining, 3000)),
        transcriptFile: files.transcript,
      });
    } catch (err) {
      if (Date.now() + fastPollMs >= deadline) throw err;
      await sleep(fastPollMs);
    }
  }
}
