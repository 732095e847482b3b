// A fence agent runner for unit tests: records each run and answers as told.
import type { FenceAgent } from "../../core/model.js";
import type { FenceAgentRunner, FenceOutcome } from "./port.js";

export class FakeFenceRunner implements FenceAgentRunner {
  readonly runs: Array<{ node: string; command: string[] }> = [];
  /** What the next runs answer, per node; a node not listed succeeds. */
  readonly failing = new Set<string>();

  async run(node: string, agent: FenceAgent): Promise<FenceOutcome> {
    await Promise.resolve();
    this.runs.push({ node, command: agent.command });
    const ok = !this.failing.has(node);
    return { ok, summary: ok ? "exited 0" : "exited 1: power off failed", durationMs: 1 };
  }
}
