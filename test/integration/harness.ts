// Test harness: real local clusters driven through the real `haven` CLI, in a temporary state directory
// whose name marks every process it starts (so the suite can prove nothing leaked).
import { spawn } from "node:child_process";
import { mkdtemp, readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { processesMatching, terminate } from "../../src/lib/process.js";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const HAVEN = join(REPO_ROOT, "bin", "haven.js");

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class TestCluster {
  private constructor(readonly stateDir: string) {}

  static async start(
    options: { nodes?: number; accel?: "auto" | "tcg"; storage?: "dir" | "rbd"; extraArgs?: string[] } = {},
  ): Promise<TestCluster> {
    const cluster = new TestCluster(await mkdtemp(join(tmpdir(), "haven-test-")));
    const up = await cluster.haven([
      "cluster",
      "up",
      "--nodes",
      String(options.nodes ?? 3),
      "--accel",
      options.accel ?? "tcg",
      "--storage",
      options.storage ?? "dir",
      ...(options.extraArgs ?? []),
    ]);
    if (up.code !== 0) {
      await cluster.stop();
      throw new Error(`cluster up failed (${up.code}): ${up.stderr}`);
    }
    return cluster;
  }

  /** Runs `haven --state-dir <dir> ...args` and collects its output. */
  haven(args: string[], options: { input?: string; timeoutMs?: number } = {}): Promise<RunResult> {
    return new Promise((resolveRun, reject) => {
      const child = spawn(process.execPath, [HAVEN, "--state-dir", this.stateDir, ...args], {
        stdio: [options.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      child.stdout!.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
      const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 120_000);
      if (options.input !== undefined) child.stdin!.end(options.input);
      child.on("error", reject);
      child.on("close", (code) => {
        clearTimeout(timer);
        resolveRun({ code: code ?? -1, stdout, stderr });
      });
    });
  }

  /**
   * Starts `haven --state-dir <dir> ...args` and keeps reading its output, with its stdin open, until
   * stop() closes stdin and ends it.
   */
  follow(args: string[]): { output: () => string; stop: () => Promise<RunResult> } {
    const child = spawn(process.execPath, [HAVEN, "--state-dir", this.stateDir, ...args], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const closed = new Promise<RunResult>((resolveRun) =>
      child.on("close", (code) => resolveRun({ code: code ?? -1, stdout, stderr })),
    );
    return {
      output: () => stdout,
      stop: () => {
        child.stdin.end();
        child.kill("SIGTERM");
        return closed;
      },
    };
  }

  /** Runs a read command with --json; fails the test on a non-zero exit. */
  async json<T>(args: string[]): Promise<T> {
    const result = await this.haven([...args, "--json"]);
    if (result.code !== 0)
      throw new Error(`haven ${args.join(" ")} failed (${result.code}): ${result.stderr}`);
    return JSON.parse(result.stdout) as T;
  }

  /**
   * Brings the cluster back to how a fresh one looks, whatever the last test left (also after a failure):
   * every node thawed, running and online, none in maintenance, no constraints, no fence agents, no VMs.
   * Test files that share one cluster call it after each test, so that one test's failure cannot fail the next.
   */
  async reset(): Promise<void> {
    const must = async (args: string[]) => {
      const result = await this.haven(args);
      if (result.code !== 0) throw new Error(`reset: haven ${args.join(" ")} failed: ${result.stderr}`);
      return result;
    };
    const nodes = (await readdir(join(this.stateDir, "nodes")).catch(() => [])).sort();
    for (const node of nodes) await this.haven(["node", "thaw", node]);
    await must(["cluster", "up"]);
    await eventually(
      "every node online",
      async () => ((await this.json<unknown[]>(["node", "list"])).length === nodes.length ? true : undefined),
      120_000,
    );
    for (const node of await this.json<Array<{ name: string; maintenance: unknown }>>(["node", "list"]))
      if (node.maintenance) await must(["node", "maintenance", "off", node.name]);
    for (const constraint of await this.json<Array<{ id: string }>>(["constraint", "list"]))
      await must(["constraint", "delete", constraint.id]);
    for (const agent of (await this.json<{ agents: Array<{ node: string }> }>(["fence", "list"])).agents)
      await must(["fence", "agent", "clear", agent.node]);
    const vms = await this.json<Array<{ name: string; migration?: unknown }>>(["vm", "list"]);
    for (const vm of vms) if (vm.migration) await this.haven(["vm", "migrate", "--cancel", vm.name]);
    await Promise.all(vms.map((vm) => must(["vm", "stop", vm.name])));
    for (const vm of vms) await must(["vm", "delete", vm.name]);
  }

  /** Tears the cluster down and throws if any of its processes survived. */
  async stop(): Promise<void> {
    await this.haven(["cluster", "down", "--purge"]);
    const leaked = await processesMatching(this.stateDir);
    await Promise.all(leaked.map(({ pid }) => terminate(pid, 1000)));
    if (leaked.length > 0)
      throw new Error(`processes left behind: ${leaked.map((p) => p.cmdline).join("; ")}`);
  }
}

export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 60_000,
  intervalMs = 300,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${lastError ? `: ${(lastError as Error).message}` : ""}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
