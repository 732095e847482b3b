// The baseline for bench/migration.ts: raw QMP migrate between two bare QEMUs, with nothing of Haven in the
// loop (no agent, no etcd, no QemuHypervisor). The canary guest moves back and forth between side A and side
// B; each run starts a fresh `-incoming defer` QEMU on the side the guest is not on, migrates, and quits the
// paused source. totalMs runs from `migrate` being issued to query-migrate saying `completed`; downtimeMs is
// QEMU's own figure for the guest's pause. The QEMUs are configured exactly as Haven configures its guests
// (same argv builder, same QMP sequence), so the difference to Haven's numbers is Haven's overhead.
//
// Standalone: node dist/bench/migration-raw.js [--transport tls|tcp] [--runs N] [--memory MB] [--bandwidth B/s]
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { buildQemuArgs } from "../src/adapters/qemu/cmdline.js";
import {
  listenForIncoming,
  prepareOutgoingMigration,
  queryMigration,
} from "../src/adapters/qemu/migration.js";
import type { GuestLaunch, MigrationProgress } from "../src/adapters/qemu/port.js";
import { QmpClient } from "../src/adapters/qemu/qmp.js";
import { createClusterCa, issueNodeCredentials } from "../src/setup/pki.js";
import { highestAckInLog } from "../src/core/canary.js";
import { sleep, waitFor } from "../src/lib/async.js";
import { isAlive } from "../src/lib/process.js";
import { inNamespace } from "../src/lib/netns.js";

export interface RawMigrationOptions {
  transport: "tls" | "tcp";
  runs: number;
  memoryMb: number;
  /** tls-creds-x509 directories of side A (where the guest boots) and side B; default: a throwaway PKI. */
  tlsDirs?: { source: string; target: string };
  /** Migration addresses of side A and side B. Default 127.0.10.201 and 127.0.10.202. */
  addresses?: { source: string; target: string };
  /** The network namespaces (a local cluster's hosts) side A's and side B's QEMUs run in; default this one. */
  namespaces?: { source: string; target: string };
  /** Default 300 ms, Haven's default. */
  downtimeLimitMs?: number;
  /** Bytes per second; default QEMU's (128 MiB/s), as Haven without a limit. */
  maxBandwidthBytes?: number;
  /** Directory with vmlinuz and initramfs.img; default guest/build of this checkout. */
  guestDir?: string;
  qemuBinary?: string;
  /** Bound for one migration. Default 120 s. */
  runTimeoutMs?: number;
  log?: (line: string) => void;
}

export interface RawMigrationSample {
  run: number;
  /** Direction of this run. */
  from: "A" | "B";
  /** Wall time from `migrate` issued to `completed` seen. */
  totalMs: number;
  /** Wall time of the whole move: from starting the target QEMU to `completed` (what Haven's move includes). */
  moveMs: number;
  /** QEMU's reported downtime (guest paused). */
  downtimeMs: number;
  /** QEMU's own total-time. */
  qemuTotalMs: number;
  transferredBytes: number;
  mbps: number;
}

interface Side {
  name: "A" | "B";
  address: string;
  namespace: string | undefined;
  dir: string;
  tlsDir: string | undefined;
  qmp?: QmpClient;
  pid?: number;
}

const pollMs = 10;

export async function rawMigration(options: RawMigrationOptions): Promise<RawMigrationSample[]> {
  const log = options.log ?? (() => undefined);
  const work = await mkdtemp(join(tmpdir(), "haven-bench-raw-migration-"));
  const sides: Side[] = [];
  try {
    const tlsDirs =
      options.transport === "tls" ? (options.tlsDirs ?? (await throwawayPki(work, options))) : undefined;
    const addresses = options.addresses ?? { source: "127.0.10.201", target: "127.0.10.202" };
    sides.push(
      {
        name: "A",
        address: addresses.source,
        namespace: options.namespaces?.source,
        dir: join(work, "a"),
        tlsDir: tlsDirs?.source,
      },
      {
        name: "B",
        address: addresses.target,
        namespace: options.namespaces?.target,
        dir: join(work, "b"),
        tlsDir: tlsDirs?.target,
      },
    );
    const disk = join(work, "disk.img");
    await run("truncate", ["-s", "64M", disk]);
    const launch = guestLaunch(options, disk);
    let [from, to] = sides as [Side, Side];
    await startQemu(from, launch, options, false);
    await nextAck(from, 0);
    log(`guest up on side A (${options.memoryMb} MB, ${options.transport})`);

    const samples: RawMigrationSample[] = [];
    for (let run = 1; run <= options.runs; run++) {
      const begun = performance.now();
      await startQemu(to, launch, options, true);
      const sample = await migrateOnce(from, to, options, begun);
      samples.push({ run, ...sample });
      log(`run ${run} ${from.name}→${to.name}: ${sample.totalMs} ms, downtime ${sample.downtimeMs} ms`);
      await quitQemu(from);
      // The guest must really run on the new side before it moves again.
      await nextAck(to, await highestAck(from));
      [from, to] = [to, from];
    }
    return samples;
  } finally {
    await Promise.all(sides.map((side) => quitQemu(side, true)));
    await rm(work, { recursive: true, force: true });
  }
}

async function migrateOnce(
  from: Side,
  to: Side,
  options: RawMigrationOptions,
  begun: number,
): Promise<Omit<RawMigrationSample, "run">> {
  const uri = await listenForIncoming(to.qmp!, { listenHost: to.address, tls: to.tlsDir !== undefined });
  const migration = {
    uri,
    downtimeLimitMs: options.downtimeLimitMs ?? 300,
    maxBandwidthBytes: options.maxBandwidthBytes,
    tls: from.tlsDir === undefined ? undefined : { dir: from.tlsDir, hostname: to.address },
  };
  await prepareOutgoingMigration(from.qmp!, migration);
  const issued = performance.now();
  await from.qmp!.execute("migrate", { uri });
  const done = await waitFor<MigrationProgress>(
    `migration ${from.name}→${to.name}`,
    async () => {
      const progress = await queryMigration(from.qmp!);
      if (progress.status === "failed" || progress.status === "cancelled")
        throw new Error(`migration ${progress.status}: ${progress.error ?? "no error given"}`);
      return progress.status === "completed" ? progress : undefined;
    },
    options.runTimeoutMs ?? 120_000,
    pollMs,
  );
  return {
    from: from.name,
    totalMs: Math.round(performance.now() - issued),
    moveMs: Math.round(performance.now() - begun),
    downtimeMs: done.downtimeMs ?? Number.NaN,
    qemuTotalMs: done.totalTimeMs ?? Number.NaN,
    transferredBytes: done.transferredBytes,
    mbps: Math.round(done.mbps),
  };
}

function guestLaunch(options: RawMigrationOptions, disk: string): GuestLaunch {
  const guestDir = options.guestDir ?? findGuestDir();
  return {
    vm: "rawmig",
    generation: 1,
    memoryMb: options.memoryMb,
    vcpus: 1,
    kernel: join(guestDir, "vmlinuz"),
    initrd: join(guestDir, "initramfs.img"),
    append: "console=ttyS0 quiet",
    disks: [{ image: "rawmig", source: { driver: "file", filename: disk } }],
    accel: "tcg",
  };
}

function findGuestDir(): string {
  const candidates = [
    process.env.HAVEN_GUEST_DIR,
    join(import.meta.dirname, "../../guest/build"),
    join(process.cwd(), "guest/build"),
  ];
  const found = candidates.find((dir) => dir !== undefined && existsSync(join(dir, "vmlinuz")));
  if (!found) throw new Error("canary guest not found: run guest/build.sh or set HAVEN_GUEST_DIR");
  return found;
}

async function throwawayPki(work: string, options: RawMigrationOptions) {
  const ca = join(work, "pki", "ca");
  const addresses = options.addresses ?? { source: "127.0.10.201", target: "127.0.10.202" };
  await createClusterCa(ca, "bench");
  const source = (await issueNodeCredentials(ca, "side-a", [addresses.source], join(work, "pki", "a"))).dir;
  const target = (await issueNodeCredentials(ca, "side-b", [addresses.target], join(work, "pki", "b"))).dir;
  return { source, target };
}

/** Starts a daemonized QEMU for `side` (booting, or waiting for a migration) and connects QMP. */
async function startQemu(side: Side, launch: GuestLaunch, options: RawMigrationOptions, incoming: boolean) {
  await mkdir(side.dir, { recursive: true });
  const paths = {
    qmpSocket: join(side.dir, "qmp.sock"),
    consoleSocket: join(side.dir, "console.sock"),
    serialLog: join(side.dir, "serial.log"),
    pidFile: join(side.dir, "qemu.pid"),
    guestAgentSocket: join(side.dir, "qga.sock"),
  };
  const mode = incoming ? { incoming: { tlsDir: side.tlsDir } } : {};
  const [program, ...args] = inNamespace(side.namespace, [
    options.qemuBinary ?? "qemu-system-x86_64",
    ...buildQemuArgs(launch, paths, mode),
  ]);
  await run(program!, args);
  side.pid = Number((await readFile(paths.pidFile, "utf8")).trim());
  side.qmp = await QmpClient.connect(paths.qmpSocket);
  // A booting QEMU waits paused (-S) until it is told to run.
  if (!incoming) await side.qmp.cont();
}

/** Quits the QEMU of `side` (SIGKILL when `force` or when quit does not end it) and waits until it is gone. */
async function quitQemu(side: Side, force = false): Promise<void> {
  const pid = side.pid;
  if (!force) await side.qmp?.quit().catch(() => undefined);
  side.qmp?.close();
  side.qmp = undefined;
  side.pid = undefined;
  if (pid === undefined) return;
  for (let waited = 0; isAlive(pid) && waited < 5000; waited += 20) await sleep(20);
  if (isAlive(pid)) process.kill(pid, "SIGKILL");
  while (isAlive(pid)) await sleep(20);
}

async function highestAck(side: Side): Promise<number> {
  const text = await readFile(join(side.dir, "serial.log"), "latin1").catch(() => "");
  return highestAckInLog(text);
}

async function nextAck(side: Side, after: number): Promise<number> {
  return waitFor(
    `a canary ack after ${after} on side ${side.name}`,
    async () => {
      const seq = await highestAck(side);
      return seq > after ? seq : undefined;
    },
    90_000,
    50,
  );
}

/** Runs a command to completion; rejects with its stderr. (QEMU with -daemonize returns once initialised.) */
function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.once("error", reject);
    child.once("close", (code) =>
      code === 0 ? resolve() : reject(new Error(`${command} failed (${code}): ${stderr.trim()}`)),
    );
  });
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] ?? Number.NaN)
    : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      transport: { type: "string", default: "tls" },
      runs: { type: "string", default: "5" },
      memory: { type: "string", default: "128" },
      /** Bytes per second; default QEMU's. */
      bandwidth: { type: "string" },
    },
  });
  const transport = values.transport === "tcp" ? "tcp" : "tls";
  const samples = await rawMigration({
    transport,
    runs: Number(values.runs),
    memoryMb: Number(values.memory),
    maxBandwidthBytes: values.bandwidth === undefined ? undefined : Number(values.bandwidth),
    log: (line) => console.error(line),
  });
  console.log(JSON.stringify(samples));
  console.log(
    `raw ${transport} migration, ${values.memory} MB, ${samples.length} runs: median total ` +
      `${median(samples.map((s) => s.totalMs))} ms, median downtime ${median(samples.map((s) => s.downtimeMs))} ms`,
  );
}
