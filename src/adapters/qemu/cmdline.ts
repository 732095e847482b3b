// Turns a GuestLaunch into QEMU's argv. Pure: no I/O, no validation beyond what QEMU cannot express; the
// caller validates the launch. Every flag here is deliberate, see the comments.
import { migrationTlsIds } from "./migration.js";
import type { DriveSource, GuestDisk, GuestLaunch, GuestNic } from "./port.js";

export interface QemuPaths {
  qmpSocket: string;
  consoleSocket: string;
  serialLog: string;
  pidFile: string;
  /** The QEMU guest agent's channel (always present; answered when the guest runs qemu-guest-agent). */
  guestAgentSocket: string;
  /** Directory for the Ceph key files of rbd drives that carry a keyring. */
  secretDir?: string;
}

/** How this QEMU begins: booting the guest (default), or waiting for an incoming live migration. */
export interface QemuStartMode {
  incoming?: {
    /** Absolute tls-creds-x509 directory: the target then accepts only TLS with a client certificate. */
    tlsDir?: string;
  };
}

/** Debian's OVMF (package ovmf): the UEFI code, read-only, shared by all guests. */
export const OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/** The empty variable store a new UEFI guest's own copy starts from. */
export const OVMF_VARS_TEMPLATE = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/** Where the hypervisor writes the base64 key of rbd secret `index` before starting QEMU. */
export function rbdKeyFile(secretDir: string, index: number): string {
  return `${secretDir}/rbd${index}.key`;
}

/** The distinct (keyring, user) pairs of a launch's rbd drives: one secret object each, in a fixed order. */
export function rbdSecrets(launch: GuestLaunch): Array<{ keyring: string; user: string }> {
  const secrets: Array<{ keyring: string; user: string }> = [];
  for (const source of driveSources(launch)) {
    if (source.driver !== "rbd" || source.keyring === undefined) continue;
    const { keyring, user } = source;
    if (!secrets.some((s) => s.keyring === keyring && s.user === user)) secrets.push({ keyring, user });
  }
  return secrets;
}

function driveSources(launch: GuestLaunch): DriveSource[] {
  const vars = launch.firmware?.type === "uefi" ? [launch.firmware.vars] : [];
  const seed = launch.seed ? [launch.seed] : [];
  return [...launch.disks, ...(launch.cdroms ?? []), ...seed].map((disk) => disk.source).concat(vars);
}

// O_DIRECT and honoured flushes: a write the guest saw complete after fsync is on stable storage
// (safety invariant 4). For rbd, direct=true also turns the librbd cache off.
const cache = { direct: true, "no-flush": false };

// The serial console socket is a unix socket: sun_path holds 107 bytes plus NUL.
const maxSocketPath = 107;

export function buildQemuArgs(launch: GuestLaunch, paths: QemuPaths, mode: QemuStartMode = {}): string[] {
  for (const socket of [paths.qmpSocket, paths.consoleSocket, paths.guestAgentSocket]) {
    if (Buffer.byteLength(socket) > maxSocketPath) throw new Error(`unix socket path too long: ${socket}`);
  }
  const secrets = secretObjects(launch, paths);
  return [
    ...machineArgs(launch),
    ...["-m", memoryOption(launch.memoryMb, launch.accel === "kvm")],
    ...["-smp", String(launch.vcpus)],
    // No default NIC/VGA/serial/parallel/floppy/CD and no /etc/qemu config: the guest has exactly the
    // devices listed here. -nographic is incompatible with -daemonize; -display none is its equivalent.
    "-nodefaults",
    "-no-user-config",
    ...["-display", "none"],
    ...kernelArgs(launch),
    ...consoleArgs(paths),
    ...secrets.objects,
    ...firmwareArgs(launch, secrets.ids),
    ...diskArgs(launch, secrets.ids),
    ...nicArgs(launch.nics ?? [], launch.accel === "kvm"),
    // Daemonized, so the guest outlives the agent; the agent re-attaches through the pidfile and QMP.
    // No -no-shutdown: a guest poweroff ends QEMU, which the agent observes as an exit.
    ...["-pidfile", paths.pidFile],
    "-daemonize",
    // -S: a booting guest waits until its network cards are plugged in (the hypervisor then sends `cont`);
    // an incoming one waits for its state anyway, and runs by itself once that arrived.
    ...(mode.incoming ? incomingArgs(mode.incoming.tlsDir) : ["-S"]),
  ];
}

function machineArgs(launch: GuestLaunch): string[] {
  const kvm = launch.accel === "kvm";
  // UEFI: the machine's two flash chips are the shared firmware code and the guest's own variable store.
  const flash = launch.firmware?.type === "uefi" ? ",pflash0=fw-code,pflash1=fw-vars" : "";
  return [
    // debug-threads names QEMU's threads (vCPU, iothreads) for top/perf; the -name value is also how the
    // hypervisor recognises its own QEMU in /proc/<pid>/cmdline.
    ...["-name", `${opt(launch.vm)},debug-threads=on`],
    ...["-machine", `${launch.machine ?? "q35"}${flash}`],
    // TCG keeps QEMU's default threading (multi-threaded TCG for x86 on x86 hosts).
    ...["-accel", kvm ? "kvm" : "tcg"],
    ...["-cpu", launch.cpu ?? (kvm ? "host" : "max")],
  ];
}

function kernelArgs(launch: GuestLaunch): string[] {
  if (launch.kernel === undefined) return [];
  return [
    ...["-kernel", launch.kernel],
    ...(launch.initrd !== undefined ? ["-initrd", launch.initrd] : []),
    ...(launch.append !== undefined ? ["-append", launch.append] : []),
  ];
}

function consoleArgs(paths: QemuPaths): string[] {
  return [
    // The console is interactive through the socket AND every byte goes to the log, whether or not anyone
    // is attached (wait=off: QEMU does not block waiting for a client).
    ...[
      "-chardev",
      `socket,id=serial0,path=${opt(paths.consoleSocket)},server=on,wait=off,` +
        `logfile=${opt(paths.serialLog)},logappend=on`,
    ],
    ...["-serial", "chardev:serial0"],
    ...["-qmp", `unix:${opt(paths.qmpSocket)},server=on,wait=off`],
    // The guest agent's channel, under the name qemu-guest-agent looks for.
    ...["-chardev", `socket,id=qga0,path=${opt(paths.guestAgentSocket)},server=on,wait=off`],
    ...["-device", "virtio-serial-pci,id=serial1"],
    ...["-device", "virtserialport,bus=serial1.0,chardev=qga0,name=org.qemu.guest_agent.0"],
  ];
}

// QEMU 7.2 BlockdevOptionsRbd: pool, namespace, image, conf, snapshot, encrypt, user, auth-client-required,
// key-secret, server. There is no "keyring" field: either the conf file names the keyring (the default
// /etc/ceph/ceph.client.<user>.keyring is also searched), or, as libvirt does, the key itself is handed over
// in a secret object. We do the latter when a keyring is given: the hypervisor extracts the key into a 0600
// file that QEMU reads once at startup, so the key never appears in argv (ps) or in QMP.
function secretObjects(launch: GuestLaunch, paths: QemuPaths): { objects: string[]; ids: SecretIds } {
  const secrets = rbdSecrets(launch);
  if (secrets.length > 0 && paths.secretDir === undefined)
    throw new Error(`rbd drives of ${launch.vm} have a keyring but no secretDir was given`);
  const objects = secrets.flatMap((_, index) => [
    "-object",
    `secret,id=rbd${index}-key,file=${opt(rbdKeyFile(paths.secretDir!, index))},format=base64`,
  ]);
  const ids = (source: DriveSource) => {
    if (source.driver !== "rbd" || source.keyring === undefined) return undefined;
    const index = secrets.findIndex((s) => s.keyring === source.keyring && s.user === source.user);
    return `rbd${index}-key`;
  };
  return { objects, ids };
}

type SecretIds = (source: DriveSource) => string | undefined;

function firmwareArgs(launch: GuestLaunch, secrets: SecretIds): string[] {
  if (launch.firmware?.type !== "uefi") return [];
  const code = { driver: "file", filename: OVMF_CODE, "read-only": true };
  return [
    ...[
      "-blockdev",
      JSON.stringify({ driver: "raw", "node-name": "fw-code", file: code, "read-only": true }),
    ],
    ...["-blockdev", JSON.stringify(blockdev("fw-vars", launch.firmware.vars, secrets, {}))],
  ];
}

function diskArgs(launch: GuestLaunch, secrets: SecretIds): string[] {
  const args: string[] = [];
  const scsi = launch.disks.some((disk) => disk.bus === "virtio-scsi") || launch.seed !== undefined;
  if (scsi) args.push("-device", "virtio-scsi-pci,id=scsi0");
  // Without a kernel the first disk boots; bootindex also makes SeaBIOS and OVMF try nothing else first.
  const firmwareBoot = launch.kernel === undefined;
  launch.disks.forEach((disk, index) => {
    const node = `disk${index}`;
    const boot = firmwareBoot && index === 0 ? ",bootindex=1" : "";
    // virtio-scsi passes the guest's discards to the storage (thin images give the space back).
    const discard = disk.bus === "virtio-scsi" ? { discard: "unmap" } : {};
    args.push("-blockdev", JSON.stringify(blockdev(node, disk.source, secrets, discard)));
    args.push(
      "-device",
      disk.bus === "virtio-scsi"
        ? `scsi-hd,bus=scsi0.0,drive=${node},id=sd${index}${boot}`
        : `virtio-blk-pci,drive=${node},id=vd${index}${boot}`,
    );
  });
  // CD-ROMs on the Q35 machine's built-in AHCI controller (ports ide.0-ide.5), read-only.
  (launch.cdroms ?? []).forEach((cdrom: GuestDisk, index) => {
    const node = `cd${index}`;
    args.push(
      "-blockdev",
      JSON.stringify({ ...blockdev(node, cdrom.source, secrets, {}), "read-only": true }),
    );
    args.push("-device", `ide-cd,bus=ide.${index},drive=${node},id=cd${index}`);
  });
  if (launch.seed) {
    args.push(
      "-blockdev",
      JSON.stringify({ ...blockdev("seed", launch.seed.source, secrets, {}), "read-only": true }),
    );
    args.push("-device", "scsi-cd,bus=scsi0.0,drive=seed,id=seed");
  }
  return args;
}

function blockdev(node: string, source: DriveSource, secrets: SecretIds, extra: Record<string, unknown>) {
  if (source.driver === "file")
    return {
      driver: "raw",
      "node-name": node,
      file: { driver: "file", filename: source.filename, cache, ...extra },
      cache,
      ...extra,
    };
  const rbd: Record<string, unknown> = {
    driver: "rbd",
    pool: source.pool,
    image: source.image,
    user: source.user,
    conf: source.conf,
    cache,
    ...extra,
  };
  const secret = secrets(source);
  if (secret !== undefined) rbd["key-secret"] = secret;
  return { driver: "raw", "node-name": node, file: rbd, cache, ...extra };
}

/**
 * Network cards on tap devices that QEMU creates itself (script=no): the kernel removes a tap the moment its
 * QEMU is gone, however it went. The hypervisor plugs each tap into its bridge before the guest runs.
 */
function nicArgs(nics: GuestNic[], kvm: boolean): string[] {
  return nics.flatMap((nic, index) => [
    "-netdev",
    `tap,id=net${index},ifname=${nic.tap},script=no,downscript=no${kvm ? ",vhost=on" : ""}`,
    "-device",
    `${nic.model === "e1000" ? "e1000" : "virtio-net-pci"},netdev=net${index},mac=${nic.mac},id=nic${index}`,
  ]);
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

/** QEMU's key=value option syntax: a literal comma inside a value is written as two commas. */
function opt(value: string): string {
  return value.replaceAll(",", ",,");
}
