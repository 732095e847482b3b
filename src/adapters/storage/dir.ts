// Sparse raw image files in one directory that all nodes share (a local cluster's state dir, or NFS).
import { constants } from "node:fs";
import { mkdir, open, readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { conflict, inputError, notFound } from "../../core/errors.js";
import { imageNameSchema } from "../../core/model.js";
import { run } from "../../lib/command.js";
import type { ImageInfo, SnapshotInfo, StorageBackend, StorageHealth, StorageUsage } from "./port.js";

const SUFFIX = ".raw";

export class DirStorage implements StorageBackend {
  readonly kind = "dir";

  constructor(private readonly dir: string) {}

  async create(name: string, sizeBytes: number): Promise<ImageInfo> {
    await mkdir(this.dir, { recursive: true });
    const path = this.pathOf(name);
    const file = await open(path, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600).catch(
      (err: NodeJS.ErrnoException) => {
        throw err.code === "EEXIST" ? conflict(`disk ${name} already exists`) : err;
      },
    );
    try {
      await file.truncate(sizeBytes);
    } catch (err) {
      await rm(path, { force: true });
      throw err;
    } finally {
      await file.close();
    }
    return this.info(name);
  }

  async resize(name: string, sizeBytes: number, options: { allowShrink?: boolean } = {}): Promise<ImageInfo> {
    const current = await this.info(name);
    if (sizeBytes < current.sizeBytes && !options.allowShrink) {
      throw inputError(
        `refusing to shrink disk ${name} from ${current.sizeBytes} to ${sizeBytes} bytes (data past the new end is lost); pass --allow-shrink`,
      );
    }
    const file = await open(this.pathOf(name), "r+");
    try {
      await file.truncate(sizeBytes);
    } finally {
      await file.close();
    }
    return this.info(name);
  }

  async info(name: string): Promise<ImageInfo> {
    const path = this.pathOf(name);
    const stats = await stat(path).catch((err: NodeJS.ErrnoException) => {
      throw err.code === "ENOENT" ? notFound(`disk ${name} does not exist`) : err;
    });
    return {
      name,
      pool: null,
      sizeBytes: stats.size,
      usedBytes: stats.blocks * 512,
      format: "raw",
      location: path,
      parent: null,
    };
  }

  async list(): Promise<ImageInfo[]> {
    const entries = await readdir(this.dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") return [];
      throw err;
    });
    const names = entries
      .filter((entry) => entry.endsWith(SUFFIX))
      .map((entry) => entry.slice(0, -SUFFIX.length));
    return Promise.all(names.sort().map((name) => this.info(name)));
  }

  async delete(name: string): Promise<void> {
    await this.info(name);
    await rm(this.pathOf(name));
  }

  async read(name: string, offset: number, length: number): Promise<Uint8Array> {
    const file = await open(this.pathOf(name), "r").catch((err: NodeJS.ErrnoException) => {
      throw err.code === "ENOENT" ? notFound(`disk ${name} does not exist`) : err;
    });
    try {
      const buffer = Buffer.alloc(length);
      const { bytesRead } = await file.read(buffer, 0, length, offset);
      return buffer.subarray(0, bytesRead);
    } finally {
      await file.close();
    }
  }

  /** Sparse files do not say where their data ends without SEEK_DATA, which Node lacks: the whole size. */
  async dataEnd(name: string): Promise<number> {
    return (await this.info(name)).sizeBytes;
  }

  driveSource(name: string, _node: string, pool?: string) {
    if (pool !== undefined) throw inputError(`the dir storage has no pools (disk ${name} in pool ${pool})`);
    return { driver: "file" as const, filename: this.pathOf(name) };
  }

  async health(): Promise<StorageHealth> {
    try {
      await mkdir(this.dir, { recursive: true });
      await readdir(this.dir);
      return { ok: true, summary: `directory ${this.dir} is readable` };
    } catch (err) {
      return { ok: false, summary: `directory ${this.dir}: ${(err as Error).message}` };
    }
  }

  async usage(): Promise<StorageUsage> {
    const images = await this.list();
    const sum = (pick: (image: ImageInfo) => number) =>
      images.reduce((total, image) => total + pick(image), 0);
    return {
      provisionedBytes: sum((i) => i.sizeBytes),
      usedBytes: sum((i) => i.usedBytes),
      images: images.length,
    };
  }

  /** Converts a raw or qcow2 file into a new raw image (qemu-img keeps it sparse). */
  async importFile(
    path: string,
    target: string,
    onProgress?: (fraction: number) => void,
  ): Promise<ImageInfo> {
    const destination = this.pathOf(target);
    await this.create(target, 0);
    try {
      await run("qemu-img", ["convert", "-p", "-O", "raw", path, destination], {
        timeoutMs: 3_600_000,
        onStderr: () => undefined,
        onStdout: (chunk) => {
          const percent = /\((\d+(?:\.\d+)?)\/100%\)/.exec(chunk);
          if (percent) onProgress?.(Number(percent[1]) / 100);
        },
      });
    } catch (err) {
      await rm(destination, { force: true });
      throw inputError(`cannot import ${path}: ${(err as Error).message}`);
    }
    return this.info(target);
  }

  watchers(): Promise<string[]> {
    return Promise.resolve([]);
  }

  fence(): Promise<string[]> {
    return Promise.reject(
      inputError("dir storage cannot fence a node's guests; use Ceph RBD storage for HA"),
    );
  }

  /** Nothing was ever fenced here. */
  unfence(): Promise<void> {
    return Promise.resolve();
  }

  createSnapshot(): Promise<SnapshotInfo> {
    return Promise.reject(unsupported("snapshots"));
  }

  listSnapshots(): Promise<SnapshotInfo[]> {
    return Promise.reject(unsupported("snapshots"));
  }

  rollbackSnapshot(): Promise<void> {
    return Promise.reject(unsupported("snapshots"));
  }

  deleteSnapshot(): Promise<void> {
    return Promise.reject(unsupported("snapshots"));
  }

  clone(): Promise<ImageInfo> {
    return Promise.reject(unsupported("clones"));
  }

  private pathOf(name: string): string {
    const parsed = imageNameSchema.safeParse(name);
    if (!parsed.success) throw inputError(parsed.error.issues[0]?.message ?? "invalid disk name");
    return join(this.dir, name + SUFFIX);
  }
}

const unsupported = (what: string) =>
  inputError(`${what} need Ceph RBD storage; this cluster uses dir storage`);
