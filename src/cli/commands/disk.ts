// haven disk create|resize|info|list|delete|snapshot|clone|import
import type { Command } from "commander";
import { openStorage } from "../../adapters/storage/config.js";
import type { ImageInfo, SnapshotInfo } from "../../adapters/storage/port.js";
import { imageNameSchema } from "../../core/model.js";
import { inputError } from "../../core/errors.js";
import type { CliContext } from "../context.js";
import { progress } from "../context.js";
import { formatBytes, printJson, printTable } from "../output.js";
import { sizeOption } from "../parse.js";
import { progressBar } from "../progress-bar.js";

interface PoolFlag {
  pool?: string;
  json?: boolean;
}

export function registerDisk(program: Command, ctx: CliContext): void {
  const disk = program.command("disk").description("guest disk images on the cluster's storage");
  const path = (name: string, options: PoolFlag, suffix = "") =>
    `/v1/disks/${encodeURIComponent(name)}${suffix}${options.pool ? `?pool=${encodeURIComponent(options.pool)}` : ""}`;
  const withPool = (command: Command) =>
    command
      .option("--pool <pool>", "RBD pool (default: the cluster's pool, rbd)")
      .option("--json", "machine-readable output");

  withPool(disk.command("create <name>").description("create a thin disk image"))
    .requiredOption("--size <size>", "size in MB, or with G/T suffix", sizeOption("--size"))
    .action(async (name: string, options: PoolFlag & { size: number }) => {
      const query = options.pool ? `?pool=${encodeURIComponent(options.pool)}` : "";
      const info = await (
        await ctx.api()
      ).post<ImageInfo>(`/v1/disks${query}`, { name, sizeMb: options.size });
      if (options.json) printJson(info);
      else progress(`created disk ${name} (${formatBytes(info.sizeBytes)}, ${info.location})`);
    });

  withPool(
    disk
      .command("resize <name>")
      .description("grow a disk (shrinking needs --allow-shrink and loses data past the new end)"),
  )
    .requiredOption("--size <size>", "new size in MB, or with G/T suffix", sizeOption("--size"))
    .option("--allow-shrink", "allow making the disk smaller")
    .action(async (name: string, options: PoolFlag & { size: number; allowShrink?: boolean }) => {
      const info = await (
        await ctx.api()
      ).post<ImageInfo>(path(name, options, "/resize"), {
        sizeMb: options.size,
        allowShrink: options.allowShrink ?? false,
      });
      if (options.json) printJson(info);
      else progress(`disk ${name} is now ${formatBytes(info.sizeBytes)}`);
    });

  withPool(
    disk.command("info <name>").description("size, allocation, location and parent of one disk"),
  ).action(async (name: string, options: PoolFlag) => {
    const info = await (await ctx.api()).get<ImageInfo>(path(name, options));
    if (options.json) return printJson(info);
    const rows: Array<[string, string]> = [
      ["name", info.name],
      ["size", formatBytes(info.sizeBytes)],
      ["used", formatBytes(info.usedBytes)],
      ["format", info.format],
      ["location", info.location],
      ["parent", info.parent ?? "-"],
    ];
    for (const [key, value] of rows) console.log(`${(key + ":").padEnd(10)}${value}`);
  });

  withPool(disk.command("list").description("all disks")).action(async (options: PoolFlag) => {
    const query = options.pool ? `?pool=${encodeURIComponent(options.pool)}` : "";
    const disks = await (await ctx.api()).get<ImageInfo[]>(`/v1/disks${query}`);
    if (options.json) return printJson(disks);
    printTable(
      ["NAME", "SIZE", "USED", "PARENT", "LOCATION"],
      disks.map((d) => [d.name, formatBytes(d.sizeBytes), formatBytes(d.usedBytes), d.parent, d.location]),
    );
  });

  withPool(disk.command("delete <name>").description("delete a disk that no VM uses")).action(
    async (name: string, options: PoolFlag) => {
      await (await ctx.api()).delete(path(name, options));
      progress(`deleted disk ${name}`);
    },
  );

  const snapshot = disk.command("snapshot").description("snapshots of a disk (Ceph RBD)");
  withPool(snapshot.command("create <disk> <snapshot>").description("take a snapshot")).action(
    async (name: string, snap: string, options: PoolFlag) => {
      const info = await (
        await ctx.api()
      ).post<SnapshotInfo>(path(name, options, "/snapshots"), { snapshot: snap });
      if (options.json) printJson(info);
      else progress(`created snapshot ${name}@${snap}`);
    },
  );
  withPool(snapshot.command("list <disk>").description("a disk's snapshots")).action(
    async (name: string, options: PoolFlag) => {
      const snaps = await (await ctx.api()).get<SnapshotInfo[]>(path(name, options, "/snapshots"));
      if (options.json) return printJson(snaps);
      printTable(
        ["SNAPSHOT", "SIZE", "PROTECTED", "CREATED"],
        snaps.map((s) => [s.name, formatBytes(s.sizeBytes), s.protected ? "yes" : "no", s.createdAt]),
      );
    },
  );
  withPool(
    snapshot
      .command("rollback <disk> <snapshot>")
      .description("roll a disk back to a snapshot (no VM may use it)"),
  ).action(async (name: string, snap: string, options: PoolFlag) => {
    await (await ctx.api()).post(path(name, options, `/snapshots/${encodeURIComponent(snap)}/rollback`));
    progress(`rolled ${name} back to ${snap}`);
  });
  withPool(
    snapshot.command("delete <disk> <snapshot>").description("delete a snapshot that no clone depends on"),
  ).action(async (name: string, snap: string, options: PoolFlag) => {
    await (await ctx.api()).delete(path(name, options, `/snapshots/${encodeURIComponent(snap)}`));
    progress(`deleted snapshot ${name}@${snap}`);
  });

  withPool(
    disk
      .command("clone <source> <target>")
      .description(
        "a new disk from a snapshot, written as DISK@SNAPSHOT (golden images); protects the snapshot",
      ),
  ).action(async (source: string, target: string, options: PoolFlag) => {
    const [image, snap, ...rest] = source.split("@");
    if (!image || !snap || rest.length > 0)
      throw inputError(`clone source must be DISK@SNAPSHOT, got "${source}"`);
    const info = await (
      await ctx.api()
    ).post<ImageInfo>(path(image, options, "/clone"), { snapshot: snap, target });
    if (options.json) printJson(info);
    else progress(`cloned ${source} into ${target} (${formatBytes(info.sizeBytes)})`);
  });

  disk
    .command("import <file> <name>")
    .description("import a local raw or qcow2 file as a new disk, with progress (runs on this machine)")
    .option("--json", "machine-readable output")
    .action(async (file: string, name: string, options: { json?: boolean }) => {
      const parsed = imageNameSchema.safeParse(name);
      if (!parsed.success) throw inputError(parsed.error.issues[0]?.message ?? "invalid disk name");
      const storage = openStorage((await ctx.cluster()).storage);
      const bar = progressBar(`importing ${file}`);
      const info = await storage.importFile(file, name, (fraction) => bar.update(fraction));
      bar.update(1);
      bar.done();
      if (options.json) printJson(info);
      else progress(`imported ${file} as ${name} (${formatBytes(info.sizeBytes)}, ${info.location})`);
    });
}
