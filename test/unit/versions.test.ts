// Rolling upgrades: which versions may run together, and a havend out of range refusing to join.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ClusterStore } from "../../src/adapters/etcd/cluster-store.js";
import { FakeEtcd } from "../../src/adapters/etcd/fake.js";
import { FakeHypervisor } from "../../src/adapters/qemu/fake-hypervisor.js";
import { nodesByVersion, versionProblem, versionsCompatible } from "../../src/core/versions.js";
import { RefusedToJoin } from "../../src/havend/havend.js";
import { havendOnFakes, nodeInfo } from "./fixtures.js";

describe("versions", () => {
  test("the same major version, at most one minor version apart, may mix", () => {
    assert.ok(versionsCompatible("0.1.0", "0.1.7"));
    assert.ok(versionsCompatible("0.1.0", "0.2.3"));
    assert.ok(versionsCompatible("1.4.0-rc1", "1.3.9"));
    assert.ok(!versionsCompatible("0.1.0", "0.3.0"));
    assert.ok(!versionsCompatible("1.0.0", "0.9.0"));
    assert.ok(!versionsCompatible("0.1.0", "banana"));
    assert.ok(versionsCompatible("dev", "dev"), "an identical version always goes with itself");
  });

  test("the refusal names each node out of range and the rule", () => {
    const online = [
      { name: "n1", version: "0.1.0" },
      { name: "n2", version: "0.2.0" },
    ];
    assert.equal(versionProblem("0.2.1", online), undefined);
    assert.equal(
      versionProblem("0.3.0", online),
      "Haven 0.3.0 cannot join this cluster: n1 runs 0.1.0; versions may mix only within the same major version, at most one minor version apart",
    );
    assert.deepEqual(nodesByVersion(online), { "0.1.0": ["n1"], "0.2.0": ["n2"] });
  });

  test("a havend out of range of an online node does not register and kills the guests left here; one in range registers", async () => {
    const etcd = new FakeEtcd({ now: () => Date.now() });
    const store = new ClusterStore(etcd, "/test/");
    await store.putNode(nodeInfo("old", { version: "0.1.0" }), await etcd.grantLease(5));
    const havend = (version: string, hypervisor = new FakeHypervisor()) =>
      havendOnFakes({ info: nodeInfo("new", { version }), store, hypervisor });
    const signal = new AbortController().signal;
    const leftRunning = new FakeHypervisor();
    await leftRunning.start({ vm: "a", generation: 1, memoryMb: 64, vcpus: 1, disks: [], accel: "tcg" });
    await assert.rejects(havend("0.3.0", leftRunning).register(signal), (err: Error) => {
      assert.ok(err instanceof RefusedToJoin);
      assert.match(err.message, /old runs 0\.1\.0/);
      return true;
    });
    assert.deepEqual(
      (await store.listNodes()).map((n) => n.name),
      ["old"],
    );
    assert.equal(leftRunning.guests.size, 0, "the guests a previous havend left here are killed");
    await havend("0.2.0").register(signal);
    assert.deepEqual((await store.listNodes()).map((n) => n.name).sort(), ["new", "old"]);
    etcd.close();
  });
});
