// haven node list; haven node add NAME (a join token); haven node remove NAME; fault commands for local clusters:
// haven node kill|shutdown|freeze|thaw|partition|heal NODE
import type { Command } from "commander";
import type { NodeView } from "../../api/service.js";
import {
  freezeNode,
  healNode,
  killNode,
  partitionNode,
  shutdownNode,
  thawNode,
  type NodeProcess,
} from "../../setup/local-faults.js";
import { formatRoles } from "../../core/roles.js";
import { printJson, printTable } from "../output.js";
import {
  DEFAULT_JOIN_TTL_SECONDS,
  type JoinTokenView,
  type NodeRemovalView,
} from "../../api/join-service.js";
import type { ApiClient } from "../api-client.js";
import { waitFor } from "../../lib/async.js";
import { progress, type CliContext } from "../context.js";
import { durationOption } from "../parse.js";

/** The node's own bound for moving its guests (the shutdown policy's 5 minutes) and some to spare. */
const REMOVE_WITHIN_SECONDS = 600;

/** Asks for the removal, waits while the node moves its guests away and stops, then completes it. */
async function removeNode(api: ApiClient, name: string, force: boolean, timeoutSeconds: number) {
  const path = `/v1/nodes/${encodeURIComponent(name)}${force ? "?force=true" : ""}`;
  const first = await api.request<NodeRemovalView>("DELETE", path);
  if (first.state === "removed") return first;
  progress(
    `${name} moves its guests away and stops${first.guests.length ? `: ${first.guests.join(", ")}` : ""}`,
  );
  let reported = first.guests.length;
  await waitFor(
    `node ${name} to stop (see its havend log)`,
    async () => {
      const node = (await api.get<NodeView[]>("/v1/nodes")).find((n) => n.name === name);
      if (node && node.vms.length !== reported) {
        reported = node.vms.length;
        progress(`${name}: ${reported} guest(s) left`);
      }
      return node ? undefined : true;
    },
    timeoutSeconds * 1000,
    1000,
  );
  return api.request<NodeRemovalView>("DELETE", path);
}

export function registerNode(program: Command, ctx: CliContext): void {
  const node = program.command("node").description("cluster nodes");
  node
    .command("list")
    .description("online nodes with roles, version, capacity, load and accelerator")
    .option("--json", "machine-readable output")
    .action(async (options: { json?: boolean }) => {
      const nodes = await (await ctx.api()).get<NodeView[]>("/v1/nodes");
      if (options.json) return printJson(nodes);
      printTable(
        ["NAME", "STATE", "ROLES", "VERSION", "API", "ACCEL", "STORAGE", "VCPUS", "MEMORY", "VMS"],
        nodes.map((n) => [
          n.name,
          n.maintenance ? `${n.state}, maintenance` : n.state,
          formatRoles(n.roles),
          n.version,
          n.api,
          n.accel,
          n.storage.ok ? "ok" : `unreachable: ${n.storage.summary}`,
          `${n.used.vcpus}/${n.capacity.vcpus}`,
          `${n.used.memoryMb}/${n.capacity.memoryMb} MB`,
          n.vms.join(",") || "-",
        ]),
      );
    });

  node
    .command("add <name>")
    .description(
      "make a one-time token that lets a server join as node NAME: run 'haven join TOKEN --address IP' there (docs/install.md)",
    )
    .option(
      "--ttl <duration>",
      "how long the token stays valid, e.g. 30m, 1h, 2d",
      durationOption("--ttl"),
      DEFAULT_JOIN_TTL_SECONDS,
    )
    .option("--json", "machine-readable output")
    .action(async (name: string, options: { ttl: number; json?: boolean }) => {
      const issued = await (
        await ctx.api()
      ).post<JoinTokenView>(`/v1/nodes/${encodeURIComponent(name)}/join-token`, { ttlSeconds: options.ttl });
      if (options.json) return printJson(issued);
      console.log(issued.token);
      progress(`valid once, until ${issued.expiresAt}; on the new server run: haven join TOKEN --address IP`);
    });

  node
    .command("remove <name>")
    .description(
      "remove a compute or monitor node: it moves its guests away and stops (its havend stays stopped), then the cluster forgets it, deletes its Ceph user and removes its etcd member",
    )
    .option(
      "--force",
      "forget a node that is offline for good (its guests must have been recovered elsewhere)",
    )
    .option(
      "--timeout <duration>",
      "how long to wait for the node to move its guests and stop",
      durationOption("--timeout"),
      REMOVE_WITHIN_SECONDS,
    )
    .option("--json", "machine-readable output")
    .action(async (name: string, options: { force?: boolean; timeout: number; json?: boolean }) => {
      const removal = await removeNode(await ctx.api(), name, options.force ?? false, options.timeout);
      if (options.json) return printJson(removal);
      console.log(`removed node ${name}: it no longer takes guests, and its havend will not register again`);
      progress(`to bring it back: haven node add ${name}, then haven join TOKEN on the server`);
    });

  node
    .command("partition <node>")
    .description(
      "local clusters: cut the link of the node's host (its havend, API, etcd member, Ceph daemons and its guests' storage traffic; the guests' own network cards stay up); 'haven node heal' restores it",
    )
    .option("--oneway", "drop only what the node sends; it still receives")
    .option("--json", "machine-readable output")
    .action(async (name: string, options: { oneway?: boolean; json?: boolean }) => {
      const cut = await partitionNode(ctx.stateDir, await ctx.cluster(), name, options.oneway ?? false);
      if (options.json) return printJson(cut);
      console.log(
        `cut ${name} (${cut.address}) off${cut.oneway ? " one way: it receives but cannot send" : ""}`,
      );
    });
  node
    .command("heal <node>")
    .description("local clusters: restore the node's network link after 'haven node partition'")
    .option("--json", "machine-readable output")
    .action(async (name: string, options: { json?: boolean }) => {
      const healed = await healNode(ctx.stateDir, await ctx.cluster(), name);
      if (options.json) return printJson({ node: name, healed });
      console.log(healed ? `restored ${name}'s network link` : `${name}'s network link was not cut`);
    });

  const faults = [
    {
      name: "kill",
      description:
        "local clusters: SIGKILL the node's havend and its QEMUs, as if the host died ('haven cluster up' restarts the havend, not the guests)",
      verb: "killed",
      run: killNode,
    },
    {
      name: "shutdown",
      description:
        "local clusters: shut the node down as its host would, applying the cluster's shutdown policy (haven cluster shutdown-policy) to its guests; 'haven cluster up' boots it again",
      verb: "shut down",
      run: shutdownNode,
    },
    {
      name: "freeze",
      description:
        "local clusters: SIGSTOP the node's havend and its QEMUs, so the node looks dead until 'haven node thaw'",
      verb: "froze",
      run: freezeNode,
    },
    {
      name: "thaw",
      description: "local clusters: SIGCONT the node's QEMUs and havend after 'haven node freeze'",
      verb: "thawed",
      run: thawNode,
    },
  ] as const;
  for (const fault of faults) {
    node
      .command(`${fault.name} <node>`)
      .description(fault.description)
      .option("--json", "machine-readable output")
      .action(async (name: string, options: { json?: boolean }) => {
        const processes = await fault.run(ctx.stateDir, await ctx.cluster(), name);
        if (options.json) return printJson({ node: name, [fault.verb]: processes });
        if (processes.length === 0) console.log(`nothing of ${name} was running`);
        for (const p of processes) console.log(`${fault.verb} ${describe(name, p)}`);
      });
  }
}

const describe = (node: string, p: NodeProcess) =>
  p.process === "havend" ? `havend of ${node} (pid ${p.pid})` : `QEMU of VM ${p.vm ?? "?"} (pid ${p.pid})`;
