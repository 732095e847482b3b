// The smaller ports of a simulated havend: the storage backend (RBD watchers, fencing), the fence-agent
// runner (the simulated power switch), the guests' console logs and the lease file.
import type { ConsoleLogs } from "../agent/console-log.js";
import type { LeaseFile } from "../agent/node-lease.js";
import type { FenceAgentRunner, FenceOutcome } from "../adapters/fence/port.js";
import type { DriveSource } from "../adapters/qemu/port.js";
import type { StorageBackend, StorageHealth } from "../adapters/storage/port.js";
import type { FenceAgent } from "../core/model.js";
import type { SimProcess } from "./process.js";
import type { World } from "./world.js";

const notSimulated = (what: string) => () => Promise.reject(new Error(`${what} is not simulated`));

/** The cluster's Ceph as one node's havend sees it: watchers, blocklist fences, and nothing else. */
export function simStorage(world: World, node: string): StorageBackend {
  const { machines } = world;
  return {
    kind: "rbd",
    driveSource: (image: string): DriveSource => ({ driver: "file", filename: `/sim/rbd/${image}` }),
    health: (): Promise<StorageHealth> => Promise.resolve({ ok: true, summary: "HEALTH_OK" }),
    watchers: (image) => Promise.resolve(machines.watchers(image)),
    // RbdStorage.fence: blocklist every watcher and the lock holder, then break the lock.
    fence: (image) => {
      try {
        const addresses = machines.fence(image);
        world.invariants.fenced(node, addresses);
        return Promise.resolve(addresses);
      } catch (err) {
        return Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
    },
    unfence: (addresses) => Promise.resolve(machines.unfence(addresses)),
    create: notSimulated("creating a disk"),
    resize: notSimulated("resizing a disk"),
    info: notSimulated("disk info"),
    list: notSimulated("listing disks"),
    delete: notSimulated("deleting a disk"),
    read: notSimulated("reading a disk"),
    dataEnd: notSimulated("reading a disk"),
    usage: notSimulated("storage usage"),
    createSnapshot: notSimulated("snapshots"),
    listSnapshots: notSimulated("snapshots"),
    rollbackSnapshot: notSimulated("snapshots"),
    deleteSnapshot: notSimulated("snapshots"),
    clone: notSimulated("clones"),
    importFile: notSimulated("imports"),
  };
}

/**
 * The controller's fence agents: the simulated power switch of the target node answers after its time (or
 * hangs until the agent's timeout); success powers the node off.
 */
export function simFenceRunner(world: World, process: SimProcess): FenceAgentRunner {
  return {
    run: (target: string, agent: FenceAgent) =>
      new Promise<FenceOutcome>((resolve) => {
        const behaviour = world.node(target).fence;
        const durationMs = behaviour.result === "hang" ? agent.timeoutSeconds * 1000 : behaviour.durationMs;
        process.after(durationMs, () => {
          const ok = behaviour.result === "ok";
          if (ok && world.node(target).powered) {
            world.note(`-- ${target} is powered off by its fence agent`);
            world.powerOff(target);
          }
          const summary =
            behaviour.result === "ok"
              ? "exited 0"
              : behaviour.result === "fail"
                ? "exited 1: power off failed"
                : `timed out after ${agent.timeoutSeconds} s`;
          resolve({ ok, summary, durationMs });
        });
      }),
  };
}

/** The serial console logs of the guests on `node` (canary acks). */
export function simConsoleLogs(world: World, node: string): ConsoleLogs {
  return {
    size: (vm) => Promise.resolve(world.machines.canaries.console(node, vm).length),
    tail: (vm, from, bytes) => {
      const log = world.machines.canaries.console(node, vm);
      return Promise.resolve(log.slice(Math.max(from <= log.length ? from : 0, log.length - bytes)));
    },
  };
}

/** The lease file on the node's disk: it survives reboots and havend restarts. */
export function simLeaseFile(world: World, node: string): LeaseFile {
  return {
    read: () => Promise.resolve(world.node(node).leaseFile),
    write: (leaseId) => {
      world.node(node).leaseFile = leaseId;
      return Promise.resolve();
    },
  };
}
