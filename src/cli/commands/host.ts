// haven host list|add|exec: the hosts of a local cluster (a network namespace per node, and hosts made for
// servers that are to join), as an administrator sees the servers of a real cluster.
import type { Command } from "commander";
import type { CliContext } from "../context.js";
import { progress } from "../context.js";
import { addLocalHost } from "../../setup/local-cluster.js";
import { findHost, linkState, requireHosts } from "../../setup/local-hosts.js";
import { execInNamespace } from "../../lib/netns.js";
import { printJson, printTable } from "../output.js";

export function registerHost(program: Command, ctx: CliContext): void {
  const host = program
    .command("host")
    .description(
      "local clusters: the hosts (network namespaces) the nodes run in, and hosts for servers to join",
    );
  host
    .command("list")
    .description(
      "each host with its address, namespace, node and link (up, or cut by 'haven node partition')",
    )
    .option("--json", "machine-readable output")
    .action(async (options: { json?: boolean }) => {
      const cluster = await ctx.cluster();
      const hosts = await Promise.all(
        requireHosts(cluster.hosts).hosts.map(async (h) => ({
          ...h,
          node: cluster.nodes.some((node) => node.name === h.name),
          link: await linkState(h),
        })),
      );
      if (options.json) return printJson(hosts);
      printTable(
        ["NAME", "ADDRESS", "NAMESPACE", "NODE", "LINK"],
        hosts.map((h) => [h.name, h.address, h.namespace, h.node ? "yes" : "not yet", h.link]),
      );
    });
  host
    .command("add <name>")
    .description(
      "make a host for a server that is to join the cluster (then: haven host exec NAME -- haven join TOKEN --address ADDRESS …)",
    )
    .option("--json", "machine-readable output")
    .action(async (name: string, options: { json?: boolean }) => {
      const made = await addLocalHost(ctx.stateDir, name, progress);
      if (options.json) return printJson(made);
      console.log(`host ${made.name}: address ${made.address}, namespace ${made.namespace}`);
    });
  host
    .command("exec <name>")
    .description("run a command on a host (e.g. -- haven join TOKEN --address ADDRESS), with this terminal")
    .argument("<command...>", "the command and its arguments (put -- before it)")
    .action(async (name: string, command: string[]) => {
      const host = findHost((await ctx.cluster()).hosts, name);
      process.exitCode = await execInNamespace(host.namespace, command);
    });
}
