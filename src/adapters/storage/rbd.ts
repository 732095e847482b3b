// Guest disks as Ceph RBD images, driven through the `rbd`/`ceph` CLIs with `--format json` and every answer
// parsed with a schema (rbd-parse.ts). Names are validated before any tool runs; failures become Haven's
// semantic errors with one clear line. Multi-step operations (import, clone) leave nothing half-created.
import { stat } from "node:fs/promises";
import type { z } from "zod";
import { conflict, HavenError, inputError, notFound } from "../../core/errors.js";
import { imageNameSchema, MAX_DISK_MB, nameSchema, poolNameSchema } from "../../core/model.js";
import { run } from "../../lib/command.js";
import { cephExec, type CephIdentity } from "../ceph/exec.js";
import type { DriveSource } from "../qemu/port.js";
import type { ImageInfo, SnapshotInfo, StorageBackend, StorageHealth, StorageUsage } from "./port.js";
import {
  cephHealthSchema,
  cephPoolLsSchema,
  headUsedBytes,
  healthVerdict,
  isProtected,
  mapCephError,
  parentName,
  parseJson,
  qemuImgInfoSchema,
  rbdChildrenSchema,
  rbdDiffSchema,
  rbdDuSchema,
  rbdInfoSchema,
  rbdLsLongSchema,
  rbdSnapLsSchema,
  rbdLocksSchema,
  rbdStatusSchema,
  snapshotTime,
  type ErrorContext,
} from "./rbd-parse.js";
import { readRange } from "./rbd-stream.js";

/**
 * Features of every image Haven creates. All are handled by librbd under QEMU 7.2. exclusive-lock lets only
 * one client write at a time (and is what blocklist fencing relies on); object-map + fast-diff make `rbd du`,
 * export and clone-from-snapshot fast on sparse images; deep-flatten lets a clone be flattened with snapshots.
 */
export const RBD_FEATURES = "layering,exclusive-lock,object-map,fast-diff,deep-flatten";

const MAX_DISK_BYTES = MAX_DISK_MB * 1024 * 1024;
/** How long a client keeps trying to reach the monitors before the tool gives up (seconds). */
const MOUNT_TIMEOUT_S = 10;
/**
 * librados limits for every CLI call: connecting, monitor commands, and each OSD request. Long operations
 * (import, delete, rollback) may run for hours, but no single request may hang longer than a minute when
 * the pool's placement groups are down.
 */
const CLIENT_LIMITS: Record<string, number> = {
  client_mount_timeout: MOUNT_TIMEOUT_S,
  rados_mon_op_timeout: 30,
  rados_osd_op_timeout: 60,
};
const CLIENT_ARGS = Object.entries(CLIENT_LIMITS).flatMap(([key, value]) => [`--${key}`, String(value)]);
const LONG_TIMEOUT_MS = 6 * 3_600_000;
const snapshotNameSchema = nameSchema("snapshot");

export interface RbdStorageOptions {
  pool: string;
  /** Identity for management commands (create, snapshot, status...). */
  admin: CephIdentity;
  /** The cephx identity QEMU on `node` uses, so each node's clients can be told apart and fenced. */
  nodeIdentity: (node: string) => CephIdentity;
  /** Timeout of metadata commands; long ones (import, rollback, delete) get hours. */
  timeoutMs?: number;
}

export class RbdStorage implements StorageBackend {
  readonly kind = "rbd";
  readonly pool: string;
  private readonly admin: CephIdentity;
  private readonly nodeIdentity: (node: string) => CephIdentity;
  private readonly timeoutMs: number;

  constructor(options: RbdStorageOptions) {
    this.pool = validName(poolNameSchema, options.pool);
    this.admin = options.admin;
    this.nodeIdentity = options.nodeIdentity;
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  async create(name: string, sizeBytes: number): Promise<ImageInfo> {
    const spec = this.spec(name);
    validSize(sizeBytes);
    await this.rbd(["create", "--size", `${sizeBytes}B`, "--image-feature", RBD_FEATURES, spec], {
      exists: `disk ${name} already exists`,
    });
    return this.info(name);
  }

  async resize(name: string, sizeBytes: number, options: { allowShrink?: boolean } = {}): Promise<ImageInfo> {
    const spec = this.spec(name);
    validSize(sizeBytes);
    const current = await this.info(name);
    if (sizeBytes < current.sizeBytes && !options.allowShrink) {
      throw inputError(
        `refusing to shrink disk ${name} from ${current.sizeBytes} to ${sizeBytes} bytes (data past the new end is lost); pass --allow-shrink`,
      );
    }
    if (sizeBytes !== current.sizeBytes) {
      const shrink = sizeBytes < current.sizeBytes ? ["--allow-shrink"] : [];
      await this.rbd(["resize", "--no-progress", "--size", `${sizeBytes}B`, ...shrink, spec], {
        missing: `disk ${name} does not exist`,
        long: true,
      });
    }
    return this.info(name);
  }

  async info(name: string): Promise<ImageInfo> {
    const spec = this.spec(name);
    const missing = `disk ${name} does not exist`;
    const [info, du] = await settled([
      this.rbdJson(rbdInfoSchema, ["info", spec], { missing }),
      this.rbdJson(rbdDuSchema, ["du", spec], { missing }),
    ]);
    return this.imageInfo(name, info.size, headUsedBytes(du, name), parentName(info.parent));
  }

  async list(): Promise<ImageInfo[]> {
    const [entries, du] = await settled([
      this.rbdJson(rbdLsLongSchema, ["ls", "-l", this.pool], {}),
      this.rbdJson(rbdDuSchema, ["du", "-p", this.pool], {}),
    ]);
    return entries
      .filter((entry) => entry.snapshot === undefined)
      .map((entry) =>
        this.imageInfo(entry.image, entry.size, headUsedBytes(du, entry.image), parentName(entry.parent)),
      )
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  async delete(name: string): Promise<void> {
    const spec = this.spec(name);
    const [watchers, snapshots] = await settled([this.watchers(name), this.listSnapshots(name)]);
    if (watchers.length > 0) throw inUse(name, watchers, "delete");
    if (snapshots.length > 0) {
      throw conflict(
        `disk ${name} has snapshots (${snapshots.map((s) => s.name).join(", ")}); delete them before the disk`,
      );
    }
    await this.rbd(["rm", "--no-progress", spec], {
      missing: `disk ${name} does not exist`,
      busy: `disk ${name} is in use (a client has it open); stop its VM before deleting it`,
      long: true,
    });
  }

  async read(name: string, offset: number, length: number): Promise<Uint8Array> {
    const spec = this.spec(name);
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0)
      throw inputError(`read of disk ${name}: offset and length must be whole numbers >= 0`);
    if (length === 0) return new Uint8Array(0);
    // ~20 MB/s is the slowest export worth waiting for; a minute on top for connecting.
    const timeoutMs = 60_000 + Math.ceil((offset + length) / 20_000);
    try {
      return await readRange(this.admin, {
        args: [...CLIENT_ARGS, "export", "--no-progress", spec, "-"],
        offset,
        length,
        timeoutMs,
      });
    } catch (err) {
      throw this.mapError(err, { missing: `disk ${name} does not exist` });
    }
  }

  /** The end of the last extent `rbd diff` lists: what was ever written, with the parent's data for a clone. */
  async dataEnd(name: string): Promise<number> {
    const extents = await this.rbdJson(rbdDiffSchema, ["diff", this.spec(name)], {
      missing: `disk ${name} does not exist`,
    });
    return Math.max(0, ...extents.filter((e) => e.exists).map((e) => e.offset + e.length));
  }

  driveSource(name: string, node: string, pool?: string): DriveSource {
    const image = validName(imageNameSchema, name);
    const identity = this.nodeIdentity(node);
    return {
      driver: "rbd",
      pool: pool === undefined ? this.pool : validName(poolNameSchema, pool),
      image,
      user: identity.id,
      conf: identity.conf,
      keyring: identity.keyring,
    };
  }

  /** Usable means I/O can proceed: HEALTH_OK, or a warning that leaves every PG active (see healthVerdict). */
  async health(): Promise<StorageHealth> {
    try {
      const out = await cephExec(
        "ceph",
        this.admin,
        ["health", "--format", "json", "--connect-timeout", String(MOUNT_TIMEOUT_S)],
        { timeoutMs: (MOUNT_TIMEOUT_S + 5) * 1000 },
      );
      return healthVerdict(parseJson(cephHealthSchema, out, "ceph health"));
    } catch (err) {
      const mapped = this.mapError(err, {});
      return { ok: false, summary: mapped instanceof Error ? mapped.message : String(mapped) };
    }
  }

  async usage(): Promise<StorageUsage> {
    const du = await this.rbdJson(rbdDuSchema, ["du", "-p", this.pool], {});
    const heads = du.images.filter((entry) => entry.snapshot === undefined);
    return {
      provisionedBytes: du.total_provisioned_size ?? heads.reduce((sum, i) => sum + i.provisioned_size, 0),
      // Snapshots occupy space too: the pool total counts them.
      usedBytes: du.total_used_size ?? du.images.reduce((sum, i) => sum + i.used_size, 0),
      images: heads.length,
    };
  }

  async createSnapshot(image: string, snapshot: string): Promise<SnapshotInfo> {
    const spec = this.snapSpec(image, snapshot);
    await this.rbd(["snap", "create", "--no-progress", spec], {
      missing: `disk ${image} does not exist`,
      exists: `snapshot ${image}@${snapshot} already exists`,
    });
    return this.snapshot(image, snapshot);
  }

  async listSnapshots(image: string): Promise<SnapshotInfo[]> {
    const snaps = await this.rbdJson(rbdSnapLsSchema, ["snap", "ls", this.spec(image)], {
      missing: `disk ${image} does not exist`,
    });
    return snaps.map((snap) => ({
      name: snap.name,
      image,
      sizeBytes: snap.size,
      protected: isProtected(snap.protected),
      createdAt: snapshotTime(snap.timestamp),
    }));
  }

  async rollbackSnapshot(image: string, snapshot: string): Promise<void> {
    const spec = this.snapSpec(image, snapshot);
    const watchers = await this.watchers(image);
    if (watchers.length > 0) throw inUse(image, watchers, "roll back");
    await this.snapshot(image, snapshot);
    await this.rbd(["snap", "rollback", "--no-progress", spec], {
      missing: `snapshot ${image}@${snapshot} does not exist`,
      busy: `disk ${image} is in use (a client has it open); stop its VM before rolling it back`,
      long: true,
    });
  }

  async deleteSnapshot(image: string, snapshot: string): Promise<void> {
    const spec = this.snapSpec(image, snapshot);
    const snap = await this.snapshot(image, snapshot);
    const children = await this.children(image, snapshot);
    if (children.length > 0) {
      throw conflict(
        `snapshot ${image}@${snapshot} has clones (${children.join(", ")}); delete or flatten them first`,
      );
    }
    const missing = `snapshot ${image}@${snapshot} does not exist`;
    if (snap.protected) await this.rbd(["snap", "unprotect", spec], { missing });
    await this.rbd(["snap", "rm", "--no-progress", spec], { missing, long: true });
  }

  async clone(image: string, snapshot: string, target: string): Promise<ImageInfo> {
    const source = this.snapSpec(image, snapshot);
    const destination = this.spec(target);
    const snap = await this.snapshot(image, snapshot);
    if (!snap.protected) {
      await this.rbd(["snap", "protect", source], { missing: `snapshot ${image}@${snapshot} does not exist` })
        // Someone protected it meanwhile: that is what we wanted.
        .catch((err: unknown) => {
          if (!(err instanceof Error && /already protected|\(16\)/.test(err.message))) throw err;
        });
    }
    await this.rbd(["clone", "--image-feature", RBD_FEATURES, source, destination], {
      missing: `snapshot ${image}@${snapshot} does not exist`,
      exists: `disk ${target} already exists`,
    });
    return this.info(target);
  }

  /**
   * raw: `rbd import` (sparse, progress on stderr). qcow2: the target is created first (so an existing name
   * fails before any work), then `qemu-img convert -n` writes into it. A failed import removes its target.
   */
  async importFile(
    path: string,
    target: string,
    onProgress?: (fraction: number) => void,
  ): Promise<ImageInfo> {
    const destination = this.spec(target);
    const file = await stat(path).catch(() => undefined);
    if (!file) throw inputError(`file ${path} does not exist`);
    if (!file.isFile()) throw inputError(`${path} is not a regular file`);
    const probe = await run("qemu-img", ["info", "--output=json", "-U", path], { timeoutMs: 60_000 }).catch(
      (err: unknown) => {
        throw inputError(`cannot read ${path}: ${(err as Error).message}`);
      },
    );
    const format = parseJson(qemuImgInfoSchema, probe, "qemu-img info");
    if (format.format !== "raw" && format.format !== "qcow2")
      throw inputError(`${path} is a ${format.format} image; Haven imports raw or qcow2 files`);
    const size = format["virtual-size"];
    if (size === 0 || size > MAX_DISK_BYTES)
      throw inputError(`${path} holds a ${size}-byte disk; Haven imports disks of 1 byte to 64 TiB`);
    if (await this.exists(target)) throw conflict(`disk ${target} already exists`);

    const progress = (pattern: RegExp) => (chunk: string) => {
      const last = [...chunk.matchAll(pattern)].at(-1);
      if (last) onProgress?.(Math.min(Number(last[1]) / 100, 1));
    };
    try {
      if (format.format === "raw") {
        await this.rbd(
          ["import", "--image-format", "2", "--image-feature", RBD_FEATURES, path, destination],
          {
            exists: `disk ${target} already exists`,
            long: true,
            onStderr: progress(/Importing image: (\d+)% complete/g),
          },
        );
      } else {
        await this.create(target, size);
        await run(
          "qemu-img",
          [
            "convert",
            "-p",
            "-n",
            "--target-is-zero",
            "-W",
            "-f",
            "qcow2",
            "-O",
            "raw",
            path,
            this.qemuUri(target),
          ],
          { timeoutMs: LONG_TIMEOUT_MS, onStdout: progress(/\((\d+(?:\.\d+)?)\/100%\)/g) },
        );
      }
    } catch (err) {
      // EEXIST means someone else's image: never remove that one.
      if (!(err instanceof HavenError && err.code === "CONFLICT")) {
        await this.rbd(["rm", "--no-progress", destination], { long: true }).catch(() => undefined);
      }
      const mapped = this.mapError(err, { exists: `disk ${target} already exists` });
      throw mapped instanceof HavenError
        ? mapped
        : inputError(`cannot import ${path}: ${(err as Error).message}`);
    }
    onProgress?.(1);
    return this.info(target);
  }

  async watchers(image: string): Promise<string[]> {
    const status = await this.rbdJson(rbdStatusSchema, ["status", this.spec(image)], {
      missing: `disk ${image} does not exist`,
    });
    return status.watchers.map((watcher) => watcher.address);
  }

  async fence(image: string, expireSeconds: number): Promise<string[]> {
    const missing = `disk ${image} does not exist`;
    const locks = await this.rbdJson(rbdLocksSchema, ["lock", "ls", this.spec(image)], { missing });
    const addresses = [
      ...new Set([...(await this.watchers(image)), ...locks.map((lock) => lock.address)]),
    ].sort();
    for (const address of addresses) {
      await cephExec("ceph", this.admin, ["osd", "blocklist", "add", address, String(expireSeconds)], {
        timeoutMs: this.timeoutMs,
      }).catch((err: unknown) => {
        throw this.mapError(err, {});
      });
    }
    // A blocklisted owner never releases the exclusive lock by itself; break it so the new QEMU can take it.
    for (const lock of locks)
      await this.rbd(["lock", "rm", this.spec(image), lock.id, lock.locker], { missing });
    return addresses;
  }

  async unfence(addresses: string[]): Promise<void> {
    for (const address of addresses) {
      // `blocklist rm` of an entry that expired or was removed already succeeds too.
      await cephExec("ceph", this.admin, ["osd", "blocklist", "rm", address], {
        timeoutMs: this.timeoutMs,
      }).catch((err: unknown) => {
        throw this.mapError(err, {});
      });
    }
  }

  /** `rbd:POOL/IMAGE:id=..:conf=..:keyring=..` for qemu-img, with the admin identity. */
  qemuUri(name: string): string {
    const escape = (value: string) => value.replace(/\\/g, "\\\\").replace(/:/g, "\\:");
    const { id, conf, keyring } = this.admin;
    const limits = Object.entries(CLIENT_LIMITS).map(([key, value]) => `:${key}=${value}`);
    return `rbd:${this.spec(name)}:id=${escape(id)}:conf=${escape(conf)}:keyring=${escape(keyring)}${limits.join("")}`;
  }

  private async snapshot(image: string, snapshot: string): Promise<SnapshotInfo> {
    const found = (await this.listSnapshots(image)).find((snap) => snap.name === snapshot);
    if (!found) throw notFound(`snapshot ${image}@${snapshot} does not exist`);
    return found;
  }

  /** Clones of a snapshot, as `pool/image`. */
  private async children(image: string, snapshot: string): Promise<string[]> {
    const children = await this.rbdJson(rbdChildrenSchema, ["children", this.snapSpec(image, snapshot)], {
      missing: `snapshot ${image}@${snapshot} does not exist`,
    });
    return children.map((child) =>
      [child.pool, child.pool_namespace || undefined, child.image].filter(Boolean).join("/"),
    );
  }

  private async exists(name: string): Promise<boolean> {
    try {
      await this.rbdJson(rbdInfoSchema, ["info", this.spec(name)], { missing: "gone" });
      return true;
    } catch (err) {
      if (err instanceof HavenError && err.code === "NOT_FOUND" && err.message === "gone") return false;
      throw err;
    }
  }

  private imageInfo(name: string, sizeBytes: number, usedBytes: number, parent: string | null): ImageInfo {
    return {
      name,
      pool: this.pool,
      sizeBytes,
      usedBytes,
      format: "raw",
      location: `rbd:${this.pool}/${name}`,
      parent,
    };
  }

  private async rbdJson<T>(
    schema: z.ZodType<T>,
    args: string[],
    context: Omit<ErrorContext, "pool" | "identity">,
  ): Promise<T> {
    const out = await this.rbd([...args, "--format", "json"], context);
    return parseJson(schema, out, `rbd ${args.slice(0, 2).join(" ")}`);
  }

  private async rbd(
    args: string[],
    context: Omit<ErrorContext, "pool" | "identity"> & { long?: boolean; onStderr?: (chunk: string) => void },
  ): Promise<string> {
    try {
      return await cephExec("rbd", this.admin, [...CLIENT_ARGS, ...args], {
        timeoutMs: context.long ? LONG_TIMEOUT_MS : this.timeoutMs,
        onStderr: context.onStderr,
      });
    } catch (err) {
      throw this.mapError(err, context);
    }
  }

  private mapError(err: unknown, context: Omit<ErrorContext, "pool" | "identity">): unknown {
    return mapCephError(err, { ...context, pool: this.pool, identity: this.admin });
  }

  /** `POOL/IMAGE`, after the name passed the same rules every Haven name does. */
  private spec(name: string): string {
    return `${this.pool}/${validName(imageNameSchema, name)}`;
  }

  private snapSpec(image: string, snapshot: string): string {
    return `${this.spec(image)}@${validName(snapshotNameSchema, snapshot)}`;
  }
}

/** An RBD backend for `pool`, after checking that the pool exists (NOT_FOUND otherwise). */
export async function openRbdStorage(options: RbdStorageOptions): Promise<RbdStorage> {
  const storage = new RbdStorage(options);
  let out: string;
  try {
    out = await cephExec(
      "ceph",
      options.admin,
      ["osd", "pool", "ls", "--format", "json", "--connect-timeout", String(MOUNT_TIMEOUT_S)],
      { timeoutMs: options.timeoutMs ?? (MOUNT_TIMEOUT_S + 5) * 1000 },
    );
  } catch (err) {
    throw mapCephError(err, { pool: storage.pool, identity: options.admin });
  }
  const pools = parseJson(cephPoolLsSchema, out, "ceph osd pool ls");
  if (!pools.includes(storage.pool)) throw notFound(`pool ${storage.pool} does not exist`);
  return storage;
}

/** Promise.all for two commands that waits for both to end before it fails, so no rbd outlives the call. */
async function settled<A, B>([a, b]: [Promise<A>, Promise<B>]): Promise<[A, B]> {
  const [first, second] = await Promise.allSettled([a, b]);
  if (first.status === "rejected") throw first.reason;
  if (second.status === "rejected") throw second.reason;
  return [first.value, second.value];
}

function validName(schema: z.ZodType<string>, name: unknown): string {
  const parsed = schema.safeParse(name);
  if (!parsed.success) throw inputError(parsed.error.issues[0]?.message ?? "invalid name");
  return parsed.data;
}

function validSize(sizeBytes: number): void {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0)
    throw inputError(`disk size must be a whole number of bytes above 0 (got ${sizeBytes})`);
  if (sizeBytes > MAX_DISK_BYTES)
    throw inputError(`disk size ${sizeBytes} bytes is above the ${MAX_DISK_MB / 1024 / 1024} TiB limit`);
  if (sizeBytes % 512 !== 0) throw inputError(`disk size must be a multiple of 512 bytes (got ${sizeBytes})`);
}

function inUse(image: string, watchers: string[], action: string): Error {
  return conflict(`disk ${image} is in use by ${watchers.join(", ")}; stop its VM before you ${action} it`);
}
