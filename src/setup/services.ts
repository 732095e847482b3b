// How an installed server's daemons are kept running: systemd units (havend, its etcd member), or detached
// processes with pidfiles beside their configuration (local clusters, and hosts without systemd).
import { closeSync, existsSync, openSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { run } from "../lib/command.js";
import { spawnInNamespace } from "../lib/netns.js";
import { startLocalEtcd, type EtcdMemberOptions } from "./etcd.js";
import { etcdUnit, havendUnit, UNITS } from "./systemd.js";

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
export const DEFAULT_GUEST_DIR = join(REPO_ROOT, "guest", "build");
const HAVEND = join(REPO_ROOT, "bin", "havend.js");
const SYSTEMD_UNIT_DIR = "/etc/systemd/system";
/** Where Debian's etcd-server package puts etcd. */
const ETCD_BINARY = "/usr/bin/etcd";

/** systemd: units installed, enabled and started; process: detached processes with pidfiles. */
export type RunMode = "systemd" | "process";

/** Whether this host runs systemd as its service manager (sd_booted's test). */
export const systemdRuns = (): boolean => existsSync("/run/systemd/system");

/**
 * Starts havend on `configFile` as a detached process (in `namespace`, a local cluster's host, when given)
 * logging to DIR/havend.log; its pid goes to DIR/havend.pid.
 */
export async function spawnHavend(configFile: string, dir: string, namespace?: string): Promise<number> {
  const log = openSync(join(dir, "havend.log"), "a");
  try {
    const child = spawnInNamespace(namespace, [process.execPath, HAVEND, "--config", configFile], {
      detached: true,
      stdio: ["ignore", log, log],
    });
    child.unref();
    await writeFile(join(dir, "havend.pid"), String(child.pid));
    return child.pid!;
  } finally {
    closeSync(log);
  }
}

/** Runs havend for `configFile` as `mode` says; returns where its log is. */
export async function runHavend(
  configFile: string,
  dir: string,
  shutdownMigrateSeconds: number,
  mode: RunMode,
): Promise<string> {
  if (mode === "process") {
    await spawnHavend(configFile, dir);
    return join(dir, "havend.log");
  }
  const unit = havendUnit({
    node: process.execPath,
    havend: HAVEND,
    config: configFile,
    shutdownMigrateSeconds,
  });
  await installUnit(UNITS.havend, unit);
  return `journalctl -u ${UNITS.havend}`;
}

/** Runs this server's etcd member as `mode` says, until it is healthy; returns where its log is. */
export async function runEtcdMember(member: EtcdMemberOptions, dir: string, mode: RunMode): Promise<string> {
  if (mode === "systemd") {
    // Type=notify: systemctl returns once the member serves clients.
    await installUnit(UNITS.etcd, etcdUnit({ etcd: ETCD_BINARY, member }));
    return `journalctl -u ${UNITS.etcd}`;
  }
  const logFile = join(dir, "etcd.log");
  const etcd = await startLocalEtcd({ ...member, logFile, detached: true });
  await writeFile(join(dir, "etcd.pid"), String(etcd.pid));
  return logFile;
}

async function installUnit(name: string, text: string): Promise<void> {
  await writeFile(join(SYSTEMD_UNIT_DIR, name), text);
  await run("systemctl", ["daemon-reload"]);
  await run("systemctl", ["enable", "--now", name]);
}
