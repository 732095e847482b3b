// haven disk create|resize|info|list|delete
import type { Command } from "commander";
import type { ImageInfo } from "../../adapters/storage/port.js";
import { inputError } from "../../core/errors.js";
import type { CliContext } from "../context.js";
import { progress } from "../context.js";
import { formatBytes, printJson, printTable } from "../output.js";
import { sizeOption } from "../parse.js";

export function registerDisk(program: Command, ctx: CliContext): void {
  const disk = program.command("disk").description("guest disk images on the cluster's storage");
  const path = (name: string) => `/v1/disks/${encodeURIComponent(name)}`;

  disk
    .command("create <name>")
    .description("create a thin disk image")
    .requiredOption("--size <size>", "size in MB, or with G/T suffix", sizeOption("--size"))
    .option("--json", "machine-readable output")
    .action(async (name: string, options: { size: number; json?: boolean }) => {
      const info = await (await ctx.api()).post<ImageInfo>("/v1/disks", { name, sizeMb: options.size });
      if (options.json) printJson(info);
      else progress(`created disk ${name} (${formatBytes(info.sizeBytes)})`);
    });

  disk
    .command("resize <name>")
    .description("grow a disk (shrinking needs --allow-shrink and loses data past the new end)")
    .requiredOption("--size <size>", "new size in MB, or with G/T suffix", sizeOption("--size"))
    .option("--allow-shrink", "allow making the disk smaller")
    .option("--json", "machine-readable output")
    .action(async (name: string, options: { size: number; allowShrink?: boolean; json?: boolean }) => {
      const info = await (
        await ctx.api()
      ).post<ImageInfo>(`${path(name)}/resize`, {
        sizeMb: options.size,
        allowShrink: options.allowShrink ?? false,
      });
      if (options.json) printJson(info);
      else progress(`disk ${name} is now ${formatBytes(info.sizeBytes)}`);
    });

  disk
    .command("info <name>")
    .description("size, allocation and location of one disk")
    .option("--json", "machine-readable output")
    .action(async (name: string, options: { json?: boolean }) => {
      const info = await (await ctx.api()).get<ImageInfo>(path(name));
      if (options.json) return printJson(info);
      console.log(
        `name:      ${info.name}\nsize:      ${formatBytes(info.sizeBytes)}\nused:      ${formatBytes(info.usedBytes)}\nformat:    ${info.format}\nlocation:  ${info.location}`,
      );
    });

  disk
    .command("list")
    .description("all disks")
    .option("--json", "machine-readable output")
    .action(async (options: { json?: boolean }) => {
      const disks = await (await ctx.api()).get<ImageInfo[]>("/v1/disks");
      if (options.json) return printJson(disks);
      printTable(
        ["NAME", "SIZE", "USED", "LOCATION"],
        disks.map((d) => [d.name, formatBytes(d.sizeBytes), formatBytes(d.usedBytes), d.location]),
      );
    });

  disk
    .command("delete <name>")
    .description("delete a disk that no VM uses")
    .action(async (name: string) => {
      if (!name) throw inputError("disk name is empty");
      await (await ctx.api()).delete(path(name));
      progress(`deleted disk ${name}`);
    });
}
