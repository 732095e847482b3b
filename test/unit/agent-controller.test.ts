// The agent, the controller and the API service wired together on fakes (etcd, QEMU, storage): the real
// program logic at full speed, no processes.
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, test } from "node:test";
import { ClusterStore } from "../../src/adapters/etcd/cluster-store.js";
import { FakeEtcd } from "../../src/adapters/etcd/fake.js";
import { FakeFenceRunner } from "../../src/adapters/fence/fake.js";
import { FakeHypervisor } from "../../src/adapters/qemu/fake-hypervisor.js";
import { FakeStorage } from "../../src/adapters/storage/fake.js";
import { Agent } from "../../src/agent/agent.js";
import { updateVmRequest } from "../../src/api/requests.js";
import { HavenService } from "../../src/api/service.js";
import { Controller } from "../../src/controller/controller.js";
import type { NodeInfo, VmView } from "../../src/core/model.js";
import { waitFor } from "../../src/lib/async.js";
import { silentLogger } from "../../src/lib/log.js";
import { nodeInfo, serviceOptions } from "./fixtures.js";

const KERNEL = process.execPath; // any readable file will do as a kernel for fakes

describe("agent + controller on fakes", () => {
  let etcd: FakeEtcd;
  let store: ClusterStore;
  let service: HavenService;
  let storage: FakeStorage;
  let fenceAgents: FakeFenceRunner;
  let shutdown: AbortController;
  let running: Promise<unknown>[];
  let leaseOk: boolean;
  const hypervisors = new Map<string, FakeHypervisor>();

  const nodeLeases = new Map<string, string>();
  const nodeStops = new Map<string, AbortController>();

  async function startNode(name: string, hypervisor = new FakeHypervisor()): Promise<FakeHypervisor> {
    hypervisors.set(name, hypervisor);
    const lease = await etcd.grantLease(5);
    nodeLeases.set(name, lease);
    const stop = new AbortController();
    nodeStops.set(name, stop);
    const signal = AbortSignal.any([shutdown.signal, stop.signal]);
    const info = nodeInfo(name);
    await store.putNode(info, lease);
    const deps = { node: name, store, lease: () => lease, log: silentLogger };
    const leaseValid = () => leaseOk;
    const publishGuests = (guests: NodeInfo["guests"]) => store.putNode({ ...info, guests }, lease);
    const migration = { host: "127.0.0.1" };
    const agentDeps = {
      ...deps,
      hypervisor,
      storage,
      accel: "tcg" as const,
      leaseValid,
      leaseExpiresAt: () => Infinity,
      publishGuests,
      migration,
    };
    const agent = new Agent(agentDeps);
    running.push(agent.run(signal));
    const timings = { fenceAgentRetryMs: 300, liftFencesEveryMs: 100 };
    running.push(new Controller({ ...deps, storage, fenceAgents, timings }).run(signal));
    return hypervisor;
  }

  /** The node stops answering (frozen or cut off): its processes stop, its guests stay, its lease expires. */
  async function failNode(name: string): Promise<void> {
    nodeStops.get(name)!.abort();
    await etcd.revokeLease(nodeLeases.get(name)!);
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

  beforeEach(() => {
    etcd = new FakeEtcd({ now: () => Date.now() });
    store = new ClusterStore(etcd, "/test/");
    storage = new FakeStorage();
    fenceAgents = new FakeFenceRunner();
    service = new HavenService(store, storage, serviceOptions());
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
      ha: true,
      relocateLimit: 0,
      failureTimeoutSeconds: 0,
      priority: 0,
      stickiness: 0,
      allowMigrate: true,
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

  test("reboot, reset and disk growth are done once by the node that runs the guest; its agent's answers show", async () => {
    const h1 = await startNode("n1");
    const debian = { os: "Debian GNU/Linux 12", addresses: {} };
    h1.guestInfos.set("a", debian);
    await create("a");
    const running = await until("running", (v) => v.state === "running");
    await until("the guest's OS reported", (v) => v.os === "Debian GNU/Linux 12");
    h1.guestInfos.delete("a");
    await assert.rejects(
      service.guestAction("a", "reboot"),
      /reboot failed.*guest agent of a does not answer/,
    );
    h1.guestInfos.set("a", debian);
    const rebooted = await service.guestAction("a", "reboot");
    assert.equal(rebooted.type, "rebooted");
    assert.equal((await service.guestAction("a", "reset")).type, "reset");
    await service.resizeDisk("a-disk0", 16, false);
    assert.deepEqual(h1.actions, ["reboot a", "reset a", `resize disk0 ${16 * 1024 * 1024} a`]);
    // A running guest's image is grown by its QEMU (block_resize), which the fake only records.
    assert.equal((await store.snapshotVms()).actions.size, 0, "done actions are removed");
    assert.equal((await show("a")).generation, running.generation, "the same QEMU all along");
    await service.setDesiredState("a", "stopped");
    await until("stopped", (v) => v.state === "stopped");
    await assert.rejects(service.guestAction("a", "reset"), /VM a is not running/);
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
        leaseExpiresAt: () => Infinity,
        publishGuests: () => Promise.resolve(),
        migration: { host: "127.0.0.1" },
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
    await waitFor("guest killed", () => (hv.guests.size === 0 ? true : undefined), 30_000, 10);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(hv.guests.size, 0, "nothing restarted while the lease is invalid");
    const types = (await service.events(100)).map((e) => e.type);
    assert.ok(types.includes("self-fenced"));
  });

  test("a failed node's guest is fenced, then recovered on another node", async () => {
    const order: string[] = [];
    const n1 = await startNode("n1");
    await create("a");
    await until("running on n1", (v) => v.state === "running" && v.node === "n1");
    storage.watching.set("a-disk0", ["127.0.0.1:0/111"]);
    const fence = storage.fence.bind(storage);
    storage.fence = (image: string, expire?: number) => {
      order.push(`fence ${image}`);
      return fence(image, expire);
    };
    const n2 = await startNode("n2");
    const start = n2.start.bind(n2);
    n2.start = (launch) => {
      order.push(`start ${launch.vm} on n2`);
      return start(launch);
    };
    await failNode("n1");
    const recovered = await until("running on n2", (v) => v.state === "running" && v.node === "n2");
    assert.ok(recovered.generation! > 1);
    assert.deepEqual(order, ["fence a-disk0", "start a on n2"], "fence before recover");
    assert.deepEqual(storage.fences, [{ image: "a-disk0", addresses: ["127.0.0.1:0/111"] }]);
    assert.equal(n1.guests.size, 1, "the frozen node still holds its (now fenced) QEMU");
    const types = (await service.events(100)).map((e) => e.type);
    for (const type of ["node-lost", "fenced", "recovered"]) assert.ok(types.includes(type), type);
  });

  const eventOf = (type: string) =>
    waitFor(type, async () => (await service.events(1000)).find((e) => e.type === type), 30_000, 20);

  test("a node's fence agent must power it off before its guests start elsewhere; a failure is retried", async () => {
    await startNode("n1");
    await store.putFenceAgent("n1", { command: ["fence_test", "--plug", "n1"], timeoutSeconds: 5 });
    await create("a");
    await until("running on n1", (v) => v.state === "running" && v.node === "n1");
    const n2 = await startNode("n2");
    fenceAgents.failing.add("n1");
    await failNode("n1");
    const failed = await eventOf("power-fence-failed");
    assert.match(failed.reason, /fence agent 'fence_test --plug n1' exited 1.*not started elsewhere/);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(n2.started.length, 0, "nothing starts while the node is not fenced");
    assert.equal(storage.fences.length, 0, "power fencing comes before storage fencing");
    fenceAgents.failing.delete("n1");
    await until("recovered on n2", (v) => v.state === "running" && v.node === "n2");
    assert.match((await eventOf("power-fenced")).reason, /exited 0/);
    assert.ok(fenceAgents.runs.length >= 2 && fenceAgents.runs.every((run) => run.node === "n1"));
  });

  test("a storage fence is lifted once its node is back and no longer runs the fenced guest", async () => {
    const n1 = await startNode("n1");
    await create("a");
    await until("running on n1", (v) => v.state === "running" && v.node === "n1");
    storage.watching.set("a-disk0", ["127.0.0.1:0/111"]);
    await startNode("n2");
    await failNode("n1");
    await until("recovered on n2", (v) => v.state === "running" && v.node === "n2");
    assert.equal((await store.listStorageFences()).length, 1);
    assert.equal(n1.guests.size, 1, "the cut-off node still runs the old generation");
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(storage.unfenced, [], "not lifted while the node is away");
    await startNode("n1", n1); // back, with the old QEMU: its agent kills it (placed on n2 now)
    const lifted = await eventOf("unfenced");
    assert.match(
      lifted.reason,
      /no longer runs generation 1: lifted the blocklisting of 127\.0\.0\.1:0\/111/,
    );
    assert.equal(n1.guests.size, 0);
    assert.deepEqual(storage.unfenced, [["127.0.0.1:0/111"]]);
    assert.deepEqual(await store.listStorageFences(), []);
  });

  test("a guest that cannot be fenced is never started elsewhere", async () => {
    await startNode("n1");
    await create("a");
    await until("running on n1", (v) => v.state === "running" && v.node === "n1");
    storage.canFence = false;
    const n2 = await startNode("n2");
    await failNode("n1");
    await waitFor(
      "refusal",
      async () => {
        const events = await service.events(100);
        return events.some((e) => e.type === "recovery-refused") ? true : undefined;
      },
      30_000,
      20,
    );
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(n2.started.length, 0);
    assert.equal((await show("a")).node, "n1");
    const events = await service.events(100);
    assert.equal(
      events.filter((e) => e.type === "recovery-refused").length,
      1,
      "one refusal, not one per second",
    );
    assert.equal(events.filter((e) => e.type === "node-lost").length, 1, "one detection");
  });

  test("a VM with HA off stays with its failed node", async () => {
    await startNode("n1");
    await create("a", { ha: false });
    await until("running on n1", (v) => v.state === "running" && v.node === "n1");
    const n2 = await startNode("n2");
    await failNode("n1");
    await waitFor(
      "unplaceable event",
      async () => {
        const events = await service.events(100);
        return events.some((e) => e.type === "unplaceable" && /HA is off/.test(e.reason)) ? true : undefined;
      },
      30_000,
      20,
    );
    assert.equal(n2.started.length, 0);
  });

  test("a status is written only while the placement names the writing node", async () => {
    await create("a", { start: false });
    const lease = await etcd.grantLease(5);
    const status = { node: "n1", generation: 1, state: "fenced" as const, updatedAt: "t0" };
    assert.equal(await store.putStatus("a", status, lease), false, "no placement yet");
    const placement = { node: "n2", generation: 2, restarts: 0, relocations: 0, state: "active" as const };
    assert.ok(await store.swapPlacement("a", { ...placement, reason: "", updatedAt: "t0" }, 0));
    assert.equal(await store.putStatus("a", status, lease), false, "placed on n2: n1's report is stale");
    assert.equal(await store.getStatus("a"), undefined);
    assert.equal(await store.putStatus("a", { ...status, node: "n2", state: "running" }, lease), true);
    assert.equal((await store.getStatus("a"))?.node, "n2");
  });

  test("a placement and the event that explains it are written together, or neither is", async () => {
    await create("a", { start: false });
    const placement = { node: "n1", generation: 1, restarts: 0, relocations: 0, state: "active" as const };
    const placed = { type: "placed", vm: "a", node: "n1", reason: "test" };
    const placedEvents = async () => (await store.listEvents()).filter((e) => e.reason === "test");
    assert.ok(await store.swapPlacement("a", { ...placement, reason: "", updatedAt: "t0" }, 0, placed));
    const [event] = await placedEvents();
    assert.equal(event?.type, "placed");
    const afterEvent = (await etcd.get(`${store.eventsPrefix}${event.id}`))!.modRevision;
    assert.equal((await store.getPlacement("a"))?.modRevision, afterEvent, "one revision");
    assert.equal(await store.swapPlacement("a", null, 7, placed), false, "stale generation");
    assert.equal((await placedEvents()).length, 1, "a refused swap writes no event");
  });

  test("vm set changes only the fields it names", async () => {
    await create("a", { restartLimit: 4, priority: 1, stickiness: 100 });
    const change = updateVmRequest.parse({ priority: 7 });
    const { spec } = await service.updateVm("a", change);
    assert.deepEqual(
      [spec.priority, spec.restartLimit, spec.failureTimeoutSeconds, spec.stickiness],
      [7, 4, 0, 100],
    );
    const sticky = await service.updateVm("a", updateVmRequest.parse({ stickiness: 1_000_000 }));
    assert.deepEqual([sticky.spec.stickiness, sticky.spec.priority], [1_000_000, 7]);
    assert.throws(() => updateVmRequest.parse({ stickiness: 1_000_001 }), /stickiness/);
    assert.throws(() => updateVmRequest.parse({}), /nothing to change/);
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
