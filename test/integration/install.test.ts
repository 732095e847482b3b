// Installing on servers, as docs/install.md has it. A server (a host of the local cluster, made with `haven
// host add`) joins a running cluster with `haven node add` and `haven join`: it comes online with its roles, its own certificate from the cluster CA and its own Ceph
// user, takes a live-migrated canary over TLS, and the token cannot be used twice or by a server that was
// sent elsewhere; `haven node remove` moves its guests away, stops it and deletes its Ceph user. And a
// cluster made with `haven init` on one "server" (its own address and directories) takes a second one with
// `haven join`.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { NodeView } from "../../src/api/service.js";
import type { JoinTokenView, NodeRemovalView } from "../../src/api/join-service.js";
import type { CanaryReport } from "../../src/core/canary.js";
import { highestAckInLog } from "../../src/core/canary.js";
import { decodeJoinToken, encodeJoinToken } from "../../src/core/join.js";
import type { HavenEvent, VmView } from "../../src/core/model.js";
import { requireClusterFile } from "../../src/setup/cluster-file.js";
import { freePort } from "../../src/setup/etcd.js";
import { isAlive, processesMatching, terminate } from "../../src/lib/process.js";
import { run } from "../../src/lib/command.js";
import { inNamespace } from "../../src/lib/netns.js";
import type { LocalHost } from "../../src/setup/local-hosts.js";
import { PORTS } from "../../src/setup/ports.js";
import { eventually, REPO_ROOT, runHaven, SUITE_TIMEOUT, TestCluster } from "./harness.js";

describe("joining a server, a host of its own, to a running cluster", SUITE_TIMEOUT, () => {
  let cluster: TestCluster;
  /** The host node3 joins from. */
  let host: LocalHost;
  /** The token node3 joined with. */
  let usedToken = "";
  before(async () => {
    cluster = await TestCluster.start({ nodes: 2, storage: "rbd" });
    host = await cluster.json<LocalHost>(["host", "add", "node3"]);
  });
  after(async () => {
    await cluster?.stop();
  });

  const nodeDir = (node: string) => join(cluster.stateDir, "nodes", node);
  /** `haven join` run on node3's host, as an administrator runs it on the new server. */
  const joinOnHost = (token: string, dir: string, options: { timeoutMs?: number } = {}) =>
    cluster.haven(
      [
        ...["host", "exec", "node3", "--", process.execPath, join(REPO_ROOT, "bin", "haven.js")],
        ...["join", token, "--address", host.address],
        ...["--dir", dir, "--ceph-dir", join(dir, "ceph")],
        ...["--run", "process", "--accel", "tcg", "--roles", "compute"],
      ],
      options,
    );
  const show = (vm: string) => cluster.json<VmView>(["vm", "show", vm]);
  const highestAck = async (vm: string) => {
    const logs = ["node1", "node2", "node3"].map((node) =>
      readFile(join(nodeDir(node), "guests", vm, "serial.log"), "latin1").catch(() => ""),
    );
    return Math.max(...(await Promise.all(logs)).map(highestAckInLog));
  };
  const acking = (vm: string, floor: number, on?: string) =>
    eventually(`${vm} acking past ${floor}${on ? ` on ${on}` : ""}`, async () => {
      const view = await show(vm);
      const running = view.state === "running" && (on === undefined || view.node === on);
      return running && (await highestAck(vm)) > floor ? view : undefined;
    });

  test("node add + join: the node comes online with its roles, credentials and Ceph user, and runs a migrated canary", async () => {
    const issued = await cluster.json<JoinTokenView>(["node", "add", "node3", "--ttl", "10m"]);
    assert.equal(issued.node, "node3");
    usedToken = issued.token;
    const dir = nodeDir("node3");
    const joined = await joinOnHost(issued.token, dir, { timeoutMs: 240_000 });
    assert.equal(joined.code, 0, joined.stderr);
    assert.ok(
      joined.stdout.includes(`node3 joined the cluster; its API is https://${host.address}:${PORTS.api}`),
      joined.stdout,
    );

    const nodes = await cluster.json<NodeView[]>(["node", "list"]);
    const node3 = nodes.find((n) => n.name === "node3");
    assert.ok(node3, `node3 online: ${nodes.map((n) => n.name).join(", ")}`);
    assert.deepEqual(node3.roles, ["compute"]);
    assert.equal(node3.api, `https://${host.address}:${PORTS.api}`);
    assert.ok(node3.storage.ok, "node3 reaches Ceph with its own user");

    // Its key never left it; its certificate comes from the cluster CA and names its address.
    const file = await requireClusterFile(cluster.stateDir);
    const ca = new X509Certificate(await readFile(file.caFile!, "utf8"));
    const cert = new X509Certificate(await readFile(join(dir, "tls", "server-cert.pem"), "utf8"));
    assert.ok(cert.verify(ca.publicKey));
    assert.ok((cert.subjectAltName ?? "").includes(`IP Address:${host.address}`), cert.subjectAltName);
    for (const secret of ["tls/server-key.pem", "token", "ceph/ceph.client.admin.keyring", "havend.json"])
      assert.equal((await stat(join(dir, secret))).mode & 0o077, 0, `${secret} is private`);
    assert.match(
      await readFile(join(dir, "ceph", "ceph.client.haven-node3.keyring"), "utf8"),
      /client\.haven-node3/,
    );

    // A canary live-migrates onto the new node (TLS between node1 and node3) and keeps every write.
    await cluster.ok(["vm", "create", "canary", "--canary", "--start"]);
    await acking("canary", 0);
    await cluster.ok(["vm", "migrate", "canary", "--to", "node3"], { timeoutMs: 300_000 });
    await acking("canary", await highestAck("canary"), "node3");
    const acked = await highestAck("canary");
    const report = await cluster.json<CanaryReport>(["canary", "verify", "canary"]);
    assert.deepEqual([report.gaps, report.corrupt, report.forks], [[], [], []]);
    assert.ok(report.highestSeq >= acked, `every ack is on disk (${report.highestSeq} >= ${acked})`);

    const events = await cluster.json<HavenEvent[]>(["events", "--limit", "10000"]);
    assert.ok(events.some((e) => e.type === "node-joined" && e.node === "node3"));
  });

  test("a token works once, not for a name that is online, and not when its CA fingerprint is not the cluster's", async () => {
    const online = await cluster.haven(["node", "add", "node1"]);
    assert.notEqual(online.code, 0);
    assert.match(online.stderr, /node1 is online already/);

    const issued = await cluster.json<JoinTokenView>(["node", "add", "node5"]);
    const forged = encodeJoinToken({ ...decodeJoinToken(issued.token), ca: "0".repeat(64) });
    const elsewhere = join(cluster.stateDir, "elsewhere");
    const refused = await joinOnHost(forged, elsewhere);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /fingerprint .* is not the token's/);
    assert.ok(!existsSync(elsewhere), "a refused join writes nothing");

    const reused = await joinOnHost(usedToken, elsewhere);
    assert.notEqual(reused.code, 0);
    assert.match(reused.stderr, /unknown join token: it was used, replaced or expired/);
    const damaged = await joinOnHost(issued.token.slice(0, -6), elsewhere);
    assert.notEqual(damaged.code, 0);
    assert.match(damaged.stderr, /join token is damaged/);
    assert.ok(!existsSync(elsewhere), "a refused join writes nothing");
  });

  test("node remove: node3 moves the canary away and stops, its Ceph user is deleted, and it stays out", async () => {
    const before = (await show("canary")).node === "node3" ? await highestAck("canary") : assert.fail();
    const removed = await cluster.haven(["node", "remove", "node3", "--json"], { timeoutMs: 900_000 });
    assert.equal(removed.code, 0, removed.stderr);
    assert.deepEqual(JSON.parse(removed.stdout) as NodeRemovalView, {
      node: "node3",
      state: "removed",
      guests: [],
    });
    const moved = await acking("canary", before);
    assert.notEqual(moved.node, "node3");
    const nodes = await cluster.json<NodeView[]>(["node", "list"]);
    assert.deepEqual(nodes.map((n) => n.name).sort(), ["node1", "node2"]);
    assert.deepEqual(
      await processesMatching(`${nodeDir("node3")}/havend.json`),
      [],
      "node3's havend stopped",
    );

    const file = await requireClusterFile(cluster.stateDir);
    const storage = file.storage.type === "rbd" ? file.storage : assert.fail("rbd storage");
    const admin = ["--conf", storage.conf, "--keyring", storage.adminKeyring];
    await assert.rejects(run("ceph", [...admin, "auth", "get", "client.haven-node3"]), /ENOENT/);

    // Started again (a reboot, a service manager), its havend says why it stays out and exits with success.
    let said = "";
    const [ip, ...havend] = inNamespace(host.namespace, [
      process.execPath,
      join(REPO_ROOT, "bin", "havend.js"),
      ...["--config", join(nodeDir("node3"), "havend.json")],
    ]);
    await run(ip!, havend, { timeoutMs: 120_000, onStderr: (text) => void (said += text) });
    assert.match(said, /node node3 was removed from the cluster .* 'haven node add node3'/);
    assert.equal(
      (await cluster.json<NodeView[]>(["node", "list"])).some((n) => n.name === "node3"),
      false,
    );

    const acked = await highestAck("canary");
    const report = await cluster.json<CanaryReport>(["canary", "verify", "canary"]);
    assert.deepEqual([report.gaps, report.corrupt, report.forks], [[], [], []]);
    assert.ok(report.highestSeq >= acked, `every ack is on disk (${report.highestSeq} >= ${acked})`);
    const events = await cluster.json<HavenEvent[]>(["events", "--limit", "10000"]);
    for (const type of ["node-leaving", "node-removed"])
      assert.ok(
        events.some((e) => e.type === type && e.node === "node3"),
        type,
      );
  });
});

describe("haven init on a first server, haven join on a second", SUITE_TIMEOUT, () => {
  let root: string;
  const servers = [
    { name: "node1", address: "127.0.20.1" },
    { name: "node2", address: "127.0.20.2" },
    { name: "node3", address: "127.0.20.3" },
  ];
  /** Each server's CLI has its own state directory, as on two machines. */
  const cli = (server: number, args: string[], timeoutMs = 240_000) =>
    runHaven(["--state-dir", join(root, `cli${server}`), ...args], { timeoutMs });
  const ok = async (server: number, args: string[]) => {
    const result = await cli(server, args);
    assert.equal(result.code, 0, `haven ${args.join(" ")}: ${result.stderr}`);
    return result.stdout;
  };
  const json = async <T>(server: number, args: string[]) =>
    JSON.parse(await ok(server, [...args, "--json"])) as T;
  const serverFlags = async (i: number) => [
    ...["--address", servers[i]!.address, "--port", String(await freePort(servers[i]!.address))],
    ...["--dir", join(root, servers[i]!.name), "--run", "process", "--accel", "tcg"],
  ];

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "haven-install-"));
  });
  after(async () => {
    // Installed servers are stopped as their service manager would: every process of their directories.
    const left = await processesMatching(`${root}/`);
    await Promise.all(left.map(({ pid }) => terminate(pid, 5000)));
    await rm(root, { recursive: true, force: true });
  });

  test("init, node add, join: two more monitors grow etcd to three voters, the canary migrates and outlives the first server's etcd; removing the first server removes its member; local-cluster commands refuse", async () => {
    const etcdFlags = async (i: number) => {
      const ports = [await freePort(servers[i]!.address), await freePort(servers[i]!.address)];
      return ["--etcd-client-port", String(ports[0]), "--etcd-peer-port", String(ports[1])];
    };
    const init = await json<{ node: string; api: string }>(0, [
      "init",
      ...(await serverFlags(0)),
      "--dir-storage",
      ...(await etcdFlags(0)),
    ]);
    assert.equal(init.node, "node1");
    const joinMonitor = async (i: number) => {
      const issued = await json<JoinTokenView>(0, ["node", "add", servers[i]!.name]);
      const flags = [...(await serverFlags(i)), "--roles", "compute+monitor", ...(await etcdFlags(i))];
      const joined = await json<{ node: string }>(i, ["join", issued.token, ...flags]);
      assert.equal(joined.node, servers[i]!.name);
    };
    type EtcdRow = { name: string; endpoint: string; voter: boolean; healthy: boolean };
    const etcdMembers = async (server = 0) =>
      (await json<EtcdRow[]>(server, ["etcd", "list"]))
        .map((m) => `${m.name}:${m.voter ? "voter" : "learner"}`)
        .sort();

    // Two monitors would survive no more failures than one: the second joins as a learner.
    await joinMonitor(1);
    assert.deepEqual(await etcdMembers(), ["etcd-node1:voter", "etcd-node2:learner"]);
    // The third makes three voters: the learner is promoted, then the new member once it has caught up.
    await joinMonitor(2);
    assert.deepEqual(await etcdMembers(), ["etcd-node1:voter", "etcd-node2:voter", "etcd-node3:voter"]);
    const etcd = await json<EtcdRow[]>(0, ["etcd", "list"]);
    assert.ok(
      etcd.every((m) => m.healthy),
      JSON.stringify(etcd),
    );

    // The second server's CLI reaches the cluster through the file join wrote.
    const nodes = await json<NodeView[]>(1, ["node", "list"]);
    assert.deepEqual(
      nodes.map((n) => `${n.name}=${n.roles.join("+")}`),
      ["node1=compute+monitor", "node2=compute+monitor", "node3=compute+monitor"],
    );
    // node1 and node2 were configured with the voters there were when they started; they follow etcd's list.
    for (const server of ["node1", "node2"])
      await eventually(`${server}'s havend following three etcd voters`, async () => {
        const log = await readFile(join(root, server, "havend.log"), "utf8");
        const followed = log
          .split("\n")
          .filter((line) => line.includes("following etcd's voting members"))
          .at(-1);
        const endpoints = followed && (JSON.parse(followed) as { endpoints: string[] }).endpoints;
        return endpoints && endpoints.length === 3 ? endpoints : undefined;
      });

    await ok(0, ["vm", "create", "canary", "--canary", "--start"]);
    const serial = (node: string) => join(root, node, "guests", "canary", "serial.log");
    const highestAck = async () => {
      const logs = await Promise.all(servers.map((s) => readFile(serial(s.name), "latin1").catch(() => "")));
      return Math.max(...logs.map(highestAckInLog));
    };
    const acking = (floor: number, on?: string) =>
      eventually(`canary acking past ${floor}`, async () => {
        const view = JSON.parse(await ok(1, ["vm", "show", "canary", "--json"])) as VmView;
        const here = view.state === "running" && (on === undefined || view.node === on);
        return here && (await highestAck()) > floor ? view : undefined;
      });
    const first = await acking(0);
    const other = first.node === "node1" ? "node2" : "node1";
    await ok(1, ["vm", "migrate", "canary", "--to", other]);
    await acking(await highestAck(), other);

    // The first server's etcd member dies: the other two are a majority, every node renews its lease through
    // them, and the canary acks on from the same QEMU.
    const before = await acking(await highestAck(), other);
    const etcdPid = Number(await readFile(join(root, "node1", "etcd.pid"), "utf8"));
    process.kill(etcdPid, "SIGKILL");
    await eventually("etcd-node1 gone", () => Promise.resolve(isAlive(etcdPid) ? undefined : true));
    await new Promise((resolve) => setTimeout(resolve, 6000)); // past a lease TTL
    assert.equal((await json<NodeView[]>(1, ["node", "list"])).length, 3, "every node still online");
    const after = await acking(await highestAck(), other);
    assert.equal(after.pid, before.pid, "the same QEMU acks on");

    const acked = await highestAck();
    const report = await json<CanaryReport>(0, ["canary", "verify", "canary"]);
    assert.deepEqual([report.gaps, report.corrupt, report.forks], [[], [], []]);
    assert.ok(report.highestSeq >= acked, `every ack is on disk (${report.highestSeq} >= ${acked})`);
    await ok(0, ["vm", "stop", "canary"]);

    // The first server is taken out of service: it leaves, and its etcd member (dead since above) is removed,
    // so the two others are all the voters there are and a majority again without it.
    const removed = await cli(2, ["node", "remove", "node1", "--json"], 600_000);
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal((JSON.parse(removed.stdout) as NodeRemovalView).state, "removed");
    assert.deepEqual(await etcdMembers(2), ["etcd-node2:voter", "etcd-node3:voter"]);
    const events = await json<HavenEvent[]>(2, ["events", "--limit", "1000"]);
    assert.ok(
      events.some((e) => e.type === "etcd-member-removed" && e.node === "node1"),
      "the member's removal is an event",
    );
    assert.deepEqual(
      (await json<NodeView[]>(2, ["node", "list"])).map((n) => n.name),
      ["node2", "node3"],
    );

    for (const command of [
      ["cluster", "up"],
      ["cluster", "down"],
    ]) {
      const refused = await cli(0, command);
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /installed with haven init\/join/);
    }
    const again = await cli(0, ["init", ...(await serverFlags(0)), "--dir-storage"]);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /holds a node already/);
  });
});
