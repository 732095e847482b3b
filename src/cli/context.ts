// What every command needs: the state directory from the global option, the cluster file and an API client.
import type { Command } from "commander";
import { ApiClient } from "./api-client.js";
import { requireClusterFile, resolveStateDir, type ClusterFile } from "../setup/cluster-file.js";
import { readToken } from "../setup/local-cluster.js";

export class CliContext {
  constructor(private readonly program: Command) {}

  get stateDir(): string {
    return resolveStateDir(this.program.opts<{ stateDir?: string }>().stateDir);
  }

  cluster(): Promise<ClusterFile> {
    return requireClusterFile(this.stateDir);
  }

  async api(): Promise<ApiClient> {
    const cluster = await this.cluster();
    return new ApiClient(
      cluster.nodes.map((node) => node.api),
      await readToken(cluster),
    );
  }
}

/** Progress lines go to stderr so that stdout stays clean for --json. */
export const progress = (line: string) => process.stderr.write(line + "\n");
