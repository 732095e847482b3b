// haven canary verify, haven events
import type { Command } from "commander";
import type { CanaryReport } from "../../core/canary.js";
import type { HavenEvent } from "../../core/model.js";
import type { CliContext } from "../context.js";
import { printJson, printTable } from "../output.js";
import { intOption } from "../parse.js";

export function registerMisc(program: Command, ctx: CliContext): void {
  program
    .command("canary")
    .description("the canary guest, Haven's data-integrity oracle")
    .command("verify <vm>")
    .description(
      "read the canary's disk through the storage layer: highest sequence, gaps, corrupt records, forks",
    )
    .option("--json", "machine-readable output")
    .action(async (vm: string, options: { json?: boolean }) => {
      const report = await (
        await ctx.api()
      ).get<CanaryReport & { disk: string }>(`/v1/vms/${encodeURIComponent(vm)}/canary`);
      if (options.json) return printJson(report);
      const clean = report.gaps.length === 0 && report.corrupt.length === 0 && report.forks.length === 0;
      console.log(
        `${vm} (${report.disk}): highest sequence ${report.highestSeq}, ${report.records} records, ${clean ? "clean" : "PROBLEMS"}`,
      );
      for (const gap of report.gaps) console.log(`  gap: ${gap.from}-${gap.to}`);
      for (const bad of report.corrupt) console.log(`  corrupt slot ${bad.slot}: ${bad.reason}`);
      for (const fork of report.forks) console.log(`  fork at ${fork.seq}: ${fork.reason}`);
      if (!clean) process.exitCode = 1;
    });

  program
    .command("events")
    .description("every decision Haven made, with its reason")
    .option("--limit <n>", "how many of the newest events", intOption("--limit"), 50)
    .option("--json", "machine-readable output")
    .action(async (options: { limit: number; json?: boolean }) => {
      const events = await (await ctx.api()).get<HavenEvent[]>(`/v1/events?limit=${options.limit}`);
      if (options.json) return printJson(events);
      printTable(
        ["TIME", "TYPE", "VM", "NODE", "REASON"],
        events.map((e) => [e.time, e.type, e.vm, e.node, e.reason]),
      );
    });
}
