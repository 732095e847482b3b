// A real distribution on a local 3-node cluster on Ceph: the Debian 12 cloud-style image (guest/debian/build.sh,
// built once and cached) is imported, snapshotted as a golden image and cloned into a VM with a network card on
// the lab network and an ssh key. The guest boots from its own disk, takes an address by DHCP and accepts ssh;
// a file written and synced over ssh survives a live migration (same boot, address and MAC) and a node kill
// (a new boot on another node, same address and MAC).
//
// The tests share one guest and run in order: a Debian boot under TCG takes minutes, so the guest is not
// made again for each test (the other integration files reset the cluster after each test instead).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, test, type TestContext } from "node:test";
import type { VmSpec, VmView } from "../../src/core/model.js";
import { eventually, REPO_ROOT, TestCluster } from "./harness.js";

const run = promisify(execFile);
const MINUTE = 60_000;
const SSH_RETRIES = 3;
/** A first boot of Debian under TCG on a loaded 2-core machine takes 2-4 minutes; this bounds it generously. */
const BOOT_BOUND_MS = 15 * MINUTE;
/**
 * Each test may take a boot and the work around it: more than the suite runner gives a test by default (10
 * minutes), which a boot under full CPU load can reach.
 */
const GUEST_TEST = { timeout: BOOT_BOUND_MS + 10 * MINUTE };
const VM = "deb1";

interface GuestFacts {
  node: string;
  address: string;
  mac: string;
  bootId: string;
}

describe("a Debian cloud image as a real guest", { timeout: 120 * MINUTE }, () => {
  let cluster: TestCluster;
  let key: string;
  /** What the guest looked like after its first boot; later tests compare against it. */
  let firstBoot: GuestFacts | undefined;

  before(async () => {
    // The test command's setup builds the image (scripts/test.js); here it is normally cached already.
    const { stdout } = await run("bash", [join(REPO_ROOT, "guest/debian/build.sh")], {
      maxBuffer: 16 * 1024 * 1024,
    });
    const image = stdout.trim().split("\n").at(-1)!;
    cluster = await TestCluster.start({ nodes: 3, storage: "rbd" });
    key = join(cluster.stateDir, "id_ed25519");
    await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "haven-test", "-f", key]);
    await ok(["disk", "import", image, "debian-12"], 30 * MINUTE);
    await ok(["disk", "snapshot", "create", "debian-12", "golden"]);
  });
  after(async () => {
    await cluster?.stop();
  });

  const ok = (args: string[], timeoutMs = 2 * MINUTE) => cluster.ok(args, { timeoutMs });
  const show = (vm: string) => cluster.json<VmView & { spec: VmSpec }>(["vm", "show", vm]);

  /**
   * Runs `command` in the guest as the image's default user, through ssh from the lab network. ssh gives up
   * by itself (connect and keep-alive timeouts), well before the harness would kill the CLI above it.
   */
  const ssh = (address: string, command: string) =>
    cluster.haven(
      [
        ...["network", "exec", "--", "ssh", "-i", key],
        ...["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"],
        ...["-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10"],
        ...["-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"],
        `debian@${address}`,
        command,
      ],
      { timeoutMs: 3 * MINUTE },
    );
  /**
   * Runs `command` in the guest and returns its output. Exit status 255 is ssh's own failure (a connection
   * that timed out on a loaded machine), not the command's: that is tried again, a few times.
   */
  const inGuest = async (address: string, command: string) => {
    let result = await ssh(address, command);
    for (let retry = 1; retry <= SSH_RETRIES && result.code === 255; retry++)
      result = await ssh(address, command);
    assert.equal(result.code, 0, `ssh ${command}: ${result.stderr}`);
    return result.stdout.trim();
  };

  /** The guest running on a node, with the address the lab's DHCP server gave its first card. */
  const runningWithAddress = (vm: string, what: string, notOn?: string) =>
    eventually(
      what,
      async () => {
        const view = await show(vm);
        const address = view.nics[0]?.addresses[0];
        return view.state === "running" && view.node !== notOn && address ? { view, address } : undefined;
      },
      BOOT_BOUND_MS,
      1000,
    );
  /** The last lines of the guest's serial console on `node`: what a failed boot needs explained. */
  const consoleTail = async (node: string, vm: string) => {
    const log = join(cluster.stateDir, "nodes", node, "guests", vm, "serial.log");
    const text = await readFile(log, "latin1").catch(() => "(no console log)");
    return text.replaceAll("\r", "").split("\n").slice(-40).join("\n");
  };
  /** Waits until ssh logs in, and tells what the guest says of itself. */
  async function sshFacts(vm: string, address: string, node: string): Promise<GuestFacts> {
    await eventually(
      `ssh login to ${vm} at ${address}`,
      async () => ((await ssh(address, "true")).code === 0 ? true : undefined),
      BOOT_BOUND_MS,
      2000,
    ).catch(async (err: unknown) => {
      throw new Error(
        `${(err as Error).message}\nthe guest's console ends with:\n${await consoleTail(node, vm)}`,
      );
    });
    const bootId = await inGuest(address, "cat /proc/sys/kernel/random/boot_id");
    const macs = (await inGuest(address, "cat /sys/class/net/*/address")).split("\n");
    const addresses = await inGuest(address, "ip -4 -o addr show scope global");
    assert.match(addresses, new RegExp(`inet ${address.replaceAll(".", "\\.")}/24 `), "the guest has it");
    const mac = (await show(vm)).nics[0]!.mac;
    assert.ok(macs.includes(mac), `the guest's cards ${macs.join(", ")} include ${mac}`);
    return { node, address, mac, bootId };
  }

  test(
    "boots from its cloned disk, takes an address by DHCP, accepts ssh with its key",
    GUEST_TEST,
    async (t) => {
      const lab = (await cluster.json<{ lab: { bridge: string } | null }>(["network", "list"])).lab;
      assert.ok(lab, "a local cluster has a lab network");
      const started = performance.now();
      await ok([
        ...["vm", "create", VM, "--clone", "debian-12@golden", "--vcpus", "2", "--memory", "1024"],
        ...["--nic", `bridge=${lab.bridge}`, "--ssh-key", `${key}.pub`, "--start"],
      ]);
      const { view, address } = await runningWithAddress(VM, `${VM} running with a DHCP address`);
      assert.equal(view.spec.kernel, undefined, "no kernel file: the firmware boots the disk");
      assert.deepEqual(view.disks, [`${VM}-disk0`]);
      firstBoot = await sshFacts(VM, address, view.node!);
      report(t, `boot to ssh login: ${((performance.now() - started) / 1000).toFixed(1)} s`);

      // The guest is the image's: its root is the first virtio disk, cloud-init named it after the VM.
      assert.match(await inGuest(address, "cat /etc/haven-image"), /^debian-12-[0-9a-f]{16}$/);
      assert.equal(await inGuest(address, "findmnt -n -o SOURCE /"), "/dev/vda1");
      assert.equal(await inGuest(address, "hostname"), VM);
      assert.match(await inGuest(address, "cloud-init status --wait"), /status: done/);
      const os = await eventually(
        "the guest agent's OS report",
        async () => (await show(VM)).os ?? undefined,
      );
      assert.match(os, /Debian GNU\/Linux 12/);

      await inGuest(address, "echo written-before-the-moves > survives.txt && sync");
    },
  );

  test("a live migration keeps the boot, the file, the address and the MAC", GUEST_TEST, async (t) => {
    assert.ok(firstBoot, "the guest booted");
    const started = performance.now();
    const moved = await ok(["vm", "migrate", VM, "--json"], 15 * MINUTE);
    const { view } = JSON.parse(moved.stdout) as { view: VmView };
    report(
      t,
      `live migration ${firstBoot.node} -> ${view.node}: ${(performance.now() - started).toFixed(0)} ms`,
    );
    assert.notEqual(view.node, firstBoot.node);
    const after = await sshFacts(VM, firstBoot.address, view.node!);
    assert.equal(after.bootId, firstBoot.bootId, "the same boot: the guest never restarted");
    assert.equal(after.mac, firstBoot.mac);
    assert.equal(await inGuest(firstBoot.address, "cat survives.txt"), "written-before-the-moves");
    firstBoot = { ...firstBoot, node: view.node! };
  });

  test(
    "a node kill: a new boot on another node, with the file, the address and the MAC",
    GUEST_TEST,
    async (t) => {
      assert.ok(firstBoot, "the guest booted");
      const killedAt = performance.now();
      await ok(["node", "kill", firstBoot.node]);
      const { view, address } = await runningWithAddress(
        VM,
        `${VM} running again away from ${firstBoot.node}`,
        firstBoot.node,
      );
      const recovered = performance.now();
      const after = await sshFacts(VM, address, view.node!);
      report(
        t,
        `node kill -> running on ${view.node}: ${((recovered - killedAt) / 1000).toFixed(1)} s; ` +
          `-> ssh login: ${((performance.now() - killedAt) / 1000).toFixed(1)} s`,
      );
      assert.notEqual(after.bootId, firstBoot.bootId, "a new boot");
      assert.equal(after.address, firstBoot.address);
      assert.equal(after.mac, firstBoot.mac);
      assert.equal(await inGuest(address, "cat survives.txt"), "written-before-the-moves");
    },
  );
});

/** Figures for the issue note: printed, never asserted (they depend on the machine's load). */
function report(t: TestContext, line: string): void {
  t.diagnostic(line);
  console.log(`guests: ${line}`);
}
