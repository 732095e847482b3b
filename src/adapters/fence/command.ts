// Runs a fence agent as Pacemaker does: argv without a shell, the request also on stdin as key=value lines
// (what the fence-agents package reads when given no options), bounded by the agent's timeout.
import { spawn } from "node:child_process";
import type { FenceAgent } from "../../core/model.js";
import type { FenceAgentRunner, FenceOutcome } from "./port.js";

const OUTPUT_TAIL = 400;

export class CommandFenceRunner implements FenceAgentRunner {
  run(node: string, agent: FenceAgent): Promise<FenceOutcome> {
    const started = Date.now();
    const [file, ...args] = agent.command;
    return new Promise((resolve) => {
      let output = "";
      let done = false;
      const finish = (ok: boolean, how: string) => {
        if (done) return; // "error" and "close" may both fire
        done = true;
        clearTimeout(timer);
        const tail = output.trim().slice(-OUTPUT_TAIL).replaceAll("\n", " | ");
        resolve({ ok, summary: tail ? `${how}: ${tail}` : how, durationMs: Date.now() - started });
      };
      const child = spawn(file!, args, {
        stdio: ["pipe", "pipe", "pipe"],
        env: { ...process.env, HAVEN_FENCE_NODE: node, HAVEN_FENCE_ACTION: "off" },
      });
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        finish(false, `timed out after ${agent.timeoutSeconds} s`);
      }, agent.timeoutSeconds * 1000);
      child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
      child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
      child.stdin.on("error", () => undefined); // an agent that ignores stdin may close it early
      child.stdin.end(`action=off\nnodename=${node}\n`);
      child.on("error", (err) => finish(false, `could not run ${file}: ${err.message}`));
      child.on("close", (code, signal) => {
        if (code === 0) finish(true, "exited 0");
        else finish(false, signal ? `killed by ${signal}` : `exited ${code}`);
      });
    });
  }
}
