// Live and cold migration, maintenance and drains: the controller's pure decisions, then the agent and the
// controller together on fakes (etcd, QEMU, storage).
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, test } from "node:test";
import { ClusterStore } from "../../src/adapters/etcd/cluster-store.js";
import { FakeEtcd } from "../../src/adapters/etcd/fake.js";
import { FakeFenceRunner } from "../../src/adapters/fence/fake.js";
import { FakeHypervisor } from "../../src/adapters/qemu/fake-hypervisor.js";
import { FakeStorage } from "../../src/adapters/storage/fake.js";
import { Agent } from "../../src/agent/agent.js";
import { migrateRequest } from "../../src/api/requests.js";
import { HavenService } from "../../src/api/service.js";
import { Controller } from "../../src/controller/controller.js";
import { findDoubleRuns } from "../../src/core/history-check.js";
import type { VmView } from "../../src/core/model.js";
import { waitFor } from "../../src/lib/async.js";
import { silentLogger } from "../../src/lib/log.js";
import { nodeInfo, serviceOptions, startedVmRequest } from "./fixtures.js";

describe("migration on fakes", () => {
  let etcd: FakeEtcd;
  let store: ClusterStore;
  let service: HavenService;
  let shutdown: AbortController;
  let running: Promise<unknown>[];
  const hypervisors = new Map<string, FakeHypervisor>();
  const stops = new Map<string, AbortController>();

  beforeEach(() => {
    etcd = new FakeEtcd({ now: () => Date.now() });
    store = new ClusterStore(etcd, "/test/");
    service = new HavenService(store, new FakeStorage(), serviceOptions());
    shutdown = new AbortController();
    running = [];
    hypervisors.clear();
  });
  afterEach(async () => {
    shutdown.abort();
    await Promise.all(running);
    etcd.close();
  });

  async function startNode(name: string): Promise<FakeHypervisor> {
    const hypervisor = new FakeHypervisor();
    hypervisors.set(name, hypervisor);
    const lease = await etcd.grantLease(5);
    const info = nodeInfo(name);
    await store.putNode(info, lease);
    const stop = new AbortController();
    stops.set(name, stop);
    const signal = AbortSignal.any([shutdown.signal, stop.signal]);
    const storage = new FakeStorage();
    const deps = { node: name, store, lease: () => lease, log: silentLogger };
    running.push(
      new Agent({
        ...deps,
        hypervisor,
        storage,
        accel: "tcg",
        leaseValid: () => true,
        leaseExpiresAt: () => Infinity,
        publishGuests: () => Promise.resolve(),
        migration: { host: `127.0.0.${hypervisors.size}`, tlsDir: "/tls" },
      }).run(signal),
      new Controller({ ...deps, storage, fenceAgents: new FakeFenceRunner() }).run(signal),
    );
    return hypervisor;
  }

  const show = (vm: string) => service.showVm(vm);
  const until = (what: string, check: (view: VmView) => boolean, vm = "a") =>
    waitFor(
      what,
      async () => {
        const view = await show(vm);
        return check(view) ? view : undefined;
      },
      30_000,
      20,
    );
  const events = async () => service.events(1000);
  const eventOf = async (type: string) =>
    waitFor(type, async () => (await events()).find((e) => e.type === type), 30_000, 20).catch(
      async (err: Error) => {
        const seen = (await events()).map(
          (e) => `${e.time} ${e.type} ${e.vm ?? ""} ${e.node ?? ""} ${e.reason}`,
        );
        throw new Error(`${err.message}; events:\n${seen.join("\n")}`);
      },
    );

  async function runningVm(name = "a", extra: Parameters<typeof startedVmRequest>[1] = {}): Promise<VmView> {
    await service.createVm(startedVmRequest(name, extra));
    return until("running", (v) => v.state === "running", name);
  }

  const migrate = (vm: string, body: unknown = {}) =>
    service.requestMigration(vm, migrateRequest.parse(body));

  test("live: the target listens, the source sends, the placement flips once the guest arrived", async () => {
    const n1 = await startNode("n1");
    const n2 = await startNode("n2");
    const before = await runningVm();
    const [source, target] = before.node === "n1" ? [n1, n2] : [n2, n1];
    const targetName = before.node === "n1" ? "n2" : "n1";
    const { id } = await migrate("a", { settings: { downtimeLimitMs: 50 } });
    await waitFor("the source migrates", () => Promise.resolve(source.migrations[0]), 30_000, 20);
    const sent = source.migrations[0]!;
    assert.equal(
      sent.tls?.hostname,
      targetName === "n1" ? "127.0.0.1" : "127.0.0.2",
      "TLS to the target's address",
    );
    assert.equal(sent.downtimeLimitMs, 50);
    assert.equal(target.incomingStarted[0]!.generation, before.generation! + 1);
    const migrating = await until(
      "migrating",
      (v) => v.state === "migrating" && v.migration?.progress !== null,
    );
    assert.equal(migrating.migration?.id, id);
    source.completeMigration("a", 42);
    // The source's word that it completed is enough for the controller to hand the guest to the target.
    await until("placed on the target", (v) => v.node === targetName && !v.migration);
    target.arrive("a");
    const after = await until("running on the target", (v) => v.node === targetName && v.state === "running");
    assert.equal(after.generation, before.generation! + 1);
    await waitFor(
      "the source's paused QEMU is gone",
      () => Promise.resolve(source.guests.size === 0 ? true : undefined),
      30_000,
      20,
    );
    assert.equal(target.started.length, 0, "the target never booted the guest: it received it");
    assert.match((await eventOf("migrated")).reason, /downtime 42 ms/);
    assert.match((await eventOf("migration-sent")).reason, /downtime 42 ms/);
    assert.deepEqual(findDoubleRuns(await events()), []);
  });

  test("a failed live migration leaves the guest on the source and the target's QEMU is removed", async () => {
    const n1 = await startNode("n1");
    const n2 = await startNode("n2");
    const before = await runningVm();
    const [source, target] = before.node === "n1" ? [n1, n2] : [n2, n1];
    await migrate("a", { settings: { transport: "tcp" } });
    await waitFor("the source migrates", () => Promise.resolve(source.migrations[0]), 30_000, 20);
    assert.equal(source.migrations[0]!.tls, undefined, "plain TCP when asked for");
    source.failMigration("a", "connection reset");
    const after = await until("migration over", (v) => !v.migration);
    assert.equal(after.node, before.node);
    assert.equal(after.pid, before.pid, "the same QEMU runs on");
    assert.match((await eventOf("migration-failed")).reason, /connection reset.*stays on/);
    await waitFor(
      "target QEMU gone",
      () => Promise.resolve(target.guests.size === 0 ? true : undefined),
      30_000,
      20,
    );
  });

  test("cancel: QEMU is told to cancel and the guest stays", async () => {
    const n1 = await startNode("n1");
    const n2 = await startNode("n2");
    const before = await runningVm();
    const source = before.node === "n1" ? n1 : n2;
    await migrate("a");
    await waitFor("the source migrates", () => Promise.resolve(source.migrations[0]), 30_000, 20);
    await service.cancelMigration("a");
    const after = await until("migration over", (v) => !v.migration);
    assert.equal(after.node, before.node);
    await eventOf("migration-cancelled");
    // A new attempt to the same node gets a fresh QEMU there, though its generation is the same.
    const target = before.node === "n1" ? n2 : n1;
    await waitFor(
      "the target QEMU gone",
      () => Promise.resolve(target.guests.size === 0 ? true : undefined),
      30_000,
      20,
    );
    await migrate("a");
    await waitFor("a second incoming QEMU", () => Promise.resolve(target.incomingStarted[1]), 30_000, 20);
    await waitFor("the source migrates again", () => Promise.resolve(source.migrations[1]), 30_000, 20);
    source.completeMigration("a");
    target.arrive("a");
    await until("moved", (v) => v.node !== before.node && v.state === "running");
  });

  test("the target's node fails mid-migration: the migration ends, the guest stays", async () => {
    const n1 = await startNode("n1");
    const n2 = await startNode("n2");
    const before = await runningVm();
    const targetName = before.node === "n1" ? "n2" : "n1";
    const source = before.node === "n1" ? n1 : n2;
    await migrate("a");
    await waitFor("the source migrates", () => Promise.resolve(source.migrations[0]), 30_000, 20);
    stops.get(targetName)!.abort();
    await etcd.delete(store.nodeKey(targetName));
    const after = await until("migration over", (v) => !v.migration);
    assert.equal(after.node, before.node);
    assert.match((await eventOf("migration-failed")).reason, new RegExp(`target node ${targetName} is gone`));
  });

  test("cold: a VM that may not migrate live is stopped, moved and started", async () => {
    const n1 = await startNode("n1");
    const n2 = await startNode("n2");
    const before = await runningVm("a", { allowMigrate: false });
    const target = before.node === "n1" ? n2 : n1;
    await migrate("a");
    const after = await until(
      "running on the other node",
      (v) => v.node !== before.node && v.state === "running",
    );
    assert.equal(target.started.length, 1, "booted on the target");
    assert.equal(after.generation, before.generation! + 1);
    const types = (await events()).map((e) => e.type);
    assert.ok(types.includes("moving") && types.includes("moved"));
    const history = await events();
    assert.deepEqual(
      findDoubleRuns(history),
      [],
      history.map((e) => `${e.time} ${e.type} ${e.node} ${e.reason}`).join("\n"),
    );
  });

  test("refusals: not running, unknown, same or non-compute target, a second request, a cancel with nothing to cancel", async () => {
    await startNode("n1");
    await startNode("n2");
    const before = await runningVm();
    await assert.rejects(migrate("a", { to: before.node }), /already runs on/);
    await assert.rejects(migrate("a", { to: "n9" }), /node n9 is not online/);
    await store.putNode(nodeInfo("disks", { roles: ["storage", "monitor"] }), await etcd.grantLease(5));
    await assert.rejects(
      migrate("a", { to: "disks" }),
      /node disks is not a compute node \(roles storage\+monitor\)/,
    );
    await assert.rejects(service.cancelMigration("a"), /not moving/);
    await assert.rejects(migrate("ghost"), /does not exist/);
    await service.setDesiredState("a", "stopped");
    await until("stopped", (v) => v.state === "stopped");
    await assert.rejects(migrate("a"), /not running/);
  });

  test("maintenance: the node's guests move away, at most K at once, and it takes no new ones", async () => {
    const n1 = await startNode("n1");
    const n2 = await startNode("n2");
    await service.setMigrationDefaults({ maxPerNode: 1 });
    for (const vm of ["a", "b", "c"]) await runningVm(vm, { memoryMb: 64 });
    const onN1 = async () => (await service.listVms()).filter((v) => v.node === "n1").map((v) => v.name);
    const draining = await onN1();
    await service.setMaintenance("n1", true);
    // Complete each live migration as it comes: the fakes need to be told.
    for (let moved = 0; moved < draining.length; moved++) {
      const vm = await waitFor(
        `a migration (events: ${JSON.stringify((await events()).map((e) => [e.type, e.vm, e.reason]))})`,
        async () => (await service.listVms()).find((v) => v.migration && v.migration.progress)?.name,
        30_000,
        20,
      );
      const underWay = (await service.listVms()).filter((v) => v.migration).length;
      assert.equal(underWay, 1, "one migration at a time per node");
      n1.completeMigration(vm);
      n2.arrive(vm);
      await until(`${vm} moved`, (v) => v.node === "n2" && !v.migration, vm);
    }
    assert.deepEqual(await onN1(), []);
    await runningVm("d", { memoryMb: 64 });
    assert.equal((await show("d")).node, "n2", "nothing new on a node in maintenance");
    const node = (await service.listNodes()).find((n) => n.name === "n1");
    assert.ok(node?.maintenance);
  });
});
