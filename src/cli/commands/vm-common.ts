// What `vm create` and the other vm commands share: the HA policy options and waiting for a VM's state.
import type { Command } from "commander";
import { HavenError } from "../../core/errors.js";
import type { VmView } from "../../core/model.js";
import { sleep } from "../../lib/async.js";
import type { CliContext } from "../context.js";
import { progress } from "../context.js";
import { durationOption, intOption, scoreOption } from "../parse.js";

const WAIT_TIMEOUT_MS = 120_000;

const HA_HELP = {
  restartLimit: "restarts after crashes before the VM moves to another node",
  relocateLimit: "moves to another node after the restart limit before the VM goes to error",
  failureTimeout: "crashes this long ago no longer count (e.g. 600, 10min, 1h; 0 = never forget)",
  priority: "after a node failure, guests of higher priority are recovered first",
  stickiness:
    "added to the score of the node the VM runs on: placement constraints move it (live when allowed) to a better-scoring node only when they outweigh it (a whole number; INFINITY keeps it put)",
  stopGrace: "how long a stop waits for the guest to shut down (ACPI) before QEMU quits (e.g. 30, 2min)",
};

export interface PolicyOptions {
  restartLimit?: number;
  relocateLimit?: number;
  failureTimeout?: number;
  priority?: number;
  stickiness?: number;
  stopGrace?: number;
  ha?: boolean;
  allowMigrate?: boolean;
}

/** The policy options of `vm create` (which names the defaults) and `vm set`. */
export function withPolicyOptions(command: Command, create: boolean): Command {
  const dflt = (text: string) => (create ? ` (default ${text})` : "");
  return command
    .option("--restart-limit <n>", HA_HELP.restartLimit + dflt("3"), intOption("--restart-limit"))
    .option("--relocate-limit <n>", HA_HELP.relocateLimit + dflt("1"), intOption("--relocate-limit"))
    .option(
      "--failure-timeout <duration>",
      HA_HELP.failureTimeout + dflt("10min"),
      durationOption("--failure-timeout"),
    )
    .option("--priority <n>", HA_HELP.priority + dflt("0"), intOption("--priority"))
    .option("--stickiness <score>", HA_HELP.stickiness + dflt("0"), scoreOption("--stickiness"))
    .option(
      "--stop-grace <duration>",
      HA_HELP.stopGrace + dflt("30 s; canary 0"),
      durationOption("--stop-grace"),
    );
}

/** The policy fields as the API names them (unset ones stay undefined). */
export function policyOf(options: PolicyOptions) {
  return {
    restartLimit: options.restartLimit,
    relocateLimit: options.relocateLimit,
    failureTimeoutSeconds: options.failureTimeout,
    priority: options.priority,
    stickiness: options.stickiness,
    stopGraceSeconds: options.stopGrace,
    ha: options.ha,
    allowMigrate: options.allowMigrate,
  };
}

/** Polls until the VM reaches `target`; fails early on error states, with the reason. */
export async function waitForState(
  ctx: CliContext,
  name: string,
  target: "running" | "stopped",
): Promise<VmView> {
  const api = await ctx.api();
  const deadline = Date.now() + WAIT_TIMEOUT_MS;
  let last = "";
  for (;;) {
    const view = await api.get<VmView>(`/v1/vms/${encodeURIComponent(name)}`);
    if (view.state === target) return view;
    if (target === "running" && ["error", "failed"].includes(view.state)) {
      throw new HavenError("CONFLICT", `VM ${name} is ${view.state}: ${view.reason ?? "no reason given"}`);
    }
    if (view.state !== last && process.stderr.isTTY)
      progress(`${name}: ${view.state}${view.node ? ` on ${view.node}` : ""}`);
    last = view.state;
    if (Date.now() > deadline)
      throw new HavenError(
        "UNAVAILABLE",
        `VM ${name} did not become ${target} within ${WAIT_TIMEOUT_MS / 1000} s (now ${view.state})`,
      );
    await sleep(250);
  }
}
