// Real QEMU (TCG) under QemuHypervisor: start, console log, re-attach from a new instance, exit detection,
// stop, kill, failed start, and the KVM probe. Every QEMU started here has the temp dir in its argv, so the
// leak check at the end can find any survivor.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { probeAccelerator } from "../../src/adapters/qemu/accel.js";
import { QemuHypervisor } from "../../src/adapters/qemu/hypervisor.js";
import type { GuestLaunch } from "../../src/adapters/qemu/port.js";
import { sleep, waitFor } from "../../src/lib/async.js";
import { SUITE_TIMEOUT } from "./harness.js";

const root = mkdtempSync(join(tmpdir(), "haven-test-qemu-"));
const runDir = join(root, "guests");
const guest = pickGuest();
const hypervisors: QemuHypervisor[] = [];

/**
 * The canary guest if it has been built (guest/build, or $HAVEN_GUEST_DIR), else the Debian cloud kernel
 * and initrd (which print to the serial console and drop to a shell: enough for start/stop/kill).
 */
function pickGuest(): { kernel: string; initrd: string; canary: boolean } {
  const built = process.env.HAVEN_GUEST_DIR ?? join(import.meta.dirname, "../../../guest/build");
  if (existsSync(join(built, "vmlinuz")) && existsSync(join(built, "initramfs.img"))) {
    return { kernel: join(built, "vmlinuz"), initrd: join(built, "initramfs.img"), canary: true };
  }
  const version = readdirSync("/boot")
    .filter((name) => /^vmlinuz-.*-cloud-amd64$/.test(name))
    .sort()
    .at(-1);
  assert.ok(version, "no /boot/vmlinuz-*-cloud-amd64 to boot");
  const suffix = version.slice("vmlinuz-".length);
  return { kernel: `/boot/${version}`, initrd: `/boot/initrd.img-${suffix}`, canary: false };
}

function hypervisor(): QemuHypervisor {
  const h = new QemuHypervisor({ runDir });
  hypervisors.push(h);
  return h;
}

function launch(vm: string, generation: number, overrides: Partial<GuestLaunch> = {}): GuestLaunch {
  const disk = join(root, `${vm}.img`);
  if (!existsSync(disk)) writeFileSync(disk, Buffer.alloc(16 * 1024 * 1024));
  return {
    vm,
    generation,
    memoryMb: 256,
    vcpus: 1,
    kernel: guest.kernel,
    initrd: guest.initrd,
    append: "console=ttyS0 quiet",
    disks: [{ image: `${vm}-root`, source: { driver: "file", filename: disk } }],
    accel: "tcg",
    ...overrides,
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z ");
  } catch {
    return false;
  }
}

/** Pids of processes whose command line mentions `pattern` (pgrep exits 1 when there are none). */
function pgrep(pattern: string): number[] {
  try {
    return execFileSync("pgrep", ["-f", pattern], { encoding: "utf8" }).trim().split("\n").map(Number);
  } catch {
    return [];
  }
}

after(async () => {
  for (const h of hypervisors) h.close();
  const sweeper = new QemuHypervisor({ runDir });
  for (const g of await sweeper.list()) await sweeper.kill(g.vm);
  sweeper.close();
  const leaked = pgrep(root);
  for (const pid of leaked) process.kill(pid, "SIGKILL");
  rmSync(root, { recursive: true, force: true });
  assert.deepEqual(leaked, [], "QEMU processes left behind");
  assert.deepEqual(pgrep("haven.probe=1"), [], "KVM probe QEMU left behind");
});

void describe("QemuHypervisor with real QEMU (TCG)", SUITE_TIMEOUT, () => {
  const vm = "canary1";
  let firstPid = 0;
  const h1 = hypervisor();

  void it("starts a guest whose console reaches serial.log", async (t) => {
    const began = Date.now();
    const started = await h1.start(launch(vm, 1));
    t.diagnostic(
      `start() took ${Date.now() - began} ms (pid ${started.pid}, ${guest.canary ? "canary" : "cloud"} guest)`,
    );
    firstPid = started.pid;
    assert.equal(started.vm, vm);
    assert.equal(started.generation, 1);
    assert.equal(started.accel, "tcg");
    assert.ok(alive(started.pid));
    const dir = join(runDir, vm);
    assert.equal(readFileSync(join(dir, "qemu.pid"), "utf8").trim(), String(started.pid));
    assert.equal(
      (JSON.parse(readFileSync(join(dir, "launch.json"), "utf8")) as { pid: number }).pid,
      started.pid,
    );
    assert.match(readFileSync(join(dir, "qmp.log"), "utf8"), /query-status/);
    const { socket, log } = h1.consolePaths(vm);
    assert.ok(statSync(socket).isSocket());
    const marker = guest.canary ? "haven-guest: up" : "BusyBox";
    const bootStart = Date.now();
    await waitFor(
      "the guest's console output in serial.log",
      () => (statSync(log).size > 0 ? true : undefined),
      60_000,
    );
    t.diagnostic(`first serial bytes ${Date.now() - bootStart} ms after start() returned`);
    await waitFor(
      `"${marker}" in serial.log`,
      () => (readFileSync(log, "utf8").includes(marker) ? true : undefined),
      90_000,
    );
    t.diagnostic(`"${marker}" ${Date.now() - bootStart} ms after start() returned`);
    await assert.rejects(h1.start(launch(vm, 1)), /already running/);
  });

  void it("is re-attached by a new instance through list()", async () => {
    h1.close(); // the agent "restarts"; QEMU keeps running
    const h2 = hypervisor();
    const listed = await h2.list();
    assert.deepEqual(
      listed.map((g) => [g.vm, g.pid, g.generation, g.accel]),
      [[vm, firstPid, 1, "tcg"]],
    );
    assert.ok(alive(firstPid));
    h2.close();
  });

  void it("reports an external kill -9 through onExit once", async (t) => {
    const h3 = hypervisor();
    assert.equal((await h3.list()).length, 1);
    const exits: Array<[string, number]> = [];
    h3.onExit((name, generation) => exits.push([name, generation]));
    const killedAt = Date.now();
    process.kill(firstPid, "SIGKILL");
    await waitFor("onExit", () => (exits.length > 0 ? true : undefined), 60_000, 20);
    t.diagnostic(`kill -9 noticed after ${Date.now() - killedAt} ms`);
    await sleep(700);
    assert.deepEqual(exits, [[vm, 1]]);
    const dir = join(runDir, vm);
    assert.ok(!existsSync(join(dir, "qemu.pid")), "pidfile removed");
    assert.ok(!existsSync(join(dir, "qmp.sock")), "QMP socket removed");
    assert.ok(existsSync(join(dir, "serial.log")), "serial.log kept");
    assert.ok(existsSync(join(dir, "qmp.log")), "qmp.log kept");
    assert.deepEqual(await h3.list(), []);
    h3.close();
  });

  void it("stop() ends the guest within grace + quit", async (t) => {
    const h = hypervisor();
    const exits: number[] = [];
    h.onExit((_vm, generation) => exits.push(generation));
    const started = await h.start(launch(vm, 2));
    const began = Date.now();
    await h.stop(vm, 1000);
    t.diagnostic(`stop() took ${Date.now() - began} ms`);
    assert.ok(!alive(started.pid));
    assert.deepEqual(exits, [2]);
    assert.deepEqual(await h.list(), []);
    await h.stop(vm, 1000); // stopping a stopped guest is a no-op
    h.close();
  });

  void it("kill() ends the guest at once", async () => {
    const h = hypervisor();
    const started = await h.start(launch("canary2", 7));
    await h.kill("canary2");
    assert.ok(!alive(started.pid));
    assert.ok(!existsSync(join(runDir, "canary2", "qemu.pid")));
    h.close();
  });

  void it("ends QEMU when the guest powers off", async (t) => {
    if (!guest.canary) return t.skip("needs the canary guest (guest/build.sh)");
    const h = hypervisor();
    const exits: string[] = [];
    h.onExit((name) => exits.push(name));
    // haven.probe=1 makes the canary power off right after boot; without -no-shutdown QEMU must exit.
    await h.start(launch("canary3", 1, { append: "console=ttyS0 quiet haven.probe=1" }));
    await waitFor("onExit after guest poweroff", () => (exits.length > 0 ? true : undefined), 60_000, 50);
    assert.deepEqual(exits, ["canary3"]);
    assert.match(readFileSync(join(runDir, "canary3", "qmp.log"), "utf8"), /"SHUTDOWN"/);
    h.close();
  });

  void it("a failed start leaves no process and no pidfile", async () => {
    const h = hypervisor();
    const broken = launch("broken", 1, { kernel: join(root, "no-such-vmlinuz") });
    await assert.rejects(h.start(broken), /QEMU failed to start.*could not (load|open) kernel/s);
    assert.ok(!existsSync(join(runDir, "broken", "qemu.pid")));
    assert.deepEqual(pgrep(join(runDir, "broken")), []);
    assert.deepEqual(await h.list(), []);
    h.close();
  });
});

/**
 * A stand-in qemu-system-x86_64: rewrites the probe's argv with the shell `case` patterns in `rewrite`, then
 * execs QEMU with `extra` appended.
 */
function qemuWrapper(name: string, rewrite: string, extra = ""): string {
  const path = join(root, name);
  const script = [
    "#!/bin/sh",
    'for arg in "$@"; do shift; case "$arg" in ' + rewrite + ' esac; set -- "$@" "$arg"; done',
    `exec qemu-system-x86_64 "$@" ${extra}`,
  ];
  writeFileSync(path, script.join("\n") + "\n", { mode: 0o755 });
  return path;
}

// The probe's cases, each on every machine whatever its /dev/kvm: a stand-in KVM device (a plain file opens
// like a usable one) and a QEMU wrapper that runs the "KVM" guest under TCG, so what the guest does is set by
// the test and not by the host.
void describe("probeAccelerator", () => {
  const usableKvmDevice = join(root, "kvm-device");
  writeFileSync(usableKvmDevice, "");
  const underTcg = "kvm) arg=tcg ;; host) arg=max ;;";

  void it("settles on TCG without starting QEMU when there is no KVM device", async () => {
    const choice = await probeAccelerator({
      kernel: guest.kernel,
      initrd: guest.initrd,
      kvmDevice: join(root, "no-such-kvm"),
      qemuBinary: join(root, "no-such-qemu"),
    });
    assert.deepEqual(choice, { accel: "tcg", reason: `${join(root, "no-such-kvm")} is not usable (ENOENT)` });
  });

  void it("kills a KVM guest that hangs and settles on TCG", async (t) => {
    // -S: the vCPU never runs, exactly like a KVM guest that hangs silently.
    const qemuBinary = qemuWrapper("qemu-kvm-hang", underTcg, "-S");
    const choice = await probeAccelerator({
      kernel: guest.kernel,
      initrd: guest.initrd,
      kvmDevice: usableKvmDevice,
      timeoutMs: 3000,
      qemuBinary,
    });
    t.diagnostic(`probe: ${choice.accel}: ${choice.reason}`);
    assert.deepEqual(choice, { accel: "tcg", reason: "KVM guest did not boot within 3 s" });
    assert.deepEqual(pgrep("haven.probe=1"), [], "the hung QEMU is dead and reaped");
  });

  void it("settles on TCG when QEMU refuses KVM", async () => {
    const qemuBinary = qemuWrapper("qemu-kvm-refused", 'kvm) echo "no KVM here" >&2; exit 1 ;;');
    const choice = await probeAccelerator({
      kernel: guest.kernel,
      initrd: guest.initrd,
      kvmDevice: usableKvmDevice,
      qemuBinary,
    });
    assert.deepEqual(choice, {
      accel: "tcg",
      reason: "QEMU with KVM exited (code 1) before the guest booted: no KVM here",
    });
  });

  void it("chooses KVM when the probe guest boots", async (t) => {
    if (!guest.canary) return t.skip("needs the canary guest (guest/build.sh)");
    const choice = await probeAccelerator({
      kernel: guest.kernel,
      initrd: guest.initrd,
      kvmDevice: usableKvmDevice,
      // Under TCG on a busy machine the boot can take a while; the bound only keeps a broken probe finite.
      timeoutMs: 150_000,
      qemuBinary: qemuWrapper("qemu-fake-kvm", underTcg),
    });
    t.diagnostic(`probe: ${choice.accel}: ${choice.reason}`);
    assert.equal(choice.accel, "kvm");
    assert.match(choice.reason, /^KVM guest booted in \d+\.\d s$/);
  });

  void it("answers for this machine what this machine has", async (t) => {
    const choice = await probeAccelerator({ kernel: guest.kernel, initrd: guest.initrd });
    t.diagnostic(`probe: ${choice.accel}: ${choice.reason}`);
    let kvmOpens = true;
    try {
      closeSync(openSync("/dev/kvm", "r+"));
    } catch {
      kvmOpens = false;
    }
    if (!kvmOpens)
      assert.deepEqual([choice.accel, /^\/dev\/kvm is not usable/.test(choice.reason)], ["tcg", true]);
    // With a /dev/kvm that opens, KVM is chosen exactly when its guest booted.
    else assert.equal(choice.accel === "kvm", /^KVM guest booted/.test(choice.reason), choice.reason);
    assert.deepEqual(pgrep("haven.probe=1"), [], "no probe QEMU left");
  });
});
