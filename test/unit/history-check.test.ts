// The "never on two nodes at once" checker over event histories.
import assert from "node:assert/strict";
import { test } from "node:test";
import { findDoubleRuns } from "../../src/core/history-check.js";
import type { HavenEvent } from "../../src/core/model.js";

const at = (second: number, type: string, node: string, vm = "a"): HavenEvent => ({
  time: `2026-01-01T00:00:${String(second).padStart(2, "0")}.000Z`,
  type,
  vm,
  node,
  reason: "",
});

test("a clean failover: started, fenced on the failed node, started elsewhere", () => {
  const history = [
    at(1, "started", "n1"),
    at(9, "fenced", "n1"),
    at(10, "started", "n2"),
    at(12, "self-fenced", "n1"),
  ];
  assert.deepEqual(findDoubleRuns(history), []);
});

test("restarts in place and relocations are fine", () => {
  const history = [
    at(1, "started", "n1"),
    at(2, "crashed", "n1"),
    at(3, "started", "n1"),
    at(4, "crashed", "n1"),
    at(5, "started", "n2"),
    at(6, "stopped", "n2"),
  ];
  assert.deepEqual(findDoubleRuns(history), []);
});

test("a start elsewhere without fencing or stop is a double run", () => {
  const history = [at(1, "started", "n1"), at(5, "started", "n2"), at(6, "started", "n1", "b")];
  assert.deepEqual(findDoubleRuns(history), [{ vm: "a", nodes: ["n1", "n2"], time: history[1]!.time }]);
});

test("events are replayed in time order, whatever order they arrive in", () => {
  const history = [at(10, "started", "n2"), at(9, "fenced", "n1"), at(1, "started", "n1")];
  assert.deepEqual(findDoubleRuns(history), []);
});

test("a cold move or a release ends the run on its node, even when the node's own report was lost", () => {
  // node n1 lost power with the guest (its queued `stopped` never reached etcd); back, it reported the guest
  // stopped, and the controller flipped the cold move.
  const moved = [at(1, "started", "n1"), at(20, "moved", "n2"), at(21, "started", "n2")];
  assert.deepEqual(findDoubleRuns(moved), []);
  const released = [
    at(1, "started", "n1"),
    { ...at(20, "released", ""), node: undefined },
    at(30, "started", "n2"),
  ];
  assert.deepEqual(findDoubleRuns(released), []);
});
