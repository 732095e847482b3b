// Waiting for a Ceph cluster to become healthy, with a progress line every ~2 s, bounded by a deadline; on
// timeout the error carries `ceph health detail`.
import { sleep } from "../../lib/async.js";
import { cephExec, type CephIdentity } from "../../adapters/ceph/exec.js";
import { describePgStates, rawCephStatus, type RawCephStatus } from "../../adapters/ceph/status.js";

export interface HealthWaitOptions {
  timeoutMs: number;
  progress?: (line: string) => void;
  /** Healthy also means at least this many OSDs exist, all up and in. */
  expectOsds?: number;
  /** Healthy also means at least this many monitors are in quorum. */
  expectMons?: number;
  /** Called every round; throws to abort the wait (e.g. a daemon Haven started has died). */
  check?: () => Promise<void>;
  /** What is being waited for, in the progress lines; default "HEALTH_OK". */
  what?: string;
}

const POLL_MS = 500;
const PROGRESS_EVERY_MS = 2000;

/**
 * Resolves when Ceph says HEALTH_OK, a manager is active, every OSD is up and in, and every PG is
 * active+clean (HEALTH_OK alone can come before the manager has reported a single PG).
 */
export async function waitForCephHealth(
  identity: CephIdentity,
  options: HealthWaitOptions,
): Promise<RawCephStatus> {
  const deadline = Date.now() + options.timeoutMs;
  const what = options.what ?? "HEALTH_OK";
  let lastProgress = 0;
  let lastLine = "";
  for (;;) {
    await options.check?.();
    let line: string;
    try {
      const status = await rawCephStatus(identity);
      if (isHealthy(status, options.expectOsds ?? 0, options.expectMons ?? 0)) return status;
      line = describeProgress(status);
    } catch (err) {
      line = (err as Error).message;
    }
    lastLine = line;
    if (Date.now() >= deadline) {
      const detail = await cephExec("ceph", identity, ["--connect-timeout", "5", "health", "detail"], {
        timeoutMs: 15_000,
      }).catch((err: Error) => err.message);
      throw new Error(
        `Ceph did not reach ${what} within ${Math.round(options.timeoutMs / 1000)} s (${lastLine}); ceph health detail:\n${detail.trim()}`,
      );
    }
    if (Date.now() - lastProgress >= PROGRESS_EVERY_MS) {
      options.progress?.(`waiting for ${what}: ${line}`);
      lastProgress = Date.now();
    }
    await sleep(Math.min(POLL_MS, Math.max(0, deadline - Date.now())));
  }
}

const osdCounts = (status: RawCephStatus) => status.osdmap;

export function isHealthy(status: RawCephStatus, expectOsds: number, expectMons = 0): boolean {
  const osds = osdCounts(status);
  const clean = status.pgmap.pgs_by_state.find((s) => s.state_name === "active+clean")?.count ?? 0;
  return (
    status.health.status === "HEALTH_OK" &&
    status.mgrmap?.available === true &&
    status.quorum_names.length >= expectMons &&
    osds.num_osds >= expectOsds &&
    osds.num_up_osds === osds.num_osds &&
    osds.num_in_osds === osds.num_osds &&
    clean === status.pgmap.num_pgs
  );
}

/** "3/3 mons in quorum, 2/3 OSDs up, 32 PGs (20 active+clean, 12 peering); HEALTH_WARN: OSD_DOWN" */
export function describeProgress(status: RawCephStatus): string {
  const osds = osdCounts(status);
  const mons = status.monmap.num_mons ?? status.quorum_names.length;
  const parts = [
    `${status.quorum_names.length}/${mons} mons in quorum`,
    `${osds.num_up_osds}/${osds.num_osds} OSDs up`,
    status.pgmap.num_pgs > 0
      ? `${status.pgmap.num_pgs} PGs (${describePgStates(Object.fromEntries(status.pgmap.pgs_by_state.map((s) => [s.state_name, s.count]))) || "no report yet"})`
      : "no PGs yet",
  ];
  if (status.mgrmap?.available !== true) parts.push("no manager active yet");
  const codes = Object.keys(status.health.checks);
  return `${parts.join(", ")}; ${status.health.status}${codes.length > 0 ? `: ${codes.join(", ")}` : ""}`;
}
