// haven fence list|agent set|agent clear: external fence agents per node and the storage fences in place.
import type { Command } from "commander";
import type { FenceAgent, StorageFence } from "../../core/model.js";
import type { CliContext } from "../context.js";
import { progress } from "../context.js";
import { printJson, printTable } from "../output.js";
import { intOption } from "../parse.js";

type Fencing = { agents: Array<FenceAgent & { node: string }>; storageFences: StorageFence[] };

export function registerFence(program: Command, ctx: CliContext): void {
  const fence = program
    .command("fence")
    .description("how failed nodes are fenced: external fence agents, and the storage fences in place");
  fence
    .command("list")
    .description("fence agents per node, and blocklisted clients of failed nodes not yet lifted")
    .option("--json", "machine-readable output")
    .action(async (options: { json?: boolean }) => {
      const fencing = await (await ctx.api()).get<Fencing>("/v1/fencing");
      if (options.json) return printJson(fencing);
      console.log("fence agents (run by the controller before a failed node's guests are recovered):");
      if (fencing.agents.length === 0) console.log("  none: failed nodes are fenced on storage only");
      else
        printTable(
          ["NODE", "COMMAND", "TIMEOUT"],
          fencing.agents.map((a) => [a.node, a.command.join(" "), `${a.timeoutSeconds} s`]),
        );
      console.log("storage fences (lifted when the node is back without the fenced guest):");
      if (fencing.storageFences.length === 0) console.log("  none");
      else
        printTable(
          ["NODE", "VM", "GENERATION", "BLOCKLISTED", "SINCE"],
          fencing.storageFences.map((f) => [f.node, f.vm, f.generation, f.addresses.join(", "), f.time]),
        );
    });

  const agent = fence.command("agent").description("external fence agents (power off) per node");
  agent
    .command("set <node> <command...>")
    .description(
      "run COMMAND (e.g. -- fence_ipmilan --ip 10.0.0.5 --username admin --password-script /etc/haven/ipmi-pass) to power NODE off before its guests are recovered; exit status 0 means off. It also gets action=off and nodename=NODE on stdin and HAVEN_FENCE_NODE in its environment",
    )
    .option("--timeout <seconds>", "give up on a run after this long (default 60)", intOption("--timeout"))
    .action(async (node: string, command: string[], options: { timeout?: number }) => {
      const set = await (
        await ctx.api()
      ).request<FenceAgent & { node: string }>("PUT", `/v1/fencing/agents/${encodeURIComponent(node)}`, {
        command,
        timeoutSeconds: options.timeout,
      });
      progress(`node ${node} is fenced with '${set.command.join(" ")}' (timeout ${set.timeoutSeconds} s)`);
    });
  agent
    .command("clear <node>")
    .description("remove NODE's fence agent: its failures are fenced on storage only")
    .action(async (node: string) => {
      await (await ctx.api()).delete(`/v1/fencing/agents/${encodeURIComponent(node)}`);
      progress(`node ${node} has no fence agent`);
    });
}
