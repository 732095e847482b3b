// haven vm create|list|show|start|stop|delete|console
import type { Command } from "commander";
import { resolve } from "node:path";
import { HavenError } from "../../core/errors.js";
import type { VmSpec, VmView } from "../../core/model.js";
import type { explainPlacement } from "../../core/placement-rules.js";
import { formatScore } from "../../core/scheduler/scores.js";
import { sleep } from "../../lib/async.js";
import { openConsole } from "../console.js";
import type { CliContext } from "../context.js";
import { progress } from "../context.js";
import { printJson, printTable } from "../output.js";
import { durationOption, intOption, scoreOption, sizeOption } from "../parse.js";
import { createFromLibvirt } from "./import.js";

interface CreateOptions {
  canary?: boolean;
  kernel?: string;
  initrd?: string;
  append?: string;
  memory?: number;
  vcpus?: number;
  diskSize?: number;
  restartLimit?: number;
  relocateLimit?: number;
  failureTimeout?: number;
  priority?: number;
  stickiness?: number;
  ha: boolean;
  allowMigrate: boolean;
  start?: boolean;
  wait: boolean;
  json?: boolean;
  fromLibvirt?: string;
  dryRun?: boolean;
}

const WAIT_TIMEOUT_MS = 120_000;

type PlacementExplanation = ReturnType<typeof explainPlacement> & { placedOn: string | null };

const HA_HELP = {
  restartLimit: "restarts after crashes before the VM moves to another node",
  relocateLimit: "moves to another node after the restart limit before the VM goes to error",
  failureTimeout: "crashes this long ago no longer count (e.g. 600, 10min, 1h; 0 = never forget)",
  priority: "after a node failure, guests of higher priority are recovered first",
  stickiness:
    "added to the score of the node the VM runs on: placement constraints move it (live when allowed) to a better-scoring node only when they outweigh it (a whole number; INFINITY keeps it put)",
};

type PolicyOptions = Pick<
  CreateOptions,
  "restartLimit" | "relocateLimit" | "failureTimeout" | "priority" | "stickiness"
> & { ha?: boolean; allowMigrate?: boolean };

/** The policy fields of `vm create` and `vm set`, as the API names them (unset ones stay undefined). */
function policyOf(options: PolicyOptions) {
  return {
    restartLimit: options.restartLimit,
    relocateLimit: options.relocateLimit,
    failureTimeoutSeconds: options.failureTimeout,
    priority: options.priority,
    stickiness: options.stickiness,
    ha: options.ha,
    allowMigrate: options.allowMigrate,
  };
}

export function registerVm(program: Command, ctx: CliContext): void {
  const vm = program.command("vm").description("create, start, stop and inspect virtual machines");
  vm.command("create <name>")
    .description("create a VM (stopped unless --start): the canary guest, or your own kernel and initrd")
    .option("--canary", "the canary guest: writes checksummed records and prints 'ack N' after each fsync")
    .option("--kernel <file>", "kernel image to boot")
    .option("--initrd <file>", "initramfs for the kernel")
    .option("--append <cmdline>", "kernel command line")
    .option("--memory <MB>", "memory in megabytes (canary: 128, else 512)", intOption("--memory"))
    .option("--vcpus <n>", "virtual CPUs (default 1)", intOption("--vcpus"))
    .option(
      "--disk-size <size>",
      "create a disk of this size (MB, or with G/T suffix; canary: 64)",
      sizeOption("--disk-size"),
    )
    .option("--restart-limit <n>", HA_HELP.restartLimit + " (default 3)", intOption("--restart-limit"))
    .option("--relocate-limit <n>", HA_HELP.relocateLimit + " (default 1)", intOption("--relocate-limit"))
    .option(
      "--failure-timeout <duration>",
      HA_HELP.failureTimeout + " (default 10min)",
      durationOption("--failure-timeout"),
    )
    .option("--priority <n>", HA_HELP.priority + " (default 0)", intOption("--priority"))
    .option("--stickiness <score>", HA_HELP.stickiness + " (default 0)", scoreOption("--stickiness"))
    .option("--no-ha", "do not recover it on another node when its node fails")
    .option("--no-allow-migrate", "never migrate it live: moves stop it, move it and start it")
    .option("--start", "start it right away")
    .option("--no-wait", "with --start: return without waiting for the guest to run")
    .option("--json", "machine-readable output")
    .option(
      "--from-libvirt <file>",
      "import a libvirt domain: its memory, vCPUs, kernel and existing RBD disks",
    )
    .option("--dry-run", "with --from-libvirt: show what would be created, without creating it")
    .action(async (name: string, options: CreateOptions) => {
      if (options.fromLibvirt !== undefined) {
        const imported = await createFromLibvirt(ctx, name, options.fromLibvirt, options);
        if (imported.dryRun || !options.start || !options.wait) return;
        const view = await waitForState(ctx, name, "running");
        if (!options.json) progress(`VM ${name} is ${view.state}${view.node ? ` on ${view.node}` : ""}`);
        return;
      }
      if (options.dryRun) throw new HavenError("INPUT", "--dry-run works with --from-libvirt only");
      const api = await ctx.api();
      const created = await api.post<VmView>("/v1/vms", {
        name,
        canary: options.canary ?? false,
        kernel: options.kernel === undefined ? undefined : resolve(options.kernel),
        initrd: options.initrd === undefined ? undefined : resolve(options.initrd),
        append: options.append,
        memoryMb: options.memory,
        vcpus: options.vcpus,
        diskSizeMb: options.diskSize,
        ...policyOf(options),
        start: options.start ?? false,
      });
      const view = options.start && options.wait ? await waitForState(ctx, name, "running") : created;
      if (options.json) printJson(view);
      else
        progress(
          `created VM ${name}${options.start ? `, ${view.state}${view.node ? ` on ${view.node}` : ""}` : " (stopped; 'haven vm start " + name + "' to run it)"}`,
        );
    });

  vm.command("set <name>")
    .description(
      "change a VM's HA, placement and migration policy (applies from the controller's next decision)",
    )
    .option("--restart-limit <n>", HA_HELP.restartLimit, intOption("--restart-limit"))
    .option("--relocate-limit <n>", HA_HELP.relocateLimit, intOption("--relocate-limit"))
    .option("--failure-timeout <duration>", HA_HELP.failureTimeout, durationOption("--failure-timeout"))
    .option("--priority <n>", HA_HELP.priority, intOption("--priority"))
    .option("--stickiness <score>", HA_HELP.stickiness, scoreOption("--stickiness"))
    .option("--ha", "recover it on another node when its node fails")
    .option("--no-ha", "do not recover it on another node when its node fails")
    .option("--allow-migrate", "may migrate live")
    .option("--no-allow-migrate", "never migrate live: moves stop, move and start it")
    .option("--json", "machine-readable output")
    .action(
      async (
        name: string,
        options: Omit<CreateOptions, "ha" | "allowMigrate"> & { ha?: boolean; allowMigrate?: boolean },
      ) => {
        const change = policyOf(options);
        const view = await (await ctx.api()).patch<VmView>(`/v1/vms/${encodeURIComponent(name)}`, change);
        if (options.json) printJson(view);
        else progress(`VM ${name} updated`);
      },
    );

  vm.command("explain <name>")
    .description("how placement weighs every online node for the VM: constraint scores, room, and its pick")
    .option("--json", "machine-readable output")
    .action(async (name: string, options: { json?: boolean }) => {
      const result = await (
        await ctx.api()
      ).get<PlacementExplanation>(`/v1/vms/${encodeURIComponent(name)}/explain`);
      if (options.json) return printJson(result);
      console.log(
        `VM ${name}: placed on ${result.placedOn ?? "no node"}; ${result.chosen ? `a new placement would pick ${result.chosen}` : `no node would take it: ${result.reason}`}`,
      );
      if (!result.constrained)
        console.log(
          "no placement constraint names it: the cluster's placement-strategy breaks the tie (balanced: the most free capacity)",
        );
      if (result.rebalance) console.log(`rebalancing: ${result.rebalance}`);
      printTable(
        ["NODE", "SCORE", "FREE", "VERDICT", "CONSTRAINTS"],
        result.nodes.map((n) => [
          n.node,
          n.score,
          `${n.free.memoryMb} MB, ${n.free.vcpus} vCPUs`,
          n.refused ?? (n.node === result.chosen ? "chosen" : "allowed"),
          n.contributions.map((c) => `${c.source} ${c.score > 0 ? "+" : ""}${c.score}`).join(", ") || "-",
        ]),
      );
    });

  vm.command("list")
    .description("all VMs with their state and node")
    .option("--json", "machine-readable output")
    .action(async (options: { json?: boolean }) => {
      const vms = await (await ctx.api()).get<VmView[]>("/v1/vms");
      if (options.json) return printJson(vms);
      printTable(
        ["NAME", "STATE", "NODE", "MEMORY", "VCPUS", "RESTARTS", "LAST ACK"],
        vms.map((v) => [
          v.name,
          v.state,
          v.node,
          `${v.memoryMb} MB`,
          v.vcpus,
          v.restarts,
          v.canary ? v.lastAck : null,
        ]),
      );
    });

  vm.command("show <name>")
    .description("one VM in detail")
    .option("--json", "machine-readable output")
    .action(async (name: string, options: { json?: boolean }) => {
      const view = await (
        await ctx.api()
      ).get<VmView & { spec: VmSpec }>(`/v1/vms/${encodeURIComponent(name)}`);
      if (options.json) return printJson(view);
      const lines: Array<[string, string | number | null]> = [
        ["name", view.name],
        ["state", view.state],
        ["desired", view.desired],
        ["node", view.node],
        ["pid", view.pid],
        ["accelerator", view.accel],
        ["generation", view.generation],
        ["restarts", view.restarts],
        ["ha", haSummary(view.spec)],
        ["stickiness", formatScore(view.spec.stickiness)],
        ["memory", `${view.memoryMb} MB`],
        ["vcpus", view.vcpus],
        ["disks", view.disks.join(", ") || "-"],
        ["canary", view.canary ? `yes, last ack ${view.lastAck ?? "-"}` : "no"],
        ["reason", view.reason],
      ];
      for (const [key, value] of lines)
        console.log(
          `${(key + ":").padEnd(13)}${value === null || value === undefined ? "-" : String(value)}`,
        );
    });

  for (const [verb, target] of [
    ["start", "running"],
    ["stop", "stopped"],
  ] as const) {
    vm.command(`${verb} <name>`)
      .description(
        verb === "start" ? "start a VM and wait until it runs" : "stop a VM and wait until it is stopped",
      )
      .option("--no-wait", "return as soon as the request is recorded")
      .option("--json", "machine-readable output")
      .action(async (name: string, options: { wait: boolean; json?: boolean }) => {
        const view = await (await ctx.api()).post<VmView>(`/v1/vms/${encodeURIComponent(name)}/${verb}`);
        const final = options.wait ? await waitForState(ctx, name, target) : view;
        if (options.json) printJson(final);
        else progress(`VM ${name} is ${final.state}${final.node ? ` on ${final.node}` : ""}`);
      });
  }

  vm.command("delete <name>")
    .description("delete a stopped VM and its disks")
    .action(async (name: string) => {
      await (await ctx.api()).delete(`/v1/vms/${encodeURIComponent(name)}`);
      progress(`deleted VM ${name}`);
    });

  vm.command("console <name>")
    .description("attach to the VM's serial console (leave with Ctrl-])")
    .action(async (name: string) => {
      await openConsole(ctx, name);
    });
}

function haSummary(spec: VmSpec): string {
  if (!spec.ha) return "off";
  const forget = spec.failureTimeoutSeconds === 0 ? "never" : `after ${spec.failureTimeoutSeconds} s`;
  return `on, priority ${spec.priority}, restart ${spec.restartLimit}x, relocate ${spec.relocateLimit}x, failures forgotten ${forget}`;
}

/** Polls until the VM reaches `target`; fails early on error states, with the reason. */
async function waitForState(ctx: CliContext, name: string, target: "running" | "stopped"): Promise<VmView> {
  const api = await ctx.api();
  const deadline = Date.now() + WAIT_TIMEOUT_MS;
  let last = "";
  for (;;) {
    const view = await api.get<VmView>(`/v1/vms/${encodeURIComponent(name)}`);
    if (view.state === target) return view;
    if (target === "running" && ["error", "failed"].includes(view.state)) {
      throw new HavenError("CONFLICT", `VM ${name} is ${view.state}: ${view.reason ?? "no reason given"}`);
    }
    if (view.state !== last && process.stderr.isTTY)
      progress(`${name}: ${view.state}${view.node ? ` on ${view.node}` : ""}`);
    last = view.state;
    if (Date.now() > deadline)
      throw new HavenError(
        "UNAVAILABLE",
        `VM ${name} did not become ${target} within ${WAIT_TIMEOUT_MS / 1000} s (now ${view.state})`,
      );
    await sleep(250);
  }
}
