// haven ceph bootstrap|status
import type { Command } from "commander";
import { formatCephStatus, type CephStatus } from "../../adapters/ceph/status.js";
import { inputError } from "../../core/errors.js";
import { readClusterFile } from "../../setup/cluster-file.js";
import type { CliContext } from "../context.js";
import { progress } from "../context.js";
import { ensureStorage, nodeAddresses, prepareStorage } from "../../setup/local-storage.js";
import { printJson } from "../output.js";
import { intOption } from "../parse.js";

export function registerCeph(program: Command, ctx: CliContext): void {
  const ceph = program.command("ceph").description("the cluster's Ceph storage");
  ceph
    .command("bootstrap")
    .description(
      "start a local Ceph (a monitor on every monitor node, an OSD on every storage node, a manager, cephx on, pool rbd) and wait for HEALTH_OK",
    )
    .option("--nodes <n>", "nodes when no cluster exists yet in the state directory", intOption("--nodes"), 3)
    .action(async (options: { nodes: number }) => {
      const cluster = await readClusterFile(ctx.stateDir);
      if (cluster && (cluster.storage.type !== "rbd" || !cluster.storage.localDir)) {
        throw inputError(
          `the cluster in ${ctx.stateDir} does not use a local Ceph (storage: ${cluster.storage.type})`,
        );
      }
      const nodes = nodeAddresses(
        cluster?.nodes ??
          Array.from({ length: options.nodes }, (_, i) => ({
            name: `node${i + 1}`,
            api: `http://127.0.10.${i + 1}`,
          })),
        cluster?.hosts,
      );
      if (cluster) await ensureStorage(cluster.storage, nodes, progress);
      else await prepareStorage({ type: "rbd" }, ctx.stateDir, nodes, progress);
      progress("Ceph is HEALTH_OK");
    });
  ceph
    .command("status")
    .description("health and its reasons, monitors in quorum, OSDs, pools, usage")
    .option("--json", "machine-readable output")
    .action(async (options: { json?: boolean }) => {
      const status = await (await ctx.api()).get<CephStatus>("/v1/storage/ceph");
      if (options.json) return printJson(status);
      for (const line of formatCephStatus(status)) console.log(line);
    });
}
