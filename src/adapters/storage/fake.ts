// In-memory storage for unit tests of the API, agent and controller logic, with RBD-like snapshots.
import { conflict, inputError, notFound } from "../../core/errors.js";
import type { ImageInfo, SnapshotInfo, StorageBackend, StorageHealth, StorageUsage } from "./port.js";

interface FakeImage {
  data: Uint8Array;
  snapshots: Map<string, Uint8Array>;
  parent: string | null;
}

export class FakeStorage implements StorageBackend {
  readonly kind = "dir";
  readonly images = new Map<string, FakeImage>();
  readonly watching = new Map<string, string[]>();
  healthy = true;

  async create(name: string, sizeBytes: number): Promise<ImageInfo> {
    if (this.images.has(name)) throw conflict(`disk ${name} already exists`);
    this.images.set(name, { data: new Uint8Array(sizeBytes), snapshots: new Map(), parent: null });
    return this.info(name);
  }

  async resize(name: string, sizeBytes: number, options: { allowShrink?: boolean } = {}): Promise<ImageInfo> {
    const image = this.get(name);
    if (sizeBytes < image.data.length && !options.allowShrink)
      throw inputError(`refusing to shrink disk ${name}`);
    const resized = new Uint8Array(sizeBytes);
    resized.set(image.data.subarray(0, Math.min(sizeBytes, image.data.length)));
    image.data = resized;
    return this.info(name);
  }

  async info(name: string): Promise<ImageInfo> {
    await Promise.resolve();
    const image = this.get(name);
    const location = `fake:${name}`;
    return {
      name,
      pool: null,
      sizeBytes: image.data.length,
      usedBytes: 0,
      format: "raw",
      location,
      parent: image.parent,
    };
  }

  list(): Promise<ImageInfo[]> {
    return Promise.all([...this.images.keys()].sort().map((name) => this.info(name)));
  }

  async delete(name: string): Promise<void> {
    if (!this.images.delete(name)) throw notFound(`disk ${name} does not exist`);
    await Promise.resolve();
  }

  async read(name: string, offset: number, length: number): Promise<Uint8Array> {
    await Promise.resolve();
    return this.get(name).data.slice(offset, offset + length);
  }

  async dataEnd(name: string): Promise<number> {
    await Promise.resolve();
    const data = this.get(name).data;
    let end = data.length;
    while (end > 0 && data[end - 1] === 0) end--;
    return end;
  }

  driveSource(name: string) {
    return { driver: "file" as const, filename: `/fake/${name}.raw` };
  }

  async health(): Promise<StorageHealth> {
    await Promise.resolve();
    return this.healthy
      ? { ok: true, summary: "fake storage" }
      : { ok: false, summary: "fake storage is down" };
  }

  async usage(): Promise<StorageUsage> {
    const images = await this.list();
    return {
      provisionedBytes: images.reduce((sum, i) => sum + i.sizeBytes, 0),
      usedBytes: 0,
      images: images.length,
    };
  }

  async createSnapshot(image: string, snapshot: string): Promise<SnapshotInfo> {
    const target = this.get(image);
    if (target.snapshots.has(snapshot)) throw conflict(`snapshot ${image}@${snapshot} already exists`);
    target.snapshots.set(snapshot, target.data.slice());
    return (await this.listSnapshots(image)).find((s) => s.name === snapshot)!;
  }

  async listSnapshots(image: string): Promise<SnapshotInfo[]> {
    await Promise.resolve();
    return [...this.get(image).snapshots].map(([name, data]) => ({
      name,
      image,
      sizeBytes: data.length,
      protected: false,
      createdAt: null,
    }));
  }

  async rollbackSnapshot(image: string, snapshot: string): Promise<void> {
    this.get(image).data = this.snapshot(image, snapshot).slice();
    await Promise.resolve();
  }

  async deleteSnapshot(image: string, snapshot: string): Promise<void> {
    this.snapshot(image, snapshot);
    this.get(image).snapshots.delete(snapshot);
    await Promise.resolve();
  }

  async clone(image: string, snapshot: string, target: string): Promise<ImageInfo> {
    const data = this.snapshot(image, snapshot);
    if (this.images.has(target)) throw conflict(`disk ${target} already exists`);
    this.images.set(target, { data: data.slice(), snapshots: new Map(), parent: `${image}@${snapshot}` });
    return this.info(target);
  }

  importFile(path: string, _target: string): Promise<ImageInfo> {
    return Promise.reject(inputError(`fake storage cannot import ${path}`));
  }

  async watchers(image: string): Promise<string[]> {
    await Promise.resolve();
    return this.watching.get(image) ?? [];
  }

  /** Every fence, in order, for tests of the fence-before-recover rule. */
  readonly fences: Array<{ image: string; addresses: string[] }> = [];
  canFence = true;

  async fence(image: string, _expireSeconds?: number): Promise<string[]> {
    await Promise.resolve();
    if (!this.canFence) throw inputError("fake storage cannot fence");
    const addresses = this.watching.get(image) ?? [];
    this.fences.push({ image, addresses });
    this.watching.delete(image);
    return addresses;
  }

  /** Every lifted fence, in order. */
  readonly unfenced: string[][] = [];

  async unfence(addresses: string[]): Promise<void> {
    await Promise.resolve();
    this.unfenced.push(addresses);
  }

  private get(name: string): FakeImage {
    const image = this.images.get(name);
    if (!image) throw notFound(`disk ${name} does not exist`);
    return image;
  }

  private snapshot(image: string, snapshot: string): Uint8Array {
    const data = this.get(image).snapshots.get(snapshot);
    if (!data) throw notFound(`snapshot ${image}@${snapshot} does not exist`);
    return data;
  }
}
