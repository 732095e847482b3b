// Test harness: real local clusters driven through the real `haven` CLI, in a temporary state directory
// whose name marks every process it starts (so the suite can prove nothing leaked).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { apiClientFor } from "../../src/cli/context.js";
import { requireClusterFile } from "../../src/setup/cluster-file.js";
import { healNode, thawNode } from "../../src/setup/local-faults.js";
import type { VmView } from "../../src/core/model.js";
import { processesMatching, terminate } from "../../src/lib/process.js";
import { namespaces } from "../../src/lib/netns.js";
import { localClusterId } from "../../src/setup/local-network.js";

/**
 * The bound of a whole describe(): a guard against a hang, not against slowness. Each test has its own bound
 * (scripts/test.js: --test-timeout, 10 min), and a loaded machine may take many times a quiet one's time.
 */
export const SUITE_TIMEOUT = { timeout: 3_600_000 };

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const HAVEN = join(REPO_ROOT, "bin", "haven.js");

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `haven ...args` and collects its output. */
export function runHaven(
  args: string[],
  options: { input?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, [HAVEN, ...args], {
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
    return runHaven(["--state-dir", this.stateDir, ...args], options);
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

  /** Runs a command that must succeed; fails the test with its stderr otherwise. */
  async ok(args: string[], options: { timeoutMs?: number } = {}): Promise<RunResult> {
    const result = await this.haven(args, options);
    assert.equal(result.code, 0, `haven ${args.join(" ")}: ${result.stderr}`);
    return result;
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
   * every node thawed, running and online, none in maintenance, no constraints, no fence agents, no VMs, no
   * disks. Test files that share one cluster call it after each test, so that one test's failure cannot fail
   * the next. Apart from `cluster up` it talks to the API directly: a CLI process per step would make it slow.
   */
  async reset(): Promise<void> {
    const file = await requireClusterFile(this.stateDir);
    for (const node of file.nodes) {
      await thawNode(this.stateDir, file, node.name);
      await healNode(this.stateDir, file, node.name);
    }
    const up = await this.haven(["cluster", "up"]);
    if (up.code !== 0) throw new Error(`reset: cluster up failed: ${up.stderr}`);
    const api = await apiClientFor(file);
    const path = (...parts: string[]) => parts.map(encodeURIComponent).join("/");
    const nodes = await eventually(
      "every node online",
      async () => {
        const online = await api.get<Array<{ name: string; maintenance: unknown }>>("/v1/nodes");
        return online.length === file.nodes.length ? online : undefined;
      },
      120_000,
    );
    for (const node of nodes.filter((n) => n.maintenance))
      await api.request("PUT", `/v1/nodes/${path(node.name)}/maintenance`, { on: false });
    for (const constraint of await api.get<Array<{ id: string }>>("/v1/constraints"))
      await api.delete(`/v1/constraints/${path(constraint.id)}`);
    for (const agent of (await api.get<{ agents: Array<{ node: string }> }>("/v1/fencing")).agents)
      await api.delete(`/v1/fencing/agents/${path(agent.node)}`);
    const vms = await api.get<VmView[]>("/v1/vms");
    for (const vm of vms.filter((v) => v.migration))
      await api.post(`/v1/vms/${path(vm.name)}/migrate/cancel`).catch(() => undefined);
    for (const vm of vms) {
      // A guest that ignores ACPI (an imported VM may wait minutes) is not waited for.
      await api.patch(`/v1/vms/${path(vm.name)}`, { stopGraceSeconds: 0 });
      await api.post(`/v1/vms/${path(vm.name)}/stop`);
    }
    await eventually(
      "every VM stopped",
      async () =>
        (await api.get<VmView[]>("/v1/vms")).every((v) => v.state === "stopped") ? true : undefined,
      120_000,
    );
    // A QEMU that was killed (a test that kills a migration target, say) leaves its RBD watch on the disk
    // until Ceph times it out (30 s), and Haven refuses to delete a watched disk: try again until it is free.
    const deleteWhenFree = (what: string) =>
      eventually(`${what} deleted`, async () => {
        await api.delete(what);
        return true;
      });
    for (const vm of vms) await deleteWhenFree(`/v1/vms/${path(vm.name)}`);
    const deleteDisk = (name: string) => deleteWhenFree(`/v1/disks/${path(name)}`);
    // Disks a test made itself: clones before the snapshots they hang off, snapshots before their disk.
    const disks = await api.get<Array<{ name: string; parent: string | null }>>("/v1/disks");
    for (const disk of disks.filter((d) => d.parent !== null)) await deleteDisk(disk.name);
    for (const disk of disks.filter((d) => d.parent === null)) {
      const snapshots = await api
        .get<Array<{ name: string }>>(`/v1/disks/${path(disk.name)}/snapshots`)
        .catch(() => []);
      for (const snapshot of snapshots)
        await api.delete(`/v1/disks/${path(disk.name)}/snapshots/${path(snapshot.name)}`);
      await deleteDisk(disk.name);
    }
  }

  /** Tears the cluster down and throws if any of its processes or hosts survived. */
  async stop(): Promise<void> {
    await this.haven(["cluster", "down", "--purge"]);
    const leaked = await processesMatching(this.stateDir);
    await Promise.all(leaked.map(({ pid }) => terminate(pid, 1000)));
    if (leaked.length > 0)
      throw new Error(`processes left behind: ${leaked.map((p) => p.cmdline).join("; ")}`);
    const ours = `haven-${localClusterId(this.stateDir)}-`;
    const hosts = (await namespaces()).filter((name) => name.startsWith(ours));
    if (hosts.length > 0) throw new Error(`network namespaces left behind: ${hosts.join(", ")}`);
  }
}

export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 120_000,
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
