// haven etcd list; fault commands for local clusters: haven etcd kill|start MEMBER
import type { Command } from "commander";
import type { CliContext } from "../context.js";
import { etcdMembers, killEtcdMember, startEtcdMember } from "../../setup/local-faults.js";
import { printJson, printTable } from "../output.js";

export function registerEtcd(program: Command, ctx: CliContext): void {
  const etcd = program.command("etcd").description("the cluster's etcd members");
  etcd
    .command("list")
    .description("etcd members with endpoint, vote, pid and health (GET /health on each)")
    .option("--json", "machine-readable output")
    .action(async (options: { json?: boolean }) => {
      const members = await etcdMembers(ctx.stateDir, await ctx.cluster());
      if (options.json) return printJson(members);
      printTable(
        ["NAME", "ENDPOINT", "VOTES", "PID", "STATE"],
        members.map((m) => [
          m.name,
          m.endpoint,
          m.voter ? "yes" : "learner",
          m.pid,
          m.healthy ? "healthy" : m.running ? "unhealthy" : m.local ? "down" : "unreachable",
        ]),
      );
    });
  etcd
    .command("kill <member>")
    .description("local clusters: SIGKILL one etcd member (etcd1..3, or etcd for a single member)")
    .option("--json", "machine-readable output")
    .action(async (name: string, options: { json?: boolean }) => {
      const result = await killEtcdMember(ctx.stateDir, await ctx.cluster(), name);
      if (options.json) return printJson(result);
      console.log(
        result.pid === null
          ? `etcd member ${name} was not running`
          : `killed etcd member ${name} (pid ${result.pid})`,
      );
      console.log(
        `${result.running} of ${result.members} member(s) running: ${result.quorum ? "quorum kept" : "no quorum, the cluster cannot write"}`,
      );
    });
  etcd
    .command("start <member>")
    .description("local clusters: start a killed etcd member again from its data directory")
    .option("--json", "machine-readable output")
    .action(async (name: string, options: { json?: boolean }) => {
      const result = await startEtcdMember(ctx.stateDir, await ctx.cluster(), name);
      if (options.json) return printJson(result);
      const what = result.started ? `started etcd member ${name}` : `etcd member ${name} was already running`;
      const health = result.healthy
        ? "healthy"
        : `not healthy yet: ${result.running} of ${result.members} member(s) running, a majority is needed`;
      console.log(`${what} (pid ${result.pid}), ${health}`);
    });
}
