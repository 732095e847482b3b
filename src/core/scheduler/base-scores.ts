// Each guest's scores before any colocation, in Pacemaker's order: its locations and rules as the
// configuration lists them (sums saturate at ±INFINITY, so the order can matter), then its stickiness on the
// node it runs on, then the bans of migration-threshold.
import { addOnNode, addOnNodes, type Allocation } from "./allocation-state.js";
import { formatScore, MINUS_INFINITY } from "./scores.js";

export function applyBaseScores(allocation: Allocation): void {
  const { prepared } = allocation;
  prepared.vms.forEach((vm, index) => {
    for (const location of prepared.index[index]!.locations) {
      const { id, score } = location.constraint;
      if (location.kind === "node") {
        const detail = () => `location ${id} (${formatScore(score)})`;
        addOnNode(allocation, index, { kind: "node", source: id, node: location.node, score, detail });
      } else {
        const detail = () => `rule "${location.constraint.rule}" of ${id} holds (${formatScore(score)})`;
        addOnNodes(allocation, index, {
          kind: "nodes",
          source: id,
          nodes: location.matching,
          score,
          detail,
        });
      }
    }
    // Pacemaker ignores a stickiness below 1.
    const current = allocation.current[index]!;
    if (current >= 0 && vm.stickiness >= 1) {
      const step = {
        source: "stickiness",
        node: current,
        score: vm.stickiness,
        detail: () => "runs here now",
      };
      addOnNode(allocation, index, { kind: "node", ...step });
    }
    applyFailures(allocation, index);
  });
}

/** Pacemaker's migration-threshold: enough recent failures on a node ban the guest from it. */
function applyFailures(allocation: Allocation, index: number): void {
  const vm = allocation.prepared.vms[index]!;
  if (vm.migrationThreshold <= 0) return;
  for (const failure of allocation.runtimes[index]!.failures) {
    const node = allocation.prepared.nodeIndex.get(failure.node);
    const expired =
      vm.failureTimeoutS > 0 && allocation.nowMs - failure.lastFailureMs >= vm.failureTimeoutS * 1000;
    if (node === undefined || expired || failure.count < vm.migrationThreshold) continue;
    const detail = () => `${failure.count} failures reached migration-threshold ${vm.migrationThreshold}`;
    addOnNode(allocation, index, {
      kind: "node",
      source: "migration-threshold",
      node,
      score: MINUS_INFINITY,
      detail,
    });
  }
}
