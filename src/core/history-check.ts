// The "never twice" check over Haven's event history (invariant 1): replays who ran which guest and reports
// every moment a VM ran on two nodes at once. A guest runs on a node from its `started` event until that node
// reports it gone (`stopped`, `killed`, `crashed`, `self-fenced`) or until the controller fenced it there
// (`fenced`: from then on its QEMU, if any, can no longer write). A live migration hands the guest over inside
// QEMU (the source pauses before the target runs), so `migrated` moves it from every other node to the target.
// The controller flips a cold move (`moved`) and releases a stopped guest (`released`) only once the node it
// was placed on reports it stopped, crashed or failed: from then on it runs nowhere until it is started again.
// That report may be all that is left of a run that ended with its node (a power cycle, a shutdown): the
// node's own `stopped` or `self-fenced` event was still queued when the node went down.
import type { HavenEvent } from "./model.js";

export interface DoubleRun {
  vm: string;
  nodes: string[];
  time: string;
}

const ENDS = new Set(["stopped", "killed", "crashed", "self-fenced", "fenced", "start-failed"]);
/** Decisions after which the guest runs on no node. */
const RUNS_NOWHERE = new Set(["moved", "released"]);

export function findDoubleRuns(events: HavenEvent[]): DoubleRun[] {
  const runningOn = new Map<string, Set<string>>();
  const problems: DoubleRun[] = [];
  // Times have millisecond resolution: within one millisecond an end is taken to come before a start.
  const rank = (event: HavenEvent) => (ENDS.has(event.type) ? 0 : 1);
  const sorted = [...events].sort((a, b) => a.time.localeCompare(b.time) || rank(a) - rank(b));
  for (const event of sorted) {
    if (!event.vm) continue;
    const nodes = runningOn.get(event.vm) ?? new Set<string>();
    runningOn.set(event.vm, nodes);
    if (RUNS_NOWHERE.has(event.type)) nodes.clear();
    if (!event.node) continue;
    if (event.type === "started") {
      nodes.add(event.node);
      if (nodes.size > 1) problems.push({ vm: event.vm, nodes: [...nodes].sort(), time: event.time });
    } else if (event.type === "migrated") {
      nodes.clear();
      nodes.add(event.node);
    } else if (ENDS.has(event.type)) {
      nodes.delete(event.node);
    }
  }
  return problems;
}
