// haven vm migrate, haven node maintenance|drain, haven cluster migration-defaults.
import type { Command } from "commander";
import type { NodeView } from "../../api/service.js";
import { HavenError } from "../../core/errors.js";
import type { HavenEvent, MigrationDefaults, VmView } from "../../core/model.js";
import { sleep } from "../../lib/async.js";
import type { ApiClient } from "../api-client.js";
import type { CliContext } from "../context.js";
import { progress } from "../context.js";
import { printJson, printTable } from "../output.js";
import { durationOption, intOption } from "../parse.js";

interface MigrateOptions {
  to?: string;
  transport?: string;
  downtimeLimit?: number;
  bandwidth?: number;
  timeout?: number;
  cancel?: boolean;
  wait: boolean;
  json?: boolean;
}

const POLL_MS = 200;
/** A request the controller refuses never shows up as a migration; its event says why. */
const REFUSAL_WAIT_MS = 5000;
/** Events carry the controller's clock; allow it to be a little behind ours. */
const CLOCK_SLACK_MS = 500;
const MB = 1024 * 1024;

export function registerMigrate(program: Command, ctx: CliContext): void {
  const vm = program.commands.find((command) => command.name() === "vm")!;
  vm.command("migrate <name>")
    .description(
      "move a running VM to another node: live (TLS by default) when it allows migration, else stop, move, start",
    )
    .option("--to <node>", "target node (default: the controller picks one)")
    .option(
      "--transport <tls|tcp>",
      "tls (default, peer-verified with the cluster CA) or tcp (insecure, for testing)",
    )
    .option(
      "--downtime-limit <ms>",
      "longest pause QEMU may plan for the switch-over",
      intOption("--downtime-limit"),
    )
    .option(
      "--bandwidth <MB/s>",
      "bandwidth limit in MB/s (0 = QEMU's default, 128 MiB/s)",
      intOption("--bandwidth"),
    )
    .option(
      "--timeout <duration>",
      "cancel if not done after this long (e.g. 600, 10min)",
      durationOption("--timeout"),
    )
    .option("--cancel", "cancel the migration under way; the guest stays where it runs")
    .option("--no-wait", "return once the request is recorded")
    .option("--json", "machine-readable output")
    .action(async (name: string, options: MigrateOptions) => {
      const api = await ctx.api();
      const path = `/v1/vms/${encodeURIComponent(name)}/migrate`;
      if (options.cancel) {
        const cancelled = await api.post<{ id: string }>(`${path}/cancel`);
        const final = options.wait ? await followMigration(api, name, cancelled.id, null, false) : undefined;
        if (options.json) return printJson(final ?? cancelled);
        progress(
          final
            ? `VM ${name} runs on ${final.view.node}: ${final.event?.reason ?? "cancelled"}`
            : "cancel requested",
        );
        return;
      }
      if (options.transport !== undefined && !["tls", "tcp"].includes(options.transport))
        throw new HavenError("INPUT", `--transport must be tls or tcp, got "${options.transport}"`);
      const before = await api.get<VmView>(`/v1/vms/${encodeURIComponent(name)}`);
      const requested = await api.post<{ id: string }>(path, {
        to: options.to,
        settings: {
          transport: options.transport,
          downtimeLimitMs: options.downtimeLimit,
          maxBandwidthMBps: options.bandwidth,
          timeoutSeconds: options.timeout,
        },
      });
      if (!options.wait) {
        if (options.json) printJson(requested);
        else progress(`migration ${requested.id} requested`);
        return;
      }
      const result = await followMigration(api, name, requested.id, before.node, !options.json);
      if (options.json) printJson(result);
      if (result.view.node === before.node)
        throw new HavenError(
          "CONFLICT",
          `VM ${name} stays on ${before.node}: ${result.event?.reason ?? "the migration did not happen"}`,
        );
      if (!options.json)
        progress(
          `VM ${name} ${result.event?.type ?? "moved"} to ${result.view.node}: ${result.event?.reason ?? ""}`,
        );
    });

  const node = program.commands.find((command) => command.name() === "node")!;
  const maintenance = node
    .command("maintenance")
    .description("maintenance: a node that takes no guests and whose guests move away");
  for (const on of [true, false]) {
    maintenance
      .command(`${on ? "on" : "off"} <node>`)
      .description(
        on
          ? "put NODE in maintenance: its guests are moved away (live when allowed), it takes no new ones"
          : "take NODE out of maintenance: it takes guests again (guests are not moved back by themselves)",
      )
      .option("--json", "machine-readable output")
      .action(async (name: string, options: { json?: boolean }) => {
        const view = await (
          await ctx.api()
        ).request<NodeView>("PUT", `/v1/nodes/${encodeURIComponent(name)}/maintenance`, { on });
        if (options.json) return printJson(view);
        progress(`node ${name} is ${on ? "in maintenance" : "out of maintenance"}`);
      });
  }
  node
    .command("drain <node>")
    .description("put NODE in maintenance and wait until all its guests have moved away, with progress")
    .option(
      "--timeout <duration>",
      "give up waiting after this long (default 30min)",
      durationOption("--timeout"),
    )
    .option("--json", "machine-readable output")
    .action(async (name: string, options: { timeout?: number; json?: boolean }) => {
      const api = await ctx.api();
      const start = await api.request<NodeView>("PUT", `/v1/nodes/${encodeURIComponent(name)}/maintenance`, {
        on: true,
      });
      const total = start.vms.length;
      const deadline = Date.now() + (options.timeout ?? 1800) * 1000;
      let left = start.vms;
      let shown = "";
      while (left.length > 0) {
        if (Date.now() > deadline)
          throw new HavenError(
            "UNAVAILABLE",
            `node ${name} still has ${left.join(", ")}; see 'haven events' for why`,
          );
        await sleep(500);
        left = (await api.get<NodeView[]>("/v1/nodes")).find((n) => n.name === name)?.vms ?? [];
        const line = `draining ${name}: ${total - left.length}/${total} moved${left.length ? `, left: ${left.join(", ")}` : ""}`;
        if (line !== shown && !options.json) progress(line);
        shown = line;
      }
      if (options.json) printJson({ node: name, moved: start.vms });
      else
        progress(
          `node ${name} is drained and in maintenance ('haven node maintenance off ${name}' to use it again)`,
        );
    });

  const cluster = program.commands.find((command) => command.name() === "cluster")!;
  cluster
    .command("migration-defaults")
    .description("show or change the defaults of every migration, and how many run at once during a drain")
    .option("--transport <tls|tcp>", "tls or tcp")
    .option(
      "--downtime-limit <ms>",
      "longest planned pause at the switch-over",
      intOption("--downtime-limit"),
    )
    .option(
      "--bandwidth <MB/s>",
      "bandwidth limit in MB/s (0 = QEMU's default, 128 MiB/s)",
      intOption("--bandwidth"),
    )
    .option(
      "--timeout <duration>",
      "cancel a migration not done after this long",
      durationOption("--timeout"),
    )
    .option("--max-per-node <k>", "migrations at once per node", intOption("--max-per-node"))
    .option("--max-per-cluster <k>", "migrations at once in the cluster", intOption("--max-per-cluster"))
    .option("--json", "machine-readable output")
    .action(
      async (options: Omit<MigrateOptions, "wait"> & { maxPerNode?: number; maxPerCluster?: number }) => {
        const api = await ctx.api();
        const change = {
          transport: options.transport,
          downtimeLimitMs: options.downtimeLimit,
          maxBandwidthMBps: options.bandwidth,
          timeoutSeconds: options.timeout,
          maxPerNode: options.maxPerNode,
          maxPerCluster: options.maxPerCluster,
        };
        const changing = Object.values(change).some((value) => value !== undefined);
        const defaults = changing
          ? await api.patch<MigrationDefaults>("/v1/migration/defaults", change)
          : await api.get<MigrationDefaults>("/v1/migration/defaults");
        if (options.json) return printJson(defaults);
        printTable(
          ["SETTING", "VALUE"],
          [
            ["transport", defaults.transport],
            ["downtime limit", `${defaults.downtimeLimitMs} ms`],
            [
              "bandwidth",
              defaults.maxBandwidthMBps ? `${defaults.maxBandwidthMBps} MB/s` : "QEMU default (128 MiB/s)",
            ],
            ["timeout", `${defaults.timeoutSeconds} s`],
            ["at once per node", defaults.maxPerNode],
            ["at once in the cluster", defaults.maxPerCluster],
          ],
        );
      },
    );
}

/** Shows progress until the migration is over; returns the final view and the event that ended it. */
async function followMigration(
  api: ApiClient,
  name: string,
  id: string,
  from: string | null,
  show: boolean,
): Promise<{ view: VmView; event: (HavenEvent & { id: string }) | undefined }> {
  const started = Date.now();
  const path = `/v1/vms/${encodeURIComponent(name)}`;
  let view = await api.get<VmView>(path);
  let seen = false;
  for (;;) {
    const migration = view.migration?.id === id ? view.migration : null;
    if (migration) {
      seen = true;
      if (show) showProgress(name, migration, started);
    } else if (seen || view.node !== from || Date.now() - started > REFUSAL_WAIT_MS) break;
    await sleep(POLL_MS);
    view = await api.get<VmView>(path);
  }
  if (show && process.stderr.isTTY) process.stderr.write("\n");
  const events = await api.get<Array<HavenEvent & { id: string }>>(`/v1/events?limit=200`);
  const ends = ["migrated", "moved", "migration-failed", "migration-cancelled", "migration-refused"];
  const event = events
    .reverse()
    .find((e) => e.vm === name && ends.includes(e.type) && Date.parse(e.time) >= started - CLOCK_SLACK_MS);
  return { view, event };
}

function showProgress(name: string, migration: NonNullable<VmView["migration"]>, started: number): void {
  const p = migration.progress;
  const elapsed = ((Date.now() - started) / 1000).toFixed(1);
  const line = p
    ? `${name} ${migration.from} -> ${migration.to}: ${p.qemuStatus} ${(p.transferredBytes / MB).toFixed(0)} MB sent, ${(p.remainingBytes / MB).toFixed(0)} MB left, ${p.mbps.toFixed(0)} Mbit/s, expected downtime ${p.expectedDowntimeMs ?? "?"} ms, ${elapsed} s`
    : `${name} ${migration.from} -> ${migration.to}: ${migration.kind === "live" ? "preparing the target" : "stopping the guest"}, ${elapsed} s`;
  if (process.stderr.isTTY) process.stderr.write(`\r${line.padEnd(120).slice(0, 160)}`);
  else progress(line);
}
