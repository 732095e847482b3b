// A node that leaves on purpose (host shutdown or reboot) applies the cluster's shutdown policy: its guests
// migrate away first, are stopped for HA failover elsewhere, or are stopped and frozen until it is back.
// Whole havends (lease, agent, controller candidate) on fakes for etcd, QEMU and storage.
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, test } from "node:test";
import { ClusterStore } from "../../src/adapters/etcd/cluster-store.js";
import { FakeEtcd } from "../../src/adapters/etcd/fake.js";
import { FakeHypervisor } from "../../src/adapters/qemu/fake-hypervisor.js";
import { FakeStorage } from "../../src/adapters/storage/fake.js";
import { HavenService } from "../../src/api/service.js";
import { findDoubleRuns } from "../../src/core/history-check.js";
import type { HavenEvent, VmView } from "../../src/core/model.js";
import type { Havend } from "../../src/havend/havend.js";
import { waitFor } from "../../src/lib/async.js";
import { havendOnFakes, nodeInfo, serviceOptions, startedVmRequest } from "./fixtures.js";

interface TestNode {
  havend: Havend;
  hypervisor: FakeHypervisor;
  endLoops: () => Promise<void>;
}

describe("shutdown policy", () => {
  let etcd: FakeEtcd;
  let store: ClusterStore;
  let service: HavenService;
  let nodes: TestNode[];

  beforeEach(() => {
    etcd = new FakeEtcd({ now: () => Date.now() });
    store = new ClusterStore(etcd, "/test/");
    service = new HavenService(store, new FakeStorage(), serviceOptions());
    nodes = [];
  });
  afterEach(async () => {
    await Promise.all(nodes.map((node) => node.endLoops()));
    etcd.close();
  });

  /** Starts a havend named `name` (on `hypervisor`, to bring a node back with the QEMUs it had). */
  async function startNode(name: string, hypervisor = new FakeHypervisor()): Promise<TestNode> {
    const havend = havendOnFakes({
      info: nodeInfo(name),
      store,
      hypervisor,
      migrationHost: `127.0.0.${nodes.length + 1}`,
    });
    const loops = new AbortController();
    await havend.register(loops.signal);
    const running = havend.run(loops.signal);
    const node = {
      havend,
      hypervisor,
      endLoops: async () => {
        loops.abort();
        await running;
      },
    };
    nodes.push(node);
    return node;
  }

  const until = (what: string, check: (view: VmView) => boolean) =>
    waitFor(
      what,
      async () => {
        const view = await service.showVm("a");
        return check(view) ? view : undefined;
      },
      30_000,
      20,
    );
  const eventOf = (type: string, reason: RegExp) =>
    waitFor(
      `a ${type} event`,
      async () => (await service.events(1000)).find((e) => e.type === type && reason.test(e.reason)),
      30_000,
      20,
    );
  const online = async () => (await store.listNodes()).map((node) => node.name).sort();

  /** The VM "a" running on n1, and n2 beside it. */
  async function guestOnN1(): Promise<{ n1: TestNode; n2: TestNode }> {
    const n1 = await startNode("n1");
    await service.createVm(startedVmRequest("a"));
    await until("a running on n1", (v) => v.state === "running" && v.node === "n1");
    return { n1, n2: await startNode("n2") };
  }

  test("migrate (the default): the node goes into maintenance, its guest moves away live, then it leaves", async () => {
    assert.equal(await store.getShutdownPolicy(), "migrate");
    const { n1, n2 } = await guestOnN1();
    const leaving = n1.havend.leave("migrate", n1.endLoops, 30_000);
    await waitFor("n1 sends the guest", () => Promise.resolve(n1.hypervisor.migrations[0]), 30_000, 20);
    n1.hypervisor.completeMigration("a", 15);
    await waitFor("n2 receives it", () => Promise.resolve(n2.hypervisor.guests.get("a")), 30_000, 20);
    n2.hypervisor.arrive("a");
    await leaving;
    const after = await until("a running on n2", (v) => v.state === "running" && v.node === "n2");
    assert.equal(n2.hypervisor.started.length, 0, "received live, not booted");
    assert.equal(after.name, "a");
    assert.deepEqual(await online(), ["n2"], "n1 gave its lease up");
    assert.equal((await store.listMaintenance()).get("n1")?.reason, "host shutdown");

    await startNode("n1", n1.hypervisor);
    assert.equal((await store.listMaintenance()).has("n1"), false, "back, n1 lifts its shutdown maintenance");
    assert.deepEqual(findDoubleRuns(await service.events(1000)), []);
  });

  test("failover: the guest is shut down, the lease given up, and the controller recovers it at once", async () => {
    const { n1, n2 } = await guestOnN1();
    await n1.havend.leave("failover", n1.endLoops, 30_000);
    assert.equal(n1.hypervisor.guests.size, 0, "nothing left running on n1");
    await eventOf("stopped", /node n1 shut down \(shutdown policy failover\)/);
    await until("a recovered on n2", (v) => v.state === "running" && v.node === "n2");
    assert.equal(n2.hypervisor.started.length, 1, "booted afresh on n2");
    assert.deepEqual(findDoubleRuns(await service.events(1000)), []);
  });

  test("freeze: the guest is shut down and waits for its node, unfenced; back, the node starts it again", async () => {
    const { n1, n2 } = await guestOnN1();
    await n1.havend.leave("freeze", n1.endLoops, 30_000);
    assert.equal(n1.hypervisor.guests.size, 0);
    assert.deepEqual(await online(), ["n2"]);
    // The controller has seen n1 gone and decided to wait rather than fence and recover.
    await eventOf("waiting", /node n1 shut down with the freeze policy; the guest waits for it/);
    const waiting = await service.showVm("a");
    assert.equal(waiting.node, "n1");
    assert.equal(n2.hypervisor.started.length, 0, "not recovered on n2");
    const events: HavenEvent[] = await service.events(1000);
    assert.ok(
      !events.some((e) => e.type === "fenced" || e.type === "recovered"),
      "nothing fenced or recovered",
    );

    const back = await startNode("n1", n1.hypervisor);
    assert.equal((await store.listFrozen()).size, 0, "back, n1 lifts its freeze");
    await until("a running on n1 again", (v) => v.state === "running" && v.node === "n1");
    assert.equal(back.hypervisor.started.length, 2, "booted again where it was");
    assert.deepEqual(findDoubleRuns(await service.events(1000)), []);
  });
});
