// Turns a GuestLaunch into QEMU's argv. Pure: no I/O, no validation beyond what QEMU cannot express; the
// caller validates the launch. Every flag here is deliberate, see the comments.
import { migrationTlsIds } from "./migration.js";
import type { DriveSource, GuestLaunch } from "./port.js";

export interface QemuPaths {
  qmpSocket: string;
  consoleSocket: string;
  serialLog: string;
  pidFile: string;
  /** Directory for per-disk Ceph key files (needed only for rbd disks that carry a keyring). */
  secretDir?: string;
}

/** How this QEMU begins: booting the guest (default), or waiting for an incoming live migration. */
export interface QemuStartMode {
  incoming?: {
    /** Absolute tls-creds-x509 directory: the target then accepts only TLS with a client certificate. */
    tlsDir?: string;
  };
}

/** Where the hypervisor writes the base64 Ceph key of disk `index` before starting QEMU. */
export function rbdKeyFile(secretDir: string, index: number): string {
  return `${secretDir}/disk${index}.key`;
}

// O_DIRECT and honoured flushes: a write the guest saw complete after fsync is on stable storage
// (safety invariant 4). For rbd, direct=true also turns the librbd cache off.
const cache = { direct: true, "no-flush": false };

// The serial console socket is a unix socket: sun_path holds 107 bytes plus NUL.
const maxSocketPath = 107;

export function buildQemuArgs(launch: GuestLaunch, paths: QemuPaths, mode: QemuStartMode = {}): string[] {
  for (const socket of [paths.qmpSocket, paths.consoleSocket]) {
    if (Buffer.byteLength(socket) > maxSocketPath) throw new Error(`unix socket path too long: ${socket}`);
  }
  const kvm = launch.accel === "kvm";
  const args = [
    // debug-threads names QEMU's threads (vCPU, iothreads) for top/perf; the -name value is also how the
    // hypervisor recognises its own QEMU in /proc/<pid>/cmdline.
    ...["-name", `${opt(launch.vm)},debug-threads=on`],
    ...["-machine", "q35"],
    // TCG keeps QEMU's default threading (multi-threaded TCG for x86 on x86 hosts).
    ...["-accel", kvm ? "kvm" : "tcg"],
    ...["-cpu", kvm ? "host" : "max"],
    ...["-m", memoryOption(launch.memoryMb, kvm)],
    ...["-smp", String(launch.vcpus)],
    // No default NIC/VGA/serial/parallel/floppy/CD and no /etc/qemu config: the guest has exactly the
    // devices listed here. -nographic is incompatible with -daemonize; -display none is its equivalent.
    "-nodefaults",
    "-no-user-config",
    ...["-display", "none"],
    ...["-kernel", launch.kernel],
    ...(launch.initrd !== undefined ? ["-initrd", launch.initrd] : []),
    ...(launch.append !== undefined ? ["-append", launch.append] : []),
    // The console is interactive through the socket AND every byte goes to the log, whether or not anyone
    // is attached (wait=off: QEMU does not block waiting for a client).
    ...[
      "-chardev",
      `socket,id=serial0,path=${opt(paths.consoleSocket)},server=on,wait=off,` +
        `logfile=${opt(paths.serialLog)},logappend=on`,
    ],
    ...["-serial", "chardev:serial0"],
    ...["-qmp", `unix:${opt(paths.qmpSocket)},server=on,wait=off`],
    // Daemonized, so the guest outlives the agent; the agent re-attaches through the pidfile and QMP.
    // No -no-shutdown: a guest poweroff ends QEMU, which the agent observes as an exit.
    ...["-pidfile", paths.pidFile],
    "-daemonize",
  ];
  launch.disks.forEach((disk, index) => {
    const { objects, blockdev } = blockdevFor(disk.source, index, paths);
    args.push(...objects, "-blockdev", JSON.stringify(blockdev));
    args.push("-device", `virtio-blk-pci,drive=disk${index},id=vd${index}`);
  });
  if (mode.incoming) args.push(...incomingArgs(mode.incoming.tlsDir));
  return args;
}

/**
 * A migration target: `defer` leaves the guest paused in `inmigrate` until QMP `migrate-incoming` says where to
 * listen (so the port can be chosen by the kernel and TLS set first). The server credentials are created on
 * the command line, and verify-peer=on makes the target demand a client certificate from the cluster CA.
 */
function incomingArgs(tlsDir: string | undefined): string[] {
  const tls =
    tlsDir === undefined
      ? []
      : [
          "-object",
          `tls-creds-x509,id=${migrationTlsIds.incoming},dir=${opt(tlsDir)},endpoint=server,verify-peer=on`,
        ];
  return [...tls, "-incoming", "defer"];
}

/**
 * The guest's RAM size. Under TCG it is 8 KiB larger than asked, on purpose: QEMU before 9.0 (Debian 12 ships
 * 7.2) loses guest writes during live migration under TCG when a RAM block's size is a multiple of 256 KiB.
 * Its fast path for syncing such blocks' dirty bitmap clears the bits without re-arming TCG's write tracking,
 * so pages written after they were sent are never sent again and the target runs with stale memory (a guest
 * that oopses or hangs after the move; fixed upstream by "physmem: Fix migration dirty bitmap coherency with
 * TCG memory access"). A size that is not such a multiple takes the per-page path, which re-arms it. KVM
 * tracks dirty pages in the kernel and gets the exact size.
 */
export function memoryOption(memoryMb: number, kvm: boolean): string {
  return kvm ? String(memoryMb) : `${memoryMb * 1024 + tcgMemoryPadKib}K`;
}

/** QEMU rounds RAM sizes up to 8 KiB, so this is the smallest pad that keeps the size off 256 KiB multiples. */
const tcgMemoryPadKib = 8;

function blockdevFor(source: DriveSource, index: number, paths: QemuPaths) {
  const nodeName = `disk${index}`;
  if (source.driver === "file") {
    return {
      objects: [],
      blockdev: {
        driver: "raw",
        "node-name": nodeName,
        file: { driver: "file", filename: source.filename, cache },
        cache,
      },
    };
  }
  // QEMU 7.2 BlockdevOptionsRbd: pool, namespace, image, conf, snapshot, encrypt, user, auth-client-required,
  // key-secret, server. There is no "keyring" field: either the conf file names the keyring (the default
  // /etc/ceph/ceph.client.<user>.keyring is also searched), or, as libvirt does, the key itself is handed
  // over in a secret object. We do the latter when a keyring is given: the hypervisor extracts the key into
  // a 0600 file that QEMU reads once at startup, so the key never appears in argv (ps) or in QMP.
  const objects: string[] = [];
  const rbd: Record<string, unknown> = {
    driver: "rbd",
    pool: source.pool,
    image: source.image,
    user: source.user,
    conf: source.conf,
    cache,
  };
  if (source.keyring !== undefined) {
    if (paths.secretDir === undefined)
      throw new Error(`rbd disk ${index} has a keyring but no secretDir was given`);
    const secretId = `${nodeName}-key`;
    objects.push(
      "-object",
      `secret,id=${secretId},file=${opt(rbdKeyFile(paths.secretDir, index))},format=base64`,
    );
    rbd["key-secret"] = secretId;
  }
  return { objects, blockdev: { driver: "raw", "node-name": nodeName, file: rbd, cache } };
}

/** QEMU's key=value option syntax: a literal comma inside a value is written as two commas. */
function opt(value: string): string {
  return value.replaceAll(",", ",,");
}
