import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { buildQemuArgs } from "../../src/adapters/qemu/cmdline.js";
import { cephKeyFor } from "../../src/adapters/qemu/guest-files.js";
import { migrationTlsIds } from "../../src/adapters/qemu/migration.js";
import type { GuestLaunch } from "../../src/adapters/qemu/port.js";

const paths = {
  qmpSocket: "/run/haven/guests/vm1/qmp.sock",
  consoleSocket: "/run/haven/guests/vm1/console.sock",
  serialLog: "/run/haven/guests/vm1/serial.log",
  pidFile: "/run/haven/guests/vm1/qemu.pid",
  guestAgentSocket: "/run/haven/guests/vm1/qga.sock",
};

function launch(overrides: Partial<GuestLaunch> = {}): GuestLaunch {
  return {
    vm: "vm1",
    generation: 3,
    memoryMb: 256,
    vcpus: 2,
    kernel: "/guest/vmlinuz",
    initrd: "/guest/initramfs.img",
    append: "console=ttyS0 quiet",
    disks: [],
    accel: "tcg",
    ...overrides,
  };
}

/** The value following `flag` (first occurrence). */
function after(args: string[], flag: string): string | undefined {
  const index = args.indexOf(flag);
  return index >= 0 ? args[index + 1] : undefined;
}

/** The -device values of disks (virtio-blk, SCSI disks and CD-ROMs). */
function diskDevices(args: string[]): string[] {
  return allAfter(args, "-device").filter((device) =>
    /^(virtio-blk-pci|scsi-hd|ide-cd|scsi-cd),/.test(device),
  );
}

/** Every value following `flag`. */
function allAfter(args: string[], flag: string): string[] {
  return args.flatMap((arg, index) => (arg === flag ? [args[index + 1] ?? ""] : []));
}

void describe("buildQemuArgs", () => {
  void it("describes a TCG guest with no default devices", () => {
    const args = buildQemuArgs(launch(), paths);
    assert.equal(after(args, "-name"), "vm1,debug-threads=on");
    assert.equal(after(args, "-machine"), "q35");
    assert.equal(after(args, "-accel"), "tcg");
    assert.equal(after(args, "-cpu"), "max");
    // 256 MiB + 8 KiB: a RAM size off 256 KiB multiples keeps QEMU 7.2's TCG migration from losing writes.
    assert.equal(after(args, "-m"), "262152K");
    assert.equal(after(args, "-smp"), "2");
    assert.equal(after(args, "-kernel"), "/guest/vmlinuz");
    assert.equal(after(args, "-initrd"), "/guest/initramfs.img");
    assert.equal(after(args, "-append"), "console=ttyS0 quiet");
    assert.equal(after(args, "-display"), "none");
    for (const flag of ["-nodefaults", "-no-user-config"]) assert.ok(args.includes(flag), flag);
    // A guest poweroff must end QEMU, and -nographic conflicts with -daemonize.
    for (const flag of ["-no-shutdown", "-nographic"]) assert.ok(!args.includes(flag), flag);
    // It waits paused until its network cards are plugged in.
    assert.ok(args.includes("-S"));
  });

  void it("uses KVM with the host CPU when asked", () => {
    const args = buildQemuArgs(launch({ accel: "kvm" }), paths);
    assert.equal(after(args, "-accel"), "kvm");
    assert.equal(after(args, "-cpu"), "host");
    assert.equal(after(args, "-m"), "256");
  });

  void it("omits initrd and append when not given", () => {
    const args = buildQemuArgs(launch({ initrd: undefined, append: undefined }), paths);
    assert.ok(!args.includes("-initrd"));
    assert.ok(!args.includes("-append"));
  });

  void it("daemonizes with a pidfile and a QMP socket", () => {
    const args = buildQemuArgs(launch(), paths);
    assert.ok(args.includes("-daemonize"));
    assert.equal(after(args, "-pidfile"), paths.pidFile);
    assert.equal(after(args, "-qmp"), `unix:${paths.qmpSocket},server=on,wait=off`);
  });

  void it("puts the serial console on a socket and logs every byte", () => {
    const args = buildQemuArgs(launch(), paths);
    assert.equal(
      after(args, "-chardev"),
      `socket,id=serial0,path=${paths.consoleSocket},server=on,wait=off,logfile=${paths.serialLog},logappend=on`,
    );
    assert.equal(after(args, "-serial"), "chardev:serial0");
  });

  void it("escapes commas in option values", () => {
    const args = buildQemuArgs(launch(), { ...paths, consoleSocket: "/tmp/a,b/console.sock" });
    assert.match(after(args, "-chardev") ?? "", /path=\/tmp\/a,,b\/console\.sock,server=on/);
  });

  void it("attaches file disks with O_DIRECT and honoured flushes", () => {
    const args = buildQemuArgs(
      launch({
        disks: [
          { image: "root", source: { driver: "file", filename: "/data/root.img" } },
          { image: "data", source: { driver: "file", filename: "/data/data.img" } },
        ],
      }),
      paths,
    );
    const cache = { direct: true, "no-flush": false };
    assert.deepEqual(
      allAfter(args, "-blockdev").map((json) => JSON.parse(json) as unknown),
      [
        {
          driver: "raw",
          "node-name": "disk0",
          file: { driver: "file", filename: "/data/root.img", cache },
          cache,
        },
        {
          driver: "raw",
          "node-name": "disk1",
          file: { driver: "file", filename: "/data/data.img", cache },
          cache,
        },
      ],
    );
    assert.deepEqual(diskDevices(args), [
      "virtio-blk-pci,drive=disk0,id=vd0",
      "virtio-blk-pci,drive=disk1,id=vd1",
    ]);
  });

  void it("attaches rbd disks through the conf file when there is no keyring", () => {
    const source = {
      driver: "rbd" as const,
      pool: "haven",
      image: "vm1-root",
      user: "haven",
      conf: "/etc/ceph/c.conf",
    };
    const args = buildQemuArgs(launch({ disks: [{ image: "vm1-root", source }] }), paths);
    assert.deepEqual(JSON.parse(allAfter(args, "-blockdev")[0] ?? ""), {
      driver: "raw",
      "node-name": "disk0",
      file: {
        driver: "rbd",
        pool: "haven",
        image: "vm1-root",
        user: "haven",
        conf: "/etc/ceph/c.conf",
        cache: { direct: true, "no-flush": false },
      },
      cache: { direct: true, "no-flush": false },
    });
    assert.ok(!args.includes("-object"));
    assert.deepEqual(diskDevices(args), ["virtio-blk-pci,drive=disk0,id=vd0"]);
  });

  void it("hands an rbd keyring's key over as a secret object, never in argv", () => {
    const source = {
      driver: "rbd" as const,
      pool: "haven",
      image: "vm1-root",
      user: "haven",
      conf: "/etc/ceph/c.conf",
      keyring: "/etc/ceph/haven.keyring",
    };
    const disks = [
      { image: "scratch", source: { driver: "file" as const, filename: "/x.img" } },
      { image: "r", source },
    ];
    const args = buildQemuArgs(launch({ disks }), { ...paths, secretDir: "/run/vm1" });
    assert.deepEqual(allAfter(args, "-object"), ["secret,id=rbd0-key,file=/run/vm1/rbd0.key,format=base64"]);
    const blockdev = JSON.parse(allAfter(args, "-blockdev")[1] ?? "") as { file: Record<string, unknown> };
    assert.equal(blockdev.file["key-secret"], "rbd0-key");
    assert.ok(!args.some((arg) => arg.includes("haven.keyring")));
    // The secret object must exist before the blockdev that names it.
    assert.ok(args.indexOf("-object") < args.lastIndexOf("-blockdev"));
    assert.throws(() => buildQemuArgs(launch({ disks }), paths), /secretDir/);
  });

  void it("boots the guest unless told to wait for a migration", () => {
    const args = buildQemuArgs(launch(), paths);
    assert.ok(!args.includes("-incoming"));
    assert.ok(!args.some((arg) => arg.includes("tls-creds")));
  });

  void it("waits for an incoming migration with -incoming defer", () => {
    const args = buildQemuArgs(launch(), paths, { incoming: {} });
    assert.equal(after(args, "-incoming"), "defer");
    assert.ok(!args.includes("-S"), "an arriving guest runs by itself");
    assert.ok(!args.includes("-object"), "plain TCP needs no credentials object");
  });

  void it("creates the server TLS credentials of a TLS migration target", () => {
    const args = buildQemuArgs(launch(), paths, { incoming: { tlsDir: "/var/lib/haven/tls,1" } });
    assert.equal(after(args, "-incoming"), "defer");
    assert.deepEqual(allAfter(args, "-object"), [
      `tls-creds-x509,id=${migrationTlsIds.incoming},dir=/var/lib/haven/tls,,1,endpoint=server,verify-peer=on`,
    ]);
  });

  void it("boots a guest without a kernel from its first disk, with the recorded CPU and machine type", () => {
    const file = (filename: string) => ({ driver: "file" as const, filename });
    const args = buildQemuArgs(
      launch({
        kernel: undefined,
        initrd: undefined,
        append: undefined,
        cpu: "Westmere-v1",
        machine: "pc-q35-7.2",
        firmware: { type: "bios" },
        disks: [
          { image: "root", source: file("/root.img") },
          { image: "data", source: file("/data.img") },
        ],
      }),
      paths,
    );
    for (const flag of ["-kernel", "-initrd", "-append"]) assert.ok(!args.includes(flag), flag);
    assert.equal(after(args, "-machine"), "pc-q35-7.2");
    assert.equal(after(args, "-cpu"), "Westmere-v1");
    assert.deepEqual(diskDevices(args), [
      "virtio-blk-pci,drive=disk0,id=vd0,bootindex=1",
      "virtio-blk-pci,drive=disk1,id=vd1",
    ]);
  });

  void it("gives a UEFI guest the shared firmware code and its own variable store as flash", () => {
    const vars = { driver: "rbd" as const, pool: "rbd", image: "vm1-efivars", user: "haven", conf: "/c" };
    const args = buildQemuArgs(
      launch({ kernel: undefined, machine: "pc-q35-7.2", firmware: { type: "uefi", vars } }),
      paths,
    );
    assert.equal(after(args, "-machine"), "pc-q35-7.2,pflash0=fw-code,pflash1=fw-vars");
    const blockdevs = allAfter(args, "-blockdev").map((json) => JSON.parse(json) as Record<string, unknown>);
    assert.deepEqual(blockdevs[0], {
      driver: "raw",
      "node-name": "fw-code",
      file: { driver: "file", filename: "/usr/share/OVMF/OVMF_CODE_4M.fd", "read-only": true },
      "read-only": true,
    });
    assert.equal(blockdevs[1]?.["node-name"], "fw-vars");
    assert.deepEqual((blockdevs[1]?.file as Record<string, unknown>).image, "vm1-efivars");
  });

  void it("puts virtio-scsi disks on one controller with discard, and CD-ROMs read-only on AHCI", () => {
    const file = (filename: string) => ({ driver: "file" as const, filename });
    const args = buildQemuArgs(
      launch({
        disks: [
          { image: "a", source: file("/a.img"), bus: "virtio-scsi" },
          { image: "b", source: file("/b.img"), bus: "virtio-scsi" },
        ],
        cdroms: [{ image: "iso", source: file("/debian.iso") }],
      }),
      paths,
    );
    assert.equal(allAfter(args, "-device").filter((d) => d.startsWith("virtio-scsi-pci")).length, 1);
    assert.deepEqual(diskDevices(args), [
      "scsi-hd,bus=scsi0.0,drive=disk0,id=sd0",
      "scsi-hd,bus=scsi0.0,drive=disk1,id=sd1",
      "ide-cd,bus=ide.0,drive=cd0,id=cd0",
    ]);
    const blockdevs = allAfter(args, "-blockdev").map((json) => JSON.parse(json) as Record<string, unknown>);
    assert.equal(blockdevs[0]?.discard, "unmap");
    assert.equal(blockdevs[2]?.["read-only"], true);
  });

  void it("puts the cloud-init seed read-only on virtio-scsi, which cloud kernels without AHCI see", () => {
    const file = (filename: string) => ({ driver: "file" as const, filename });
    const alone = buildQemuArgs(
      launch({
        disks: [{ image: "root", source: file("/root.img") }],
        seed: { image: "seed", source: file("/s") },
      }),
      paths,
    );
    assert.deepEqual(
      allAfter(alone, "-device").filter((d) => /virtio-scsi-pci|scsi-cd|virtio-blk/.test(d)),
      [
        "virtio-scsi-pci,id=scsi0",
        "virtio-blk-pci,drive=disk0,id=vd0",
        "scsi-cd,bus=scsi0.0,drive=seed,id=seed",
      ],
    );
    const seed = allAfter(alone, "-blockdev")
      .map((json) => JSON.parse(json) as Record<string, unknown>)
      .find((b) => b["node-name"] === "seed");
    assert.equal(seed?.["read-only"], true);
    // With virtio-scsi disks the seed shares their one controller; an installer ISO stays on AHCI.
    const shared = buildQemuArgs(
      launch({
        disks: [{ image: "a", source: file("/a.img"), bus: "virtio-scsi" }],
        cdroms: [{ image: "iso", source: file("/debian.iso") }],
        seed: { image: "seed", source: file("/s") },
      }),
      paths,
    );
    assert.equal(allAfter(shared, "-device").filter((d) => d.startsWith("virtio-scsi-pci")).length, 1);
    assert.deepEqual(diskDevices(shared), [
      "scsi-hd,bus=scsi0.0,drive=disk0,id=sd0",
      "ide-cd,bus=ide.0,drive=cd0,id=cd0",
      "scsi-cd,bus=scsi0.0,drive=seed,id=seed",
    ]);
  });

  void it("attaches network cards to tap devices QEMU creates, with fixed MACs", () => {
    const nics = [
      { tap: "hvabcdef1030", bridge: "br0", mac: "52:54:00:00:00:01", model: "virtio" as const },
      { tap: "hvabcdef1031", bridge: "br1", mac: "52:54:00:00:00:02", model: "e1000" as const, vlan: 7 },
    ];
    const tcg = buildQemuArgs(launch({ nics }), paths);
    assert.deepEqual(allAfter(tcg, "-netdev"), [
      "tap,id=net0,ifname=hvabcdef1030,script=no,downscript=no",
      "tap,id=net1,ifname=hvabcdef1031,script=no,downscript=no",
    ]);
    assert.deepEqual(
      allAfter(tcg, "-device").filter((d) => /netdev=/.test(d)),
      [
        "virtio-net-pci,netdev=net0,mac=52:54:00:00:00:01,id=nic0",
        "e1000,netdev=net1,mac=52:54:00:00:00:02,id=nic1",
      ],
    );
    const kvm = buildQemuArgs(launch({ nics, accel: "kvm" }), paths);
    assert.ok(allAfter(kvm, "-netdev").every((netdev) => netdev.endsWith(",vhost=on")));
  });

  void it("always has the guest agent's channel", () => {
    const args = buildQemuArgs(launch(), paths);
    assert.ok(
      allAfter(args, "-chardev").includes(`socket,id=qga0,path=${paths.guestAgentSocket},server=on,wait=off`),
    );
    assert.ok(
      allAfter(args, "-device").includes(
        "virtserialport,bus=serial1.0,chardev=qga0,name=org.qemu.guest_agent.0",
      ),
    );
  });

  void it("refuses socket paths that do not fit in sun_path", () => {
    assert.throws(() => buildQemuArgs(launch(), { ...paths, qmpSocket: "/" + "x".repeat(120) }), /too long/);
  });
});

void describe("cephKeyFor", () => {
  const keyring =
    '[client.admin]\n\tkey = AQAdmin==\n\tcaps mon = "allow *"\n[client.haven]\n\tkey = AQHaven==\n';

  void it("finds the key of the user's section", () => {
    assert.equal(cephKeyFor(keyring, "haven"), "AQHaven==");
    assert.equal(cephKeyFor(keyring, "client.admin"), "AQAdmin==");
    assert.equal(cephKeyFor(keyring, "nobody"), undefined);
  });
});
