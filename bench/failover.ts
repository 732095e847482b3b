// bench:failover — kill the node that runs the canary, N times (default 10, BENCH_KILLS), on a local 3-node
// cluster on Ceph with default settings, and break each failover into phases:
//   detection  kill → controller's node-lost event (the lease TTL dominates)
//   fencing    node-lost → fenced (blocklisting the guest's RBD clients)
//   placement  fenced → recovered (the new placement written)
//   qemu start recovered → the new node's started event
//   first ack  started → first `ack` line in the new node's serial log
// and what a network client sees: the canary has a card on the lab network and answers with its last ack;
//   client outage  the longest silence a client asking every 20 ms saw, from the kill to the first answer
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { findDoubleRuns } from "../src/core/history-check.js";
import type { HavenEvent, VmView } from "../src/core/model.js";
import { labNetworkFor } from "../src/setup/local-network.js";
import { eventually, TestCluster } from "../test/integration/harness.js";
import { NetProbe } from "../test/integration/net-probe.js";

const KILLS = Number(process.env.BENCH_KILLS ?? 10);
const PHASES = [
  "detection",
  "fencing",
  "placement",
  "qemu start",
  "first ack",
  "total",
  "client outage",
] as const;
type Phase = (typeof PHASES)[number];

async function oneFailover(cluster: TestCluster, probe: NetProbe): Promise<Record<Phase, number>> {
  const before = await eventually("canary acking", async () => {
    const view = await cluster.json<VmView>(["vm", "show", "canary"]);
    return view.state === "running" && (view.lastAck ?? 0) > 0 ? view : undefined;
  });
  const nodeDir = (node: string) => join(cluster.stateDir, "nodes", node);
  const havend = Number(await readFile(join(nodeDir(before.node!), "havend.pid"), "utf8"));
  // Each node's canary console log as it is now. A QEMU that starts puts the log of its predecessor aside
  // (serial.log.1) and begins a new file: the new guest's output is that new file, or what comes after the
  // end of this one while it has not been replaced yet.
  const logOf = (node: string) => join(nodeDir(node), "guests", "canary", "serial.log");
  const logNow = (node: string) => stat(logOf(node)).catch(() => undefined);
  const nodes = ["node1", "node2", "node3"];
  const logsBefore = new Map(
    await Promise.all(nodes.map(async (node) => [node, await logNow(node)] as const)),
  );
  const killedAt = Date.now();
  process.kill(havend, "SIGKILL");
  process.kill(before.pid!, "SIGKILL");

  const after = await eventually(
    "recovery",
    async () => {
      const view = await cluster.json<VmView>(["vm", "show", "canary"]);
      return view.node && view.node !== before.node && view.state === "running" ? view : undefined;
    },
    120_000,
  );
  const firstAckAt = await eventually(
    "first ack on the new node",
    async () => {
      const [was, now] = [logsBefore.get(after.node!), await logNow(after.node!)];
      const from = was && now?.ino === was.ino ? was.size : 0;
      const text = (await readFile(logOf(after.node!)).catch(() => Buffer.alloc(0))).subarray(from);
      return /ack \d+/.test(text.toString("latin1")) ? Date.now() : undefined;
    },
    60_000,
  );
  const answer = await probe.answerAfter(firstAckAt, "an answer over the network from the new node");
  const events = await cluster.json<HavenEvent[]>(["events", "--limit", "200"]);
  const at = (type: string, node?: string) => {
    const event = events.filter((e) => e.type === type && (!node || e.node === node)).at(-1);
    if (!event) throw new Error(`no ${type} event`);
    return Date.parse(event.time);
  };
  const lost = at("node-lost", before.node!);
  const fenced = at("fenced");
  const recovered = at("recovered");
  const started = at("started", after.node!);
  // Bring the killed node back for the next round.
  const up = await cluster.haven(["cluster", "up"]);
  if (up.code !== 0) throw new Error(`cluster up failed: ${up.stderr}`);
  await eventually("3 nodes online", async () => {
    const nodes = await cluster.json<unknown[]>(["node", "list"]);
    return nodes.length === 3 ? true : undefined;
  });
  return {
    detection: lost - killedAt,
    fencing: fenced - lost,
    placement: recovered - fenced,
    "qemu start": started - recovered,
    "first ack": firstAckAt - started,
    total: firstAckAt - killedAt,
    "client outage": probe.outage(killedAt, answer.at),
  };
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

async function main(): Promise<void> {
  process.stderr.write(
    `bench:failover: ${KILLS} node kills on a local 3-node cluster on Ceph (lease TTL 5 s)…\n`,
  );
  const cluster = await TestCluster.start({ nodes: 3, storage: "rbd" });
  let probe: NetProbe | undefined;
  try {
    const { bridge } = labNetworkFor(cluster.stateDir);
    const created = await cluster.haven([
      "vm",
      "create",
      "canary",
      "--canary",
      "--nic",
      `bridge=${bridge}`,
      "--start",
    ]);
    if (created.code !== 0) throw new Error(created.stderr);
    probe = (await NetProbe.startOn(cluster, "canary")).probe;
    const runs: Array<Record<Phase, number>> = [];
    for (let i = 1; i <= KILLS; i++) {
      const run = await oneFailover(cluster, probe);
      runs.push(run);
      process.stderr.write(
        `kill ${i}/${KILLS}: guest acking again after ${(run.total / 1000).toFixed(1)} s\n`,
      );
    }
    const verify = await cluster.json<{ gaps: unknown[]; corrupt: unknown[]; forks: unknown[] }>([
      "canary",
      "verify",
      "canary",
    ]);
    console.log(`\nfailover phases over ${KILLS} node kills (ms)`);
    console.log(`${"phase".padEnd(12)}${"median".padStart(10)}${"worst".padStart(10)}`);
    for (const phase of PHASES) {
      const values = runs.map((run) => run[phase]);
      console.log(
        `${phase.padEnd(12)}${median(values).toFixed(0).padStart(10)}${Math.max(...values)
          .toFixed(0)
          .padStart(10)}`,
      );
    }
    const clean = verify.gaps.length + verify.corrupt.length + verify.forks.length === 0;
    console.log(
      `canary disk after all failovers: ${clean ? "clean (no gap, no corrupt record, no fork)" : "PROBLEMS"}`,
    );
    const doubles = findDoubleRuns(await cluster.json<HavenEvent[]>(["events", "--limit", "10000"]));
    console.log(
      `event history: ${doubles.length === 0 ? "the guest never ran on two nodes at once" : JSON.stringify(doubles)}`,
    );
    if (!clean || doubles.length > 0) process.exitCode = 1;
  } finally {
    probe?.stop();
    await cluster.stop();
  }
}

await main();
