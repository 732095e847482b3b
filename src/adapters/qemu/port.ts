// The hypervisor port: start, find, stop and watch QEMU guests on this node. QEMU runs daemonized so a
// guest outlives its agent; the agent re-attaches through the pidfile and the QMP socket.

import type { GuestInfo } from "../../core/hardware.js";

export type Accelerator = "kvm" | "tcg";

/** How QEMU reaches one disk; produced by the storage backend, turned into -blockdev by the builder. */
export type DriveSource =
  | { driver: "file"; filename: string }
  | { driver: "rbd"; pool: string; image: string; user: string; conf: string; keyring?: string };

export interface GuestDisk {
  /** Storage-level image name, for humans and status. */
  image: string;
  source: DriveSource;
  /** Absent means virtio-blk. */
  bus?: "virtio-blk" | "virtio-scsi";
}

/** A network card: QEMU creates the tap device, the hypervisor plugs it into the bridge. */
export interface GuestNic {
  tap: string;
  bridge: string;
  mac: string;
  model: "virtio" | "e1000";
  vlan?: number;
}

/** Without a kernel the guest boots from its first disk: SeaBIOS, or UEFI with its variables on storage. */
export type GuestFirmware = { type: "bios" } | { type: "uefi"; vars: DriveSource };

export interface GuestLaunch {
  vm: string;
  /** Placement generation this QEMU belongs to; recorded next to the pidfile. */
  generation: number;
  memoryMb: number;
  vcpus: number;
  /** Direct kernel boot (the canary); otherwise `firmware` boots the first disk. */
  kernel?: string;
  initrd?: string;
  append?: string;
  firmware?: GuestFirmware;
  /** QEMU CPU model; absent: max under TCG, host under KVM. */
  cpu?: string;
  /** Versioned machine type; absent: q35. */
  machine?: string;
  disks: GuestDisk[];
  /** Read-only CD-ROMs on the machine's AHCI controller, e.g. an installer ISO. */
  cdroms?: GuestDisk[];
  /**
   * The cloud-init NoCloud seed: a read-only CD on virtio-scsi, not AHCI, because cloud images' kernels
   * (Debian's cloud kernel among them) have virtio drivers but no AHCI driver, and would not see it.
   */
  seed?: GuestDisk;
  nics?: GuestNic[];
  accel: Accelerator;
}

export interface GuestProcess {
  vm: string;
  generation: number;
  pid: number;
  accel: Accelerator;
  /** ISO time QEMU was started. */
  startedAt: string;
}

/** QEMU's tls-creds-x509 directory: ca-cert.pem, server-cert.pem/-key.pem, client-cert.pem/-key.pem. */
export interface TlsCredentials {
  dir: string;
}

export interface IncomingOptions {
  /** Address the incoming QEMU listens on (this node's migration address); the port is chosen by the kernel. */
  listenHost: string;
  /** TLS with peer verification; absent: plain TCP (only when asked for explicitly). */
  tls?: TlsCredentials;
}

export interface OutgoingMigration {
  /** `tcp:HOST:PORT` as returned by the target's startIncoming. */
  uri: string;
  /** TLS with peer verification; `hostname` is what the target's certificate must name (its address). */
  tls?: TlsCredentials & { hostname: string };
  /** Longest pause of the guest QEMU may plan for the final switch-over (QEMU's downtime-limit). */
  downtimeLimitMs: number;
  /** Bytes per second; absent: QEMU's default. */
  maxBandwidthBytes?: number;
}

/** From `query-migrate`: where a migration stands. */
export interface MigrationProgress {
  /** QEMU's status: none, setup, active, pre-switchover, device, completed, failed, cancelling, cancelled… */
  status: string;
  transferredBytes: number;
  remainingBytes: number;
  totalBytes: number;
  /** Current throughput in megabits per second, as QEMU reports it. */
  mbps: number;
  expectedDowntimeMs?: number;
  /** Set once completed: how long the guest was paused. */
  downtimeMs?: number;
  totalTimeMs?: number;
  error?: string;
}

export interface Hypervisor {
  /** Start QEMU daemonized and wait until QMP answers and the guest runs. Cleans up on failure. */
  start(launch: GuestLaunch): Promise<GuestProcess>;
  /** Guests whose QEMU is alive on this node (re-attaching after an agent restart). */
  list(): Promise<GuestProcess[]>;
  /** Ask the guest to power down, then quit QEMU after graceMs; returns when the process is gone. */
  stop(vm: string, graceMs: number): Promise<void>;
  /** SIGKILL the QEMU; returns when the process is gone. */
  kill(vm: string): Promise<void>;
  /** Called once when a guest's QEMU process exits (for any reason). Returns an unsubscribe function. */
  onExit(listener: (vm: string, generation: number) => void): () => void;
  /** Path of the guest's serial console socket and log file. */
  consolePaths(vm: string): { socket: string; log: string };
  /** What the guest agent inside reports (OS, addresses per MAC); undefined when it does not answer. */
  guestInfo(vm: string): Promise<GuestInfo | undefined>;
  /** Asks the guest agent to reboot the guest; rejects when no agent answers. */
  reboot(vm: string): Promise<void>;
  /** Hard reset, as the reset button does (QMP system_reset). */
  reset(vm: string): Promise<void>;
  /** Grows a running guest's disk (QMP block_resize): the storage image and what the guest sees. */
  resizeDisk(vm: string, index: number, sizeBytes: number): Promise<void>;

  // --- live migration ---
  /**
   * Target side: start QEMU paused, waiting for an incoming migration (`-incoming defer`, then
   * `migrate-incoming` on listenHost port 0). Resolves with the process (listed, supervised and reported to
   * onExit like any guest) and the URI the source must connect to.
   */
  startIncoming(launch: GuestLaunch, options: IncomingOptions): Promise<{ guest: GuestProcess; uri: string }>;
  /** Target side: whether the guest has arrived and runs (QMP `query-status` says running). */
  isRunning(vm: string): Promise<boolean>;
  /** Source side: start migrating the running guest; returns once QEMU accepted the request. */
  migrate(vm: string, migration: OutgoingMigration): Promise<void>;
  /** Target side, once the guest runs: tell the network where its MACs are now (QEMU `announce-self`). */
  announce(vm: string): Promise<void>;
  /** Either side: `query-migrate`. */
  migrationProgress(vm: string): Promise<MigrationProgress>;
  /** Source side: `migrate_cancel`; the guest keeps running here. */
  cancelMigration(vm: string): Promise<void>;
}
