// haven vm list|show|explain|start|stop|reboot|reset|delete|console (create and set: vm-create.ts)
import type { Command } from "commander";
import type { HavenEvent, VmSpec, VmView } from "../../core/model.js";
import type { explainPlacement } from "../../core/placement-rules.js";
import { formatScore } from "../../core/scheduler/scores.js";
import { openConsole } from "../console.js";
import type { CliContext } from "../context.js";
import { progress } from "../context.js";
import { printJson, printTable } from "../output.js";
import { registerVmCreate, registerVmSet } from "./vm-create.js";
import { waitForState } from "./vm-common.js";

type PlacementExplanation = ReturnType<typeof explainPlacement> & { placedOn: string | null };

export function registerVm(program: Command, ctx: CliContext): void {
  const vm = program.command("vm").description("create, start, stop and inspect virtual machines");
  registerVmCreate(vm, ctx);

  registerVmSet(vm, ctx);

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
        console.log("no placement constraint names it: the node with the most free memory wins");
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
        ["boot", bootSummary(view.spec)],
        ["cpu", view.spec.cpu ?? "max (TCG) / host (KVM)"],
        ["machine", view.spec.machine ?? "q35"],
        [
          "disks",
          view.spec.disks
            .map((d) => `${d.pool ? `${d.pool}/` : ""}${d.image} (${d.bus ?? "virtio-blk"})`)
            .join(", ") || "-",
        ],
        ["cdrom", view.spec.cdrom?.image ?? null],
        ...view.nics.map((nic, index): [string, string] => [
          `nic${index}`,
          `${nic.mac} on ${nic.bridge}${nic.vlan ? ` VLAN ${nic.vlan}` : ""} (${nic.model})${nic.addresses.length ? `: ${nic.addresses.join(", ")}` : ""}`,
        ]),
        ["cloud-init", view.spec.cloudInit ? cloudInitSummary(view.spec) : null],
        ["guest os", view.os],
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

  for (const [verb, description] of [
    ["reboot", "reboot a running VM through its guest agent (the guest shuts down cleanly and boots again)"],
    ["reset", "hard-reset a running VM, as its reset button would (no clean shutdown)"],
  ] as const) {
    vm.command(`${verb} <name>`)
      .description(description)
      .option("--json", "machine-readable output")
      .action(async (name: string, options: { json?: boolean }) => {
        const event = await (await ctx.api()).post<HavenEvent>(`/v1/vms/${encodeURIComponent(name)}/${verb}`);
        if (options.json) printJson(event);
        else progress(`VM ${name}: ${event.reason.replace(/ \(action \w+\)$/, "")}`);
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

function bootSummary(spec: VmSpec): string {
  if (spec.kernel !== undefined) return `kernel ${spec.kernel}`;
  return spec.firmware === "uefi" ? "UEFI (OVMF), variables on the storage" : "BIOS (SeaBIOS)";
}

function cloudInitSummary(spec: VmSpec): string {
  const c = spec.cloudInit!;
  const parts = [
    `user ${c.user ?? "(the image's default)"}`,
    `${c.sshKeys.length} SSH key(s)`,
    `hostname ${c.hostname ?? spec.name}`,
    ...(c.userData !== undefined ? ["own user-data"] : []),
    ...(c.networkConfig !== undefined ? ["own network-config"] : []),
  ];
  return parts.join(", ");
}

function haSummary(spec: VmSpec): string {
  if (!spec.ha) return "off";
  const forget = spec.failureTimeoutSeconds === 0 ? "never" : `after ${spec.failureTimeoutSeconds} s`;
  return `on, priority ${spec.priority}, restart ${spec.restartLimit}x, relocate ${spec.relocateLimit}x, failures forgotten ${forget}`;
}
