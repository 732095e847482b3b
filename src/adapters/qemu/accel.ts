// Decides between KVM and TCG by trying: /dev/kvm can exist and open fine while KVM guests still hang or
// abort (nested virtualisation, missing MSRs), so the only trustworthy test is booting the canary guest
// under KVM and waiting for its "probe ok" line. Caching the answer is the caller's job.
import { spawn } from "node:child_process";
import { open } from "node:fs/promises";
import type { Accelerator } from "./port.js";

export interface AcceleratorChoice {
  accel: Accelerator;
  reason: string;
}

export interface ProbeOptions {
  kernel: string;
  initrd: string;
  /** How long the KVM guest gets to print its probe line. Default 8000. */
  timeoutMs?: number;
  qemuBinary?: string;
  /** The KVM device to check first. Default /dev/kvm. */
  kvmDevice?: string;
  /** After SIGKILL, how long to wait for the hung QEMU to be reaped. Default 30000. */
  killWaitMs?: number;
}

const probeOkLine = "haven-guest: probe ok";

export async function probeAccelerator(opts: ProbeOptions): Promise<AcceleratorChoice> {
  const timeoutMs = opts.timeoutMs ?? 8000;
  const kvmDevice = opts.kvmDevice ?? "/dev/kvm";
  try {
    const handle = await open(kvmDevice, "r+");
    await handle.close();
  } catch (err) {
    return {
      accel: "tcg",
      reason: `${kvmDevice} is not usable (${(err as NodeJS.ErrnoException).code ?? String(err)})`,
    };
  }

  const started = Date.now();
  // Not daemonized: the probe QEMU is our child, so its exit is observed exactly, and the serial console on
  // stdout is read directly.
  const child = spawn(
    opts.qemuBinary ?? "qemu-system-x86_64",
    [
      ...["-machine", "q35", "-accel", "kvm", "-cpu", "host", "-m", "128", "-smp", "1"],
      ...["-nodefaults", "-no-user-config", "-display", "none"],
      ...["-kernel", opts.kernel, "-initrd", opts.initrd],
      ...["-append", "console=ttyS0 quiet haven.probe=1"],
      ...["-serial", "stdio"],
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  // "close" comes after "exit" once stdout/stderr are drained: wait for it before quoting stderr.
  const closed = new Promise<void>((resolve) => child.once("close", () => resolve()));
  const spawnFailed = new Promise<Error>((resolve) => child.once("error", resolve));
  let stdout = "";
  let stderr = "";
  let sawOk!: () => void;
  const ok = new Promise<void>((resolve) => (sawOk = resolve));
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    // Keep only a tail: enough to find the line across chunk boundaries.
    stdout = (stdout + chunk).slice(-4096);
    if (stdout.includes(probeOkLine)) sawOk();
  });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr = (stderr + chunk).slice(-2000)));

  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
  const outcome = await Promise.race([
    ok.then(() => "ok" as const),
    exited.then(() => "exited" as const),
    spawnFailed.then((err) => err),
    timedOut.then(() => "timeout" as const),
  ]);
  clearTimeout(timer);
  const elapsed = Date.now() - started;

  if (outcome instanceof Error)
    return { accel: "tcg", reason: `could not run QEMU for the KVM probe: ${outcome.message}` };
  if (outcome === "ok") {
    // The probe guest powers itself off; give it a moment, then make sure.
    await killAndReap(child.pid, exited, 5000, opts.killWaitMs ?? 30000);
    return { accel: "kvm", reason: `KVM guest booted in ${(elapsed / 1000).toFixed(1)} s` };
  }
  if (outcome === "exited") {
    const { code, signal } = await exited;
    await settlesWithin(closed, 1000);
    const how = signal !== null ? `signal ${signal}` : `code ${code}`;
    return {
      accel: "tcg",
      reason: `QEMU with KVM exited (${how}) before the guest booted: ${oneLine(stderr)}`,
    };
  }
  await killAndReap(child.pid, exited, 0, opts.killWaitMs ?? 30000);
  return { accel: "tcg", reason: `KVM guest did not boot within ${Math.round(timeoutMs / 1000)} s` };
}

/** Explicit settings win; "auto" asks the probe. */
export async function resolveAccelerator(
  setting: "auto" | "kvm" | "tcg",
  probe: () => Promise<AcceleratorChoice>,
): Promise<AcceleratorChoice> {
  if (setting === "auto") return probe();
  return { accel: setting, reason: `configured as ${setting}` };
}

// A KVM-hung QEMU can take a long time to die after SIGKILL (vCPU threads stuck in the kernel); the probe
// only returns once the process is reaped, so no hung QEMU outlives it unnoticed.
async function killAndReap(
  pid: number | undefined,
  exited: Promise<unknown>,
  graceMs: number,
  killWaitMs: number,
): Promise<void> {
  if (graceMs > 0 && (await settlesWithin(exited, graceMs))) return;
  if (pid !== undefined) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
  if (!(await settlesWithin(exited, killWaitMs))) {
    throw new Error(`KVM probe QEMU (pid ${pid}) did not die within ${killWaitMs} ms of SIGKILL`);
  }
}

async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const result = await Promise.race([
    promise.then(() => true),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms))),
  ]);
  clearTimeout(timer);
  return result;
}

function oneLine(text: string): string {
  return text.trim().split("\n").slice(-3).join(" | ") || "(no stderr)";
}
