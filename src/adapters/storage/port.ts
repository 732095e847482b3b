// The storage-backend port: guest disk images that every node can open. The `dir` backend keeps sparse raw
// files in one shared directory; the Ceph RBD backend implements the same interface.
import type { DriveSource } from "../qemu/port.js";

export interface ImageInfo {
  name: string;
  sizeBytes: number;
  /** Bytes really allocated (thin provisioning). */
  usedBytes: number;
  format: "raw";
  /** Where the image lives, for humans: a file path or pool/image. */
  location: string;
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
  /** How QEMU on a node opens the image. */
  driveSource(name: string): DriveSource;
}
