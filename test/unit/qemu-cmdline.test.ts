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
    for (const flag of ["-no-shutdown", "-nographic", "-S"]) assert.ok(!args.includes(flag), flag);
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
    assert.deepEqual(allAfter(args, "-device"), [
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
    assert.deepEqual(allAfter(args, "-device"), ["virtio-blk-pci,drive=disk0,id=vd0"]);
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
    assert.deepEqual(allAfter(args, "-object"), [
      "secret,id=disk1-key,file=/run/vm1/disk1.key,format=base64",
    ]);
    const blockdev = JSON.parse(allAfter(args, "-blockdev")[1] ?? "") as { file: Record<string, unknown> };
    assert.equal(blockdev.file["key-secret"], "disk1-key");
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
    assert.ok(!args.includes("-object"), "plain TCP needs no credentials object");
  });

  void it("creates the server TLS credentials of a TLS migration target", () => {
    const args = buildQemuArgs(launch(), paths, { incoming: { tlsDir: "/var/lib/haven/tls,1" } });
    assert.equal(after(args, "-incoming"), "defer");
    assert.deepEqual(allAfter(args, "-object"), [
      `tls-creds-x509,id=${migrationTlsIds.incoming},dir=/var/lib/haven/tls,,1,endpoint=server,verify-peer=on`,
    ]);
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
