// haven node list
import type { Command } from "commander";
import type { NodeView } from "../../api/service.js";
import type { CliContext } from "../context.js";
import { printJson, printTable } from "../output.js";

export function registerNode(program: Command, ctx: CliContext): void {
  const node = program.command("node").description("cluster nodes");
  node
    .command("list")
    .description("online nodes with capacity, load and accelerator")
    .option("--json", "machine-readable output")
    .action(async (options: { json?: boolean }) => {
      const nodes = await (await ctx.api()).get<NodeView[]>("/v1/nodes");
      if (options.json) return printJson(nodes);
      printTable(
        ["NAME", "STATE", "API", "ACCEL", "STORAGE", "VCPUS", "MEMORY", "VMS"],
        nodes.map((n) => [
          n.name,
          n.state,
          n.api,
          n.accel,
          n.storage.ok ? "ok" : `unreachable: ${n.storage.summary}`,
          `${n.used.vcpus}/${n.capacity.vcpus}`,
          `${n.used.memoryMb}/${n.capacity.memoryMb} MB`,
          n.vms.join(",") || "-",
        ]),
      );
    });
}
