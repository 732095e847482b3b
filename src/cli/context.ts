// What every command needs: the state directory from the global option, the cluster file and an API client.
import { readFile } from "node:fs/promises";
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
    return apiClientFor(await this.cluster());
  }
}

/** A client of the cluster's nodes, with its token, trusting only its CA. */
export async function apiClientFor(cluster: ClusterFile): Promise<ApiClient> {
  return new ApiClient(
    cluster.nodes.map((node) => node.api),
    await readToken(cluster),
    await readCa(cluster),
  );
}

/** The cluster CA's certificate (undefined for a cluster whose API is plain HTTP). */
export function readCa(cluster: ClusterFile): Promise<string | undefined> {
  return cluster.caFile === undefined ? Promise.resolve(undefined) : readFile(cluster.caFile, "utf8");
}

/** Progress lines go to stderr so that stdout stays clean for --json. */
export const progress = (line: string) => process.stderr.write(line + "\n");
