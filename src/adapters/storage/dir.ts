// Sparse raw image files in one directory that all nodes share (a local cluster's state dir, or NFS).
import { constants } from "node:fs";
import { mkdir, open, readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { conflict, inputError, notFound } from "../../core/errors.js";
import { imageNameSchema } from "../../core/model.js";
import type { ImageInfo, StorageBackend } from "./port.js";

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
    return { name, sizeBytes: stats.size, usedBytes: stats.blocks * 512, format: "raw", location: path };
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

  driveSource(name: string) {
    return { driver: "file" as const, filename: this.pathOf(name) };
  }

  private pathOf(name: string): string {
    const parsed = imageNameSchema.safeParse(name);
    if (!parsed.success) throw inputError(parsed.error.issues[0]?.message ?? "invalid disk name");
    return join(this.dir, name + SUFFIX);
  }
}
