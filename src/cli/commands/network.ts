// haven network list|exec: the bridges guests can use on each node, and (local clusters) a shell on the
// guest network.
import type { Command } from "commander";
import type { NodeView } from "../../api/service.js";
import { inputError } from "../../core/errors.js";
import type { CliContext } from "../context.js";
import { execInLab } from "../../setup/local-network.js";
import { printJson, printTable } from "../output.js";

export function registerNetwork(program: Command, ctx: CliContext): void {
  const network = program
    .command("network")
    .description("guest networks: bridges per node, the local lab network");
  network
    .command("list")
    .description("the bridges guests' network cards can use on each online node, and the local guest network")
    .option("--json", "machine-readable output")
    .action(async (options: { json?: boolean }) => {
      const [nodes, cluster] = await Promise.all([
        (await ctx.api()).get<NodeView[]>("/v1/nodes"),
        ctx.cluster(),
      ]);
      const lab = cluster.network ?? null;
      const bridges = nodes.map((node) => ({ node: node.name, bridges: node.bridges }));
      if (options.json) return printJson({ nodes: bridges, lab });
      printTable(
        ["NODE", "BRIDGES"],
        bridges.map((n) => [n.node, n.bridges.join(", ") || "-"]),
      );
      if (lab)
        console.log(
          `\nguest network of this local cluster: bridge ${lab.bridge}, ${lab.subnet}, DHCP ${lab.dhcpRange.join("-")} from ${lab.address}` +
            `\nreach guests with: haven network exec -- ssh debian@ADDRESS`,
        );
    });
  network
    .command("exec")
    .description("local clusters: run a command on the guest network (e.g. -- ssh debian@198.19.0.100)")
    .argument("<command...>", "the command and its arguments (put -- before it)")
    .action(async (command: string[]) => {
      const cluster = await ctx.cluster();
      if (!cluster.network)
        throw inputError(
          "this cluster has no local guest network ('haven cluster up' creates one for local clusters)",
        );
      process.exitCode = await execInLab(cluster.network, command);
    });
}
