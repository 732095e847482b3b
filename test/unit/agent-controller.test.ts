// The agent, the controller and the API service wired together on fakes (etcd, QEMU, storage): the real
// program logic at full speed, no processes.
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, test } from "node:test";
import { ClusterStore } from "../../src/adapters/etcd/cluster-store.js";
import { FakeEtcd } from "../../src/adapters/etcd/fake.js";
import { FakeHypervisor } from "../../src/adapters/qemu/fake-hypervisor.js";
import { FakeStorage } from "../../src/adapters/storage/fake.js";
import { Agent } from "../../src/agent/agent.js";
import { HavenService } from "../../src/api/service.js";
import { Controller } from "../../src/controller/controller.js";
import type { NodeInfo, VmView } from "../../src/core/model.js";
import { waitFor } from "../../src/lib/async.js";
import { silentLogger } from "../../src/lib/log.js";

const KERNEL = process.execPath; // any readable file will do as a kernel for fakes

describe("agent + controller on fakes", () => {
  let etcd: FakeEtcd;
  let store: ClusterStore;
  let service: HavenService;
  let storage: FakeStorage;
  let shutdown: AbortController;
  let running: Promise<unknown>[];
  let leaseOk: boolean;
  const hypervisors = new Map<string, FakeHypervisor>();

  async function startNode(name: string, hypervisor = new FakeHypervisor()): Promise<FakeHypervisor> {
    hypervisors.set(name, hypervisor);
    const lease = await etcd.grantLease(5);
    const info: NodeInfo = {
      name,
      api: "http://127.0.0.1:1",
      capacity: { vcpus: 4, memoryMb: 1024 },
      attributes: {},
      accel: "tcg",
      accelReason: "test",
      storage: { ok: true, summary: "test" },
      startedAt: "t0",
      version: "0",
    };
    await store.putNode(info, lease);
    const deps = { node: name, store, lease: () => lease, log: silentLogger };
    const leaseValid = () => leaseOk;
    running.push(new Agent({ ...deps, hypervisor, storage, accel: "tcg", leaseValid }).run(shutdown.signal));
    running.push(new Controller(deps).run(shutdown.signal));
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
      5000,
      20,
    );

  beforeEach(() => {
    etcd = new FakeEtcd({ now: () => Date.now() });
    store = new ClusterStore(etcd, "/test/");
    storage = new FakeStorage();
    service = new HavenService(store, storage, { name: "test", guestDir: "/nonexistent" });
    shutdown = new AbortController();
    running = [];
    leaseOk = true;
    hypervisors.clear();
  });

  afterEach(async () => {
    shutdown.abort();
    await Promise.all(running);
    etcd.close();
  });

  const create = (name: string, extra: Record<string, unknown> = {}) =>
    service.createVm({
      name,
      canary: false,
      kernel: KERNEL,
      start: true,
      restartLimit: 1,
      diskSizeMb: 8,
      ...extra,
    });

  test("a started VM is placed, started once and reported running", async () => {
    await startNode("n1");
    await startNode("n2");
    await create("a");
    const view = await until("running", (v) => v.state === "running");
    const hv = hypervisors.get(view.node!)!;
    assert.equal(hv.started.length, 1);
    assert.equal(hv.started[0]!.disks[0]!.image, "a-disk0");
    const others = [...hypervisors.entries()].filter(([name]) => name !== view.node);
    assert.ok(
      others.every(([, other]) => other.started.length === 0),
      "exactly one node runs it",
    );
  });

  test("crashes are restarted up to the limit, then the VM is in error", async () => {
    const hv = await startNode("n1");
    await create("a");
    await until("running", (v) => v.state === "running");
    hv.crash("a");
    const restarted = await until("restarted", (v) => v.state === "running" && v.restarts === 1);
    assert.equal(restarted.generation, 2);
    hv.crash("a");
    const failed = await until("error", (v) => v.state === "error");
    assert.match(failed.reason ?? "", /gave up after 1 restarts/);
    assert.equal(hv.started.length, 2);
    const types = (await service.events(100)).map((e) => e.type);
    for (const type of ["created", "placed", "started", "crashed", "restarting", "error"])
      assert.ok(types.includes(type), type);
  });

  test("a QEMU that fails to start counts against the restart limit", async () => {
    const hv = await startNode("n1");
    hv.failNextStart = "kernel not found";
    await create("a");
    const view = await until("running after one failed start", (v) => v.state === "running");
    assert.equal(view.restarts, 1);
  });

  test("stop releases the placement after the guest is gone; start places it again", async () => {
    const hv = await startNode("n1");
    await create("a");
    await until("running", (v) => v.state === "running");
    await service.setDesiredState("a", "stopped");
    await until("stopped", (v) => v.state === "stopped" && v.node === null);
    assert.equal(hv.guests.size, 0);
    await service.setDesiredState("a", "started");
    const again = await until("running again", (v) => v.state === "running");
    assert.ok(again.generation! >= 2, "a new start gets a new generation");
  });

  test("a restarted agent re-attaches instead of starting a second QEMU", async () => {
    const hv = await startNode("n1");
    await create("a");
    const before = await until("running", (v) => v.state === "running");
    // A second agent on the same node (same hypervisor state) as after a havend restart.
    const lease = await etcd.grantLease(5);
    running.push(
      new Agent({
        node: "n1",
        store,
        hypervisor: hv,
        storage,
        accel: "tcg",
        lease: () => lease,
        leaseValid: () => true,
        log: silentLogger,
      }).run(shutdown.signal),
    );
    await new Promise((r) => setTimeout(r, 300));
    const after = await show("a");
    assert.equal(hv.started.length, 1);
    assert.equal(after.pid, before.pid);
  });

  test("an agent whose lease deadline passed kills its guests within moments and starts none", async () => {
    const hv = await startNode("n1");
    await create("a");
    await until("running", (v) => v.state === "running");
    leaseOk = false;
    const started = Date.now();
    await waitFor("guest killed", () => (hv.guests.size === 0 ? true : undefined), 2000, 10);
    assert.ok(Date.now() - started < 500, `killed after ${Date.now() - started} ms`);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(hv.guests.size, 0, "nothing restarted while the lease is invalid");
    const types = (await service.events(100)).map((e) => e.type);
    assert.ok(types.includes("self-fenced"));
  });

  test("create rolls back its disk when the name is taken, delete removes disks", async () => {
    await startNode("n1");
    await create("a", { start: false });
    await assert.rejects(create("a", { start: false }), /already exists/);
    assert.deepEqual([...storage.images.keys()], ["a-disk0"]);
    await service.deleteVm("a");
    assert.deepEqual([...storage.images.keys()], []);
  });
});
