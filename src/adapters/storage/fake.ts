// In-memory storage for unit tests of the API and controller logic.
import { conflict, inputError, notFound } from "../../core/errors.js";
import type { ImageInfo, StorageBackend } from "./port.js";

export class FakeStorage implements StorageBackend {
  readonly kind = "dir";
  readonly images = new Map<string, Uint8Array>();

  create(name: string, sizeBytes: number): Promise<ImageInfo> {
    if (this.images.has(name)) return Promise.reject(conflict(`disk ${name} already exists`));
    this.images.set(name, new Uint8Array(sizeBytes));
    return this.info(name);
  }

  async resize(name: string, sizeBytes: number, options: { allowShrink?: boolean } = {}): Promise<ImageInfo> {
    const image = this.get(name);
    if (sizeBytes < image.length && !options.allowShrink) throw inputError(`refusing to shrink disk ${name}`);
    const resized = new Uint8Array(sizeBytes);
    resized.set(image.subarray(0, Math.min(sizeBytes, image.length)));
    this.images.set(name, resized);
    return this.info(name);
  }

  async info(name: string): Promise<ImageInfo> {
    await Promise.resolve();
    return { name, sizeBytes: this.get(name).length, usedBytes: 0, format: "raw", location: `fake:${name}` };
  }

  list(): Promise<ImageInfo[]> {
    return Promise.all([...this.images.keys()].sort().map((name) => this.info(name)));
  }

  delete(name: string): Promise<void> {
    if (!this.images.delete(name)) return Promise.reject(notFound(`disk ${name} does not exist`));
    return Promise.resolve();
  }

  async read(name: string, offset: number, length: number): Promise<Uint8Array> {
    await Promise.resolve();
    return this.get(name).slice(offset, offset + length);
  }

  driveSource(name: string) {
    return { driver: "file" as const, filename: `/fake/${name}.raw` };
  }

  private get(name: string): Uint8Array {
    const image = this.images.get(name);
    if (!image) throw notFound(`disk ${name} does not exist`);
    return image;
  }
}
