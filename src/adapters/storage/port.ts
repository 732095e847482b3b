// The storage-backend port: guest disk images that every node can open. The `dir` backend keeps sparse raw
// files in one shared directory; the Ceph RBD backend (`rbd.ts`) implements the same interface and adds
// snapshots, clones and imports. Backends refuse what they cannot do with an INPUT error.
import type { DriveSource } from "../qemu/port.js";

export interface ImageInfo {
  name: string;
  /** Pool for RBD images; null for the dir backend. */
  pool: string | null;
  sizeBytes: number;
  /** Bytes really allocated (thin provisioning). */
  usedBytes: number;
  format: "raw";
  /** Where the image lives, for humans and tools: a file path or `rbd:POOL/IMAGE`. */
  location: string;
  /** The snapshot this image was cloned from (`pool/image@snap`), if any. */
  parent: string | null;
}

export interface SnapshotInfo {
  name: string;
  image: string;
  sizeBytes: number;
  protected: boolean;
  createdAt: string | null;
}

export interface StorageUsage {
  /** Sum of the images' sizes. */
  provisionedBytes: number;
  /** What the images really occupy (before replication). */
  usedBytes: number;
  images: number;
}

export interface StorageHealth {
  ok: boolean;
  /** One line: "HEALTH_OK", or what is wrong. */
  summary: string;
}

export interface StorageBackend {
  readonly kind: "dir" | "rbd";
  create(name: string, sizeBytes: number): Promise<ImageInfo>;
  resize(name: string, sizeBytes: number, options?: { allowShrink?: boolean }): Promise<ImageInfo>;
  info(name: string): Promise<ImageInfo>;
  list(): Promise<ImageInfo[]>;
  delete(name: string): Promise<void>;
  /** Read part of an image (the canary verifier reads disks through this). */
  read(name: string, offset: number, length: number): Promise<Uint8Array>;
  /**
   * An offset past which the image holds no data (never written, or discarded): reads beyond it return zeros.
   * Backends that cannot tell cheaply return the image's size.
   */
  dataEnd(name: string): Promise<number>;
  /**
   * How QEMU on `node` opens the image (RBD: with that node's cephx identity), in `pool` when it is not the
   * backend's own (RBD only).
   */
  driveSource(name: string, node: string, pool?: string): DriveSource;
  health(): Promise<StorageHealth>;
  usage(): Promise<StorageUsage>;

  createSnapshot(image: string, snapshot: string): Promise<SnapshotInfo>;
  listSnapshots(image: string): Promise<SnapshotInfo[]>;
  rollbackSnapshot(image: string, snapshot: string): Promise<void>;
  deleteSnapshot(image: string, snapshot: string): Promise<void>;
  /** A new image from a snapshot (protecting the snapshot first, as RBD requires). */
  clone(image: string, snapshot: string, target: string): Promise<ImageInfo>;
  /** A new image from a local raw or qcow2 file; `onProgress` gets 0..1. */
  importFile(path: string, target: string, onProgress?: (fraction: number) => void): Promise<ImageInfo>;
  /** Client addresses (IP:port/nonce) that have the image open right now; [] for the dir backend. */
  watchers(image: string): Promise<string[]>;
  /**
   * Storage fencing (invariant 3): blocklist, for `expireSeconds`, every client that watches or locks the image,
   * then break its locks so that a new QEMU can take the image. Returns the fenced addresses. Backends that
   * cannot fence reject with an INPUT error: without a fence, a guest is never started elsewhere.
   */
  fence(image: string, expireSeconds: number): Promise<string[]>;
  /** Lifts the blocklisting of clients proven gone; addresses no longer listed are fine. */
  unfence(addresses: string[]): Promise<void>;
}
