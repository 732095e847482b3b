// The guide's layout on a local cluster: two disk servers (storage+monitor), a VM server that is also the third
// monitor (compute+monitor) and a VM server (compute). OSDs run only on storage nodes, monitors and etcd voters
// only on monitor nodes, guests only on compute nodes — also when they are recovered or migrated.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { NodeView } from "../../src/api/service.js";
import type { CephStatus } from "../../src/adapters/ceph/status.js";
import type { HavenEvent, VmView } from "../../src/core/model.js";
import { findDoubleRuns } from "../../src/core/history-check.js";
import type { ClusterFile } from "../../src/setup/cluster-file.js";
import { eventually, SUITE_TIMEOUT, TestCluster } from "./harness.js";

const GUIDE = "storage+monitor,storage+monitor,compute+monitor,compute";
const COMPUTE = ["node3", "node4"];

describe("node roles: the guide's layout", SUITE_TIMEOUT, () => {
  let cluster: TestCluster;
  let file: ClusterFile;
  const show = (vm: string) => cluster.json<VmView>(["vm", "show", vm]);
  const ok = (args: string[]) => cluster.ok(args);
  const acking = (vm: string, floor = 0, notOn?: string) =>
    eventually(`${vm} acking past ${floor}${notOn ? ` off ${notOn}` : ""}`, async () => {
      const view = await show(vm);
      return view.state === "running" && view.node !== notOn && (view.lastAck ?? 0) > floor
        ? view
        : undefined;
    });

  before(async () => {
    cluster = await TestCluster.start({
      nodes: 4,
      storage: "rbd",
      extraArgs: ["--roles", GUIDE, "--etcd-members", "3"],
    });
    file = JSON.parse(await readFile(join(cluster.stateDir, "cluster.json"), "utf8")) as ClusterFile;
  });
  after(async () => {
    await cluster?.stop();
  });

  test("node list shows the roles; OSDs on storage nodes, monitors and etcd voters on monitor nodes", async () => {
    const nodes = await cluster.json<NodeView[]>(["node", "list"]);
    assert.deepEqual(
      nodes.map((n) => `${n.name}=${n.roles.join("+")}`),
      ["node1=storage+monitor", "node2=storage+monitor", "node3=compute+monitor", "node4=compute"],
    );
    const text = (await ok(["node", "list"])).stdout;
    assert.match(text, /node4\s+online\s+compute\s/);

    const status = await cluster.json<CephStatus>(["ceph", "status"]);
    assert.equal(status.health, "HEALTH_OK");
    assert.deepEqual([...status.mons.inQuorum].sort(), ["node1", "node2", "node3"]);
    assert.equal(status.osds.up, 2);
    const storage = file.storage.type === "rbd" ? file.storage : assert.fail("rbd storage");
    const metadata = JSON.parse(
      execFileSync(
        "ceph",
        ["--conf", storage.conf, "--keyring", storage.adminKeyring, "osd", "metadata", "--format", "json"],
        { encoding: "utf8" },
      ),
    ) as Array<{ id: number; front_addr: string }>;
    const osdHosts = metadata.map((osd) => /v2:([\d.]+):/.exec(osd.front_addr)?.[1]).sort();
    const address = (...names: string[]) =>
      names.map((name) => file.hosts!.hosts.find((host) => host.name === name)!.address);
    assert.deepEqual(osdHosts, address("node1", "node2"), "one OSD on each storage node's host");
    assert.deepEqual(
      file.etcd.local!.members.map((m) => m.host),
      address("node1", "node2", "node3"),
      "etcd voters on the monitor nodes' hosts",
    );
  });

  test('the guide\'s commands work verbatim after eval "$(haven env)"', async () => {
    const env = (await ok(["env"])).stdout;
    assert.match(env, /^export HAVEN_STATE_DIR='.*'$/m);
    const script = [
      env,
      "ceph status",
      "rbd create guest1 --size 1024 --pool rbd",
      "qemu-img info -f rbd rbd:rbd/guest1",
      "rbd rm guest1 --pool rbd --no-progress",
      "etcdctl endpoint health 2>&1",
      `etcdctl get --prefix --keys-only ${file.prefix}nodes/`,
    ].join("\n");
    const output = execFileSync("sh", ["-euc", script], {
      encoding: "utf8",
      env: { PATH: process.env.PATH },
    });
    assert.match(output, /health: HEALTH_OK/);
    assert.match(output, /virtual size: 1 GiB/);
    assert.equal(
      output.match(/ is healthy: successfully committed proposal/g)?.length,
      3,
      "three etcd members over TLS",
    );
    assert.match(output, /nodes\/node4$/m);
  });

  test("guests run only on compute nodes, are recovered on one, and cannot be migrated to a disk server", async () => {
    for (const vm of ["g1", "g2", "g3"]) await ok(["vm", "create", vm, "--canary", "--start"]);
    const placed = await Promise.all(["g1", "g2", "g3"].map((vm) => acking(vm)));
    for (const view of placed) assert.ok(COMPUTE.includes(view.node!), `${view.name} runs on ${view.node}`);

    const g1 = placed[0]!;
    const refused = await cluster.haven(["vm", "migrate", "g1", "--to", "node1"]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /node node1 is not a compute node \(roles storage\+monitor\)/);

    const victim = g1.node!;
    const survivor = COMPUTE.find((node) => node !== victim)!;
    const killedAt = Date.now();
    await ok(["node", "kill", victim]);
    const moved = await Promise.all(
      placed.filter((view) => view.node === victim).map((view) => acking(view.name, view.lastAck!, victim)),
    );
    for (const view of moved)
      assert.equal(view.node, survivor, `${view.name} recovered on the other compute node`);
    const events = await cluster.json<HavenEvent[]>(["events", "--limit", "1000"]);
    const recoveries = events.filter((e) => e.type === "recovered" && Date.parse(e.time) >= killedAt);
    assert.equal(recoveries.length, moved.length);
    assert.deepEqual(findDoubleRuns(events), []);
    await ok(["cluster", "up"]);
  });

  test("bad --roles: one clear line, a non-zero exit and no cluster", async () => {
    const cases: Array<[string[], RegExp]> = [
      [["--roles", "compute+osd"], /unknown role "osd"/],
      [["--roles", "storage+monitor,storage+monitor"], /no node has the compute role/],
      [["--roles", "compute,compute", "--storage", "rbd"], /Ceph needs a node with the monitor role/],
      [["--nodes", "3", "--roles", "compute"], /--roles lists 1 nodes but --nodes is 3/],
      [
        ["--roles", "compute+monitor,compute", "--etcd-members", "3", "--storage", "dir"],
        /3 etcd members need 3/,
      ],
    ];
    for (const [args, message] of cases) {
      const stateDir = await mkdtemp(join(tmpdir(), "haven-roles-"));
      const result = await cluster.haven([
        "--state-dir",
        stateDir,
        "cluster",
        "up",
        "--accel",
        "tcg",
        ...args,
      ]);
      assert.notEqual(result.code, 0, args.join(" "));
      assert.match(result.stderr, message);
      assert.equal(result.stderr.trim().split("\n").length, 1, `one line: ${result.stderr}`);
      assert.ok(!existsSync(join(stateDir, "cluster.json")), "no cluster file");
      await rm(stateDir, { recursive: true, force: true });
    }
  });
});
