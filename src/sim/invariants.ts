// The safety invariants of the design brief, checked by the simulator itself after every step, from what it
// knows of the machines (not only from what Haven logged):
//   one writer        never two QEMUs of a VM with write access (alive, running, not blocklisted) at once;
//                     a frozen QEMU counts, since it writes again the moment it is thawed
//   run with a lease  no unfrozen QEMU with write access on a node more than one lease-guard period (100 ms)
//                     past the self-fencing deadline (core/self-fence.ts) of the node's havend (0 until it has
//                     registered), or past its own start, the node's thaw or havend's start if those came
//                     later; a node
//                     without havend is the watchdog's case, which is not simulated
//   fence first       when a placement leaves a failed node, no QEMU of the guest may still write (but the
//                     one the new placement names: a migration target that already has the guest)
//   spare the living  a storage fence never blocklists the QEMU of a guest's current placement on a node that
//                     is online (its record alive in etcd): that guest would get EIO while Haven thinks it runs
//   no write lost     a canary guest's acknowledged record is never overwritten by another QEMU
//   never twice       findDoubleRuns (core/history-check.ts) over the event log at the end
import { findDoubleRuns } from "../core/history-check.js";
import { placementSchema, type HavenEvent, type Placement } from "../core/model.js";
import type { LostWrite } from "./canary.js";
import type { Proc } from "./machines.js";
import type { World } from "./world.js";

export interface Violation {
  at: number;
  invariant:
    | "one writer"
    | "run with a lease"
    | "fence before recover"
    | "spare the living"
    | "no acknowledged write lost"
    | "never twice";
  message: string;
}

/** The agent checks its deadline every 100 ms (agent.ts LEASE_GUARD_MS); a kill may come that much later. */
const GUARD_TOLERANCE_MS = 100;

const describe = (proc: Proc) => `${proc.node} (pid ${proc.pid}, generation ${proc.generation})`;

export class Invariants {
  readonly violations: Violation[] = [];
  private readonly reported = new Set<string>();
  /** The last placement of each VM written to etcd. */
  private readonly placements = new Map<string, Placement>();

  constructor(private readonly world: World) {}

  check(): void {
    const { machines } = this.world;
    const writers = new Map<string, Proc[]>();
    for (const proc of machines.all()) {
      if (!machines.isWriter(proc)) continue;
      writers.set(proc.vm, [...(writers.get(proc.vm) ?? []), proc]);
    }
    for (const [vm, procs] of writers) {
      if (procs.length > 1)
        this.report(
          `1:${vm}:${procs.map((p) => p.pid).join(",")}`,
          "one writer",
          `${vm} runs with write access on ${procs.map(describe).join(" and ")}`,
        );
    }
    for (const node of this.world.nodes.values()) {
      // Without a havend, or before a restarted one registers, nothing on the node can vouch for its QEMUs or
      // knows their deadline (the watchdog's case, not simulated): not checked.
      if (!node.powered || node.frozen || !node.havend?.registered) continue;
      const deadline = node.havend.havend.deadline();
      const late = this.world.wall() - deadline;
      if (late <= GUARD_TOLERANCE_MS) continue;
      for (const proc of machines.all()) {
        if (proc.node !== node.name || !machines.isWriter(proc)) continue;
        // A QEMU whose start completed (or a node thawed, or a havend started) after the deadline gets one
        // guard period too.
        const since = Math.max(proc.spawnedAt, node.thawedAt, node.havend.startedAt);
        if (this.world.now() - since <= GUARD_TOLERANCE_MS) continue;
        this.report(
          `2:${proc.pid}`,
          "run with a lease",
          deadline === 0
            ? `${proc.vm} still runs on ${describe(proc)} while its node holds no lease`
            : `${proc.vm} still runs on ${describe(proc)} ${(late / 1000).toFixed(3)} s past the node's self-fencing deadline`,
        );
      }
    }
  }

  /** etcd just applied a new placement of `vm` (undefined: deleted). */
  placementChanged(vm: string, value: string | undefined): void {
    const before = this.placements.get(vm);
    const after = value === undefined ? undefined : placementSchema.parse(JSON.parse(value));
    if (after) this.placements.set(vm, after);
    else this.placements.delete(vm);
    if (!before || !after || before.node === after.node || this.world.online(before.node)) return;
    const { machines } = this.world;
    for (const proc of machines.all()) {
      if (proc.vm !== vm || !machines.isWriter(proc)) continue;
      if (proc.node === after.node && proc.generation === after.generation) continue;
      this.report(
        `3:${proc.pid}`,
        "fence before recover",
        `${vm} was moved off failed node ${before.node} while its QEMU on ${describe(proc)} could still write`,
      );
    }
  }

  /** The controller on `by` just blocklisted `addresses` to recover a guest. */
  fenced(by: string, addresses: string[]): void {
    for (const proc of this.world.machines.all()) {
      if (!addresses.includes(proc.client)) continue;
      const placement = this.placements.get(proc.vm);
      if (!placement || proc.node !== placement.node || proc.generation !== placement.generation) continue;
      if (!this.world.online(proc.node)) continue;
      this.report(
        `5:${proc.pid}`,
        "spare the living",
        `the controller on ${by} blocklisted ${proc.client}, the QEMU of ${proc.vm}'s current placement on online node ${describe(proc)}`,
      );
    }
  }

  /** A canary's acknowledged record was overwritten by another QEMU. */
  lostWrite(lost: LostWrite): void {
    this.report(
      `6:${lost.vm}:${lost.ackedBy}:${lost.overwrittenBy}`,
      "no acknowledged write lost",
      `${lost.vm}: record ${lost.seq}, acknowledged by QEMU pid ${lost.ackedBy}, was overwritten by pid ${lost.overwrittenBy}`,
    );
  }

  /** At the end: the event log's own account. */
  finish(events: HavenEvent[]): void {
    for (const double of findDoubleRuns(events))
      this.report(
        `4:${double.vm}:${double.time}`,
        "never twice",
        `the event log has ${double.vm} running on ${double.nodes.join(" and ")} at ${double.time}`,
      );
  }

  private report(key: string, invariant: Violation["invariant"], message: string): void {
    if (this.reported.has(key)) return;
    this.reported.add(key);
    this.violations.push({ at: this.world.now(), invariant, message });
    this.world.note(`!! invariant "${invariant}" violated: ${message}`);
  }
}
