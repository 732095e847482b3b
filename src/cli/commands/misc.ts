// haven canary verify, haven events
import type { Command } from "commander";
import type { CanaryReport } from "../../core/canary.js";
import type { HavenEvent } from "../../core/model.js";
import { sleep } from "../../lib/async.js";
import type { ApiClient } from "../api-client.js";
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
      ).get<CanaryReport & { disk: string }>(`/v1/vms/${encodeURIComponent(vm)}/canary`, {
        // It reads the guest's disk: seconds on a busy machine, more on a large disk.
        timeoutMs: 600_000,
      });
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
    .option("--follow", "keep printing new events as they happen (Ctrl-C to stop)")
    .option("--json", "machine-readable output (with --follow: one JSON object per line)")
    .action(async (options: { limit: number; follow?: boolean; json?: boolean }) => {
      const api = await ctx.api();
      const events = await api.get<Array<HavenEvent & { id: string }>>(`/v1/events?limit=${options.limit}`);
      if (!options.follow) {
        if (options.json) return printJson(events);
        return printTable(
          ["TIME", "TYPE", "VM", "NODE", "REASON"],
          events.map((e) => [e.time, e.type, e.vm, e.node, e.reason]),
        );
      }
      await followEvents(api, events, options.json ?? false);
    });
}

const FOLLOW_POLL_MS = 500;

/**
 * Prints events as they come. Polling through the API client (rather than holding one stream) keeps following
 * across the loss of the node it talks to: the next poll simply goes to another node.
 */
async function followEvents(
  api: ApiClient,
  initial: Array<HavenEvent & { id: string }>,
  json: boolean,
): Promise<never> {
  const print = (e: HavenEvent) =>
    console.log(
      json
        ? JSON.stringify(e)
        : [e.time, e.type.padEnd(14), (e.vm ?? "-").padEnd(12), (e.node ?? "-").padEnd(8), e.reason].join(
            "  ",
          ),
    );
  initial.forEach(print);
  let after = initial.at(-1)?.id ?? "";
  for (;;) {
    await sleep(FOLLOW_POLL_MS);
    const fresh = await api
      .get<Array<HavenEvent & { id: string }>>(`/v1/events?limit=10000&after=${encodeURIComponent(after)}`)
      .catch((err: unknown) => {
        process.stderr.write(`haven: ${(err as Error).message}; retrying\n`);
        return [];
      });
    fresh.forEach(print);
    after = fresh.at(-1)?.id ?? after;
  }
}
