// Fault commands of local clusters (what the HA tests and the demo use), on a real 3-node cluster with a
// 3-member etcd: etcd members killed and restarted, nodes killed, frozen and thawed, refusals.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { isDeepStrictEqual } from "node:util";
import { after, afterEach, before, describe, test } from "node:test";
import { commandLine, isAlive, processState } from "../../src/lib/process.js";
import type { HavenEvent, VmView } from "../../src/core/model.js";
import { clusterFileSchema, requireClusterFile } from "../../src/setup/cluster-file.js";
import { eventually, SUITE_TIMEOUT, TestCluster } from "./harness.js";

interface EtcdRow {
  name: string;
  endpoint: string;
  pid: number | null;
  running: boolean;
  healthy: boolean;
}
interface NodeProcessRow {
  pid: number;
  process: "havend" | "qemu";
  vm?: string;
}

/**
 * A TestCluster made with extra `cluster up` options (TestCluster.start knows only nodes, accel and
 * storage): the same temporary "haven-test-" state directory, the same stop() and leak check.
 */
const startCluster = (nodes: number, extraArgs: string[]) => TestCluster.start({ nodes, extraArgs });

async function refused(target: TestCluster, args: string[], exitCode: number, message: RegExp) {
  const result = await target.haven(args);
  assert.equal(result.code, exitCode, `haven ${args.join(" ")}: ${result.stdout} ${result.stderr}`);
  assert.match(result.stderr, message);
  assert.doesNotMatch(result.stderr, /\n\s+at /, "no stack trace for user errors");
}

const gone = (pid: number) => !isAlive(pid);

describe("fault commands on a local cluster", SUITE_TIMEOUT, () => {
  let cluster: TestCluster;
  /** Processes a test froze: thawed in after() whatever happened, so that cleanup can stop them. */
  const frozen = new Set<number>();
  const show = (vm: string) => cluster.json<VmView>(["vm", "show", vm]);
  const members = () => cluster.json<EtcdRow[]>(["etcd", "list"]);
  const ackAbove = (vm: string, floor: number) =>
    eventually(`${vm} acks past ${floor}`, async () => {
      const view = await show(vm);
      return view.state === "running" && (view.lastAck ?? 0) > floor ? view : undefined;
    });
  /** Waits until `etcd list` shows these [name, running, healthy] rows (health can lag an election). */
  const membersBecome = (expected: Array<[string, boolean, boolean]>) =>
    eventually(
      `etcd members ${JSON.stringify(expected)}`,
      async () => {
        const list = await members();
        const rows = list.map((m) => [m.name, m.running, m.healthy]);
        return isDeepStrictEqual(rows, expected) ? list : undefined;
      },
      60_000,
    );
  /** Every test that needs a running canary starts its own; the reset after each test deletes it. */
  const startCanary = async (vm: string) => {
    const created = await cluster.haven(["vm", "create", vm, "--canary", "--start"]);
    assert.equal(created.code, 0, created.stderr);
    return ackAbove(vm, 0);
  };
  const havendPid = async (node: string) =>
    Number(await readFile(join(cluster.stateDir, "nodes", node, "havend.pid"), "utf8"));

  before(async () => {
    cluster = await startCluster(3, ["--etcd-members", "3"]);
  });
  afterEach(async () => {
    await cluster.reset();
  });
  after(async () => {
    for (const pid of frozen) {
      try {
        process.kill(pid, "SIGCONT");
      } catch {
        /* gone */
      }
    }
    await cluster?.stop();
  });

  test("--etcd-members 3: three healthy members, and every havend knows all of them", async () => {
    const list = await membersBecome([
      ["etcd1", true, true],
      ["etcd2", true, true],
      ["etcd3", true, true],
    ]);
    // Each member on its node's host.
    const { hosts } = await requireClusterFile(cluster.stateDir);
    assert.deepEqual(
      list.map((m) => new URL(m.endpoint).hostname),
      hosts!.hosts.map((host) => host.address),
    );
    for (const node of ["node1", "node2", "node3"]) {
      const config = JSON.parse(
        await readFile(join(cluster.stateDir, "nodes", node, "havend.json"), "utf8"),
      ) as { etcd: string[] };
      assert.deepEqual(
        config.etcd,
        list.map((m) => m.endpoint),
      );
    }
    // Idempotent: nothing is missing, nothing is started.
    const up = await cluster.haven(["cluster", "up"]);
    assert.equal(up.code, 0, up.stderr);
    assert.doesNotMatch(up.stderr, /starting etcd/);
    assert.deepEqual(
      (await members()).map((m) => m.pid),
      list.map((m) => m.pid),
    );
  });

  test("losing one of three etcd members changes nothing; it rejoins with its data", async () => {
    const kill = await cluster.json<{ pid: number; running: number; quorum: boolean }>([
      "etcd",
      "kill",
      "etcd2",
    ]);
    assert.ok(gone(kill.pid), "etcd2's process is gone");
    assert.equal(kill.running, 2);
    assert.equal(kill.quorum, true);
    // If etcd2 led the raft group, the others are unhealthy until they elected a new leader (a second or two).
    await membersBecome([
      ["etcd1", true, true],
      ["etcd2", false, false],
      ["etcd3", true, true],
    ]);

    await startCanary("canary");

    const start = await cluster.json<{ pid: number; started: boolean; healthy: boolean }>([
      "etcd",
      "start",
      "etcd2",
    ]);
    assert.equal(start.started, true);
    assert.equal(start.healthy, true);
    assert.notEqual(start.pid, kill.pid);
    const again = await cluster.json<{ started: boolean }>(["etcd", "start", "etcd2"]);
    assert.equal(again.started, false, "starting a running member is a no-op");
    await membersBecome([
      ["etcd1", true, true],
      ["etcd2", true, true],
      ["etcd3", true, true],
    ]);
    assert.match(commandLine(start.pid), /--initial-cluster-state=existing/, "restarted from its data");
  });

  test("losing etcd1, the endpoint every client tries first, does not disturb nodes or guests", async () => {
    const running = await startCanary("canary");
    const kill = await cluster.json<{ quorum: boolean }>(["etcd", "kill", "etcd1"]);
    assert.equal(kill.quorum, true);
    await membersBecome([
      ["etcd1", false, false],
      ["etcd2", true, true],
      ["etcd3", true, true],
    ]);
    // Past a lease TTL: every agent renewed its lease through another member, so no guest was self-fenced.
    await new Promise((r) => setTimeout(r, 6000));
    const nodes = await cluster.json<Array<{ name: string }>>(["node", "list"]);
    assert.equal(nodes.length, 3, "all nodes still online");
    const after = await ackAbove("canary", running.lastAck!);
    if (after.pid !== running.pid) {
      // Says why the guest was restarted: the cluster's events, and what the node's havend logged about its
      // lease (a self-fence cannot write an event: it happens when etcd does not answer).
      const events = await cluster.json<HavenEvent[]>(["events", "--limit", "50"]);
      const told = events.map((e) => `${e.time} ${e.type} ${e.node ?? ""} ${e.vm ?? ""}: ${e.reason}`);
      const log = await readFile(join(cluster.stateDir, "nodes", running.node!, "havend.log"), "utf8");
      const lease = log.split("\n").filter((line) => /lease|self-fenc/.test(line));
      assert.fail(
        `the canary's QEMU was replaced (${running.pid} -> ${after.pid}):\n${told.join("\n")}\n` +
          `${running.node}'s havend:\n${lease.slice(-30).join("\n")}`,
      );
    }
    const start = await cluster.json<{ healthy: boolean }>(["etcd", "start", "etcd1"]);
    assert.equal(start.healthy, true);
  });

  test("node freeze stops the node's havend and QEMUs; node thaw lets them run on", async () => {
    const running = await startCanary("canary");
    const node = running.node!;
    const result = await cluster.json<{ froze: NodeProcessRow[] }>(["node", "freeze", node]);
    for (const p of result.froze) frozen.add(p.pid);
    assert.deepEqual(result.froze.map((p) => [p.process, p.pid]).sort(), [
      ["havend", await havendPid(node)],
      ["qemu", running.pid!],
    ]);
    for (const p of result.froze) assert.equal(processState(p.pid), "T", `${p.process} is stopped`);

    const thaw = await cluster.json<{ thawed: NodeProcessRow[] }>(["node", "thaw", node]);
    assert.deepEqual(thaw.thawed.map((p) => p.pid).sort(), result.froze.map((p) => p.pid).sort());
    for (const p of result.froze) {
      assert.ok(["R", "S", "D"].includes(processState(p.pid) ?? "gone"), `${p.process} runs again`);
      frozen.delete(p.pid);
    }
    // A short freeze (well within the lease TTL) is harmless: the same QEMU acks on.
    const after = await ackAbove("canary", running.lastAck!);
    assert.equal(after.pid, running.pid);
  });

  test("node kill: havend and QEMUs gone, the node leaves the cluster; cluster up brings it back", async () => {
    const running = await startCanary("canary");
    const node = running.node!;
    const havend = await havendPid(node);
    const result = await cluster.json<{ killed: NodeProcessRow[] }>(["node", "kill", node]);
    assert.deepEqual(result.killed.map((p) => [p.process, p.pid]).sort(), [
      ["havend", havend],
      ["qemu", running.pid!],
    ]);
    assert.equal(result.killed.find((p) => p.process === "qemu")?.vm, "canary");
    assert.ok(gone(havend), "havend is gone");
    assert.ok(gone(running.pid!), "QEMU is gone");
    await eventually(
      `${node} gone from the node list (lease expired)`,
      async () => {
        const nodes = await cluster.json<Array<{ name: string }>>(["node", "list"]);
        return nodes.some((n) => n.name === node) ? undefined : true;
      },
      60_000,
    );
    const again = await cluster.json<{ killed: NodeProcessRow[] }>(["node", "kill", node]);
    assert.deepEqual(again.killed, [], "nothing left to kill");

    const up = await cluster.haven(["cluster", "up"]);
    assert.equal(up.code, 0, up.stderr);
    assert.match(up.stderr, new RegExp(`started havend ${node}`));
    assert.doesNotMatch(up.stderr, /starting etcd/);
    const nodes = await cluster.json<Array<{ name: string; state: string }>>(["node", "list"]);
    assert.equal(nodes.find((n) => n.name === node)?.state, "online");
    assert.notEqual(await havendPid(node), havend);
  });

  test("unknown node or etcd member: exit 3", async () => {
    for (const verb of ["kill", "freeze", "thaw"])
      await refused(cluster, ["node", verb, "node9"], 3, /node node9 does not exist/);
    await refused(cluster, ["etcd", "kill", "etcd9"], 3, /etcd member etcd9 does not exist/);
    await refused(cluster, ["etcd", "start", "etcd"], 3, /etcd member etcd does not exist/);
  });

  test("fault commands are refused on a cluster whose etcd is not its own", async () => {
    const endpoints = (await members()).map((m) => m.endpoint).join(",");
    assert.match(endpoints, /^https:/);
    // The shared etcd serves only certificates from the first cluster's CA: node1's identity is lent.
    const identity = join(cluster.stateDir, "nodes", "node1", "tls");
    const asClient = ["--etcd", endpoints, "--etcd-ca", join(identity, "ca-cert.pem")];
    const refusedWithoutCert = await cluster.haven([
      "--state-dir",
      join(cluster.stateDir, "foreign-no-cert"),
      "cluster",
      "up",
      ...asClient,
      "--etcd-cert",
      join(identity, "client-cert.pem"),
    ]);
    assert.equal(refusedWithoutCert.code, 2);
    assert.match(refusedWithoutCert.stderr, /--etcd-cert and --etcd-key go together/);
    const foreign = await startCluster(1, [
      ...asClient,
      "--etcd-cert",
      join(identity, "client-cert.pem"),
      "--etcd-key",
      join(identity, "client-key.pem"),
    ]);
    try {
      for (const args of [
        ["node", "kill", "node1"],
        ["node", "freeze", "node1"],
        ["node", "thaw", "node1"],
        ["etcd", "kill", "etcd1"],
        ["etcd", "start", "etcd1"],
      ])
        await refused(foreign, args, 2, /is not local/);
      await eventually("the shared etcd listed as healthy and not local", async () => {
        const list = await foreign.json<EtcdRow[]>(["etcd", "list"]);
        return list.length === 3 && list.every((m) => m.healthy && m.pid === null) ? list : undefined;
      });
      const nodes = await foreign.json<Array<{ name: string }>>(["node", "list"]);
      assert.deepEqual(
        nodes.map((n) => n.name),
        ["node1"],
      );
    } finally {
      await foreign.stop();
    }
    await membersBecome([
      ["etcd1", true, true],
      ["etcd2", true, true],
      ["etcd3", true, true],
    ]);
  });
});

describe("single-member etcd", SUITE_TIMEOUT, () => {
  let cluster: TestCluster;
  before(async () => {
    cluster = await startCluster(1, []);
  });
  after(async () => {
    await cluster?.stop();
  });

  test("the member is called etcd; it can be killed and started; old cluster files still work", async () => {
    const [member] = await cluster.json<EtcdRow[]>(["etcd", "list"]);
    assert.equal(member?.name, "etcd");
    assert.equal(member.healthy, true);

    // A cluster file from before multi-member etcd (and before TLS): its one member had no name or host.
    const current = await requireClusterFile(cluster.stateDir);
    const { clientPort, peerPort, dataDir } = current.etcd.local!.members[0]!;
    const legacy = clusterFileSchema.parse({
      ...current,
      etcd: { ...current.etcd, local: { dataDir, clientPort, peerPort } },
    });
    assert.deepEqual(legacy.etcd.local?.members, [
      { name: "etcd", host: "127.0.0.1", clientPort, peerPort, dataDir, tls: false },
    ]);

    const kill = await cluster.json<{ pid: number; quorum: boolean }>(["etcd", "kill", "etcd"]);
    assert.equal(kill.pid, member.pid);
    assert.equal(kill.quorum, false);
    const up = await cluster.haven(["cluster", "up"]);
    assert.equal(up.code, 0, up.stderr);
    assert.match(up.stderr, /starting etcd on/);
    const [back] = await cluster.json<EtcdRow[]>(["etcd", "list"]);
    assert.equal(back?.healthy, true);
    assert.notEqual(back.pid, member.pid);
    await refused(cluster, ["etcd", "kill", "etcd1"], 3, /etcd1 does not exist \(members: etcd\)/);
  });
});
