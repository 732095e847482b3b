// Whether the host this havend runs on is going down (shutdown or reboot) rather than havend alone being
// stopped or restarted: only then does the cluster's shutdown policy apply to the node's guests; a restarted
// havend (an upgrade) leaves them running and re-attaches to them.
import { execFile } from "node:child_process";
import { rm } from "node:fs/promises";
import { join } from "node:path";

/** The file `haven node shutdown` leaves in a local node's state directory before it stops the havend. */
export const shutdownRequestFile = (stateDir: string) => join(stateDir, "shutdown-requested");

/**
 * True when systemd is stopping the system (`systemctl is-system-running` says "stopping"), or when a
 * shutdown was requested for this node (the request file, consumed here).
 */
export async function hostShuttingDown(stateDir: string): Promise<boolean> {
  const requested = await rm(shutdownRequestFile(stateDir)).then(
    () => true,
    () => false,
  );
  if (requested) return true;
  // is-system-running exits non-zero in every state but "running", and is absent without systemd: only its
  // output counts.
  const state = await new Promise<string>((resolve) =>
    execFile("systemctl", ["is-system-running"], { timeout: 2000 }, (_err, stdout) =>
      resolve(String(stdout)),
    ),
  );
  return state.trim() === "stopping";
}
