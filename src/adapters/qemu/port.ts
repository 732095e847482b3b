// The hypervisor port: start, find, stop and watch QEMU guests on this node. QEMU runs daemonized so a
// guest outlives its agent; the agent re-attaches through the pidfile and the QMP socket.

export type Accelerator = "kvm" | "tcg";

/** How QEMU reaches one disk; produced by the storage backend, turned into -blockdev by the builder. */
export type DriveSource =
  | { driver: "file"; filename: string }
  | { driver: "rbd"; pool: string; image: string; user: string; conf: string; keyring?: string };

export interface GuestDisk {
  /** Storage-level image name, for humans and status. */
  image: string;
  source: DriveSource;
}

export interface GuestLaunch {
  vm: string;
  /** Placement generation this QEMU belongs to; recorded next to the pidfile. */
  generation: number;
  memoryMb: number;
  vcpus: number;
  kernel: string;
  initrd?: string;
  append?: string;
  disks: GuestDisk[];
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
}
