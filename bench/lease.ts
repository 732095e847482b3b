// bench:lease — how close an etcd leader's death brings a node to self-fencing. Three etcd members on
// loopback and one node lease kept alive by the shipped NodeLease (5 s TTL, 1.5 s margin, as havend runs
// it); the leader is SIGKILLed BENCH_KILLS times (default 10) and restarted between kills. For each death it
// reports how old the node's last answered keep-alive got: the node self-fences when that reaches
// TTL − margin (3.5 s), so the difference is the headroom an election leaves.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ClusterStore } from "../src/adapters/etcd/cluster-store.js";
import { GatewayEtcdClient } from "../src/adapters/etcd/gateway-client.js";
import { NodeLease } from "../src/agent/node-lease.js";
import { DEFAULT_SELF_FENCE_MARGIN_MS } from "../src/core/self-fence.js";
import { sleep } from "../src/lib/async.js";
import { systemClock } from "../src/lib/clock.js";
import { silentLogger } from "../src/lib/log.js";
import { freePort, startLocalEtcd, waitEtcdHealthy, type LocalEtcd } from "../src/setup/etcd.js";

const KILLS = Number(process.env.BENCH_KILLS ?? 10);
const TTL_SECONDS = 5;
const FENCE_AT_MS = TTL_SECONDS * 1000 - DEFAULT_SELF_FENCE_MARGIN_MS;
/** How long each death is watched: past any election and a TTL. */
const WATCH_MS = 8000;

interface Member {
  name: string;
  dataDir: string;
  logFile: string;
  clientPort: number;
  peerPort: number;
  process?: LocalEtcd;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "haven-bench-lease-"));
  const members: Member[] = [];
  for (const name of ["etcd1", "etcd2", "etcd3"])
    members.push({
      name,
      dataDir: join(dir, name),
      logFile: join(dir, `${name}.log`),
      clientPort: await freePort(),
      peerPort: await freePort(),
    });
  const initialCluster = members.map((m) => `${m.name}=http://127.0.0.1:${m.peerPort}`).join(",");
  const start = async (m: Member, state: "new" | "existing") => {
    m.process = await startLocalEtcd({
      ...m,
      initialCluster,
      initialClusterToken: "haven-bench",
      initialClusterState: state,
      waitHealthy: false,
    });
  };
  const healthy = () =>
    waitEtcdHealthy(
      members.map((m) => ({
        name: m.name,
        endpoint: m.process!.endpoint,
        logFile: m.logFile,
        stillRunning: () => true,
      })),
    );
  const controller = new AbortController();
  let etcd: GatewayEtcdClient | undefined;
  try {
    for (const m of members) await start(m, "new");
    await healthy();
    etcd = new GatewayEtcdClient({ endpoints: members.map((m) => m.process!.endpoint) });
    const lease = new NodeLease(
      new ClusterStore(etcd, "/bench/", systemClock),
      {
        name: "n1",
        api: "http://127.0.0.1:1",
        capacity: { memoryMb: 1024, vcpus: 1 },
        attributes: {},
        accel: "tcg",
        accelReason: "bench",
        storage: { ok: true, summary: "HEALTH_OK" },
        startedAt: new Date().toISOString(),
        version: "bench",
      },
      TTL_SECONDS,
      { read: () => Promise.resolve(""), write: () => Promise.resolve() },
      systemClock,
      silentLogger,
    );
    await lease.register();
    void lease.keepAlive(
      controller.signal,
      () => Promise.resolve(),
      () => undefined,
    );

    const oldest: number[] = [];
    for (let kill = 1; kill <= KILLS; kill++) {
      await sleep(3000);
      const leader = await findLeader(members);
      process.kill(leader.process!.pid, "SIGKILL");
      let worst = 0;
      for (const until = Date.now() + WATCH_MS; Date.now() < until; await sleep(20))
        worst = Math.max(worst, Date.now() - lease.lastRenewSentAt);
      oldest.push(worst);
      console.log(`kill ${kill}: leader ${leader.name}; last answered keep-alive at most ${worst} ms old`);
      await start(leader, "existing");
      await healthy();
    }
    const sorted = [...oldest].sort((a, b) => a - b);
    const fenced = oldest.filter((ms) => ms >= FENCE_AT_MS).length;
    console.log(
      `\netcd leader deaths: ${KILLS}; oldest answered keep-alive median ${sorted[Math.floor(KILLS / 2)]} ms, ` +
        `worst ${sorted[KILLS - 1]} ms; self-fence at ${FENCE_AT_MS} ms; deaths that would self-fence: ${fenced}`,
    );
  } finally {
    controller.abort();
    etcd?.close();
    for (const m of members) if (m.process) process.kill(m.process.pid, "SIGKILL");
    await sleep(200);
    await rm(dir, { recursive: true, force: true });
  }
}

/** The member the others follow, asked of each live member's status. */
async function findLeader(members: Member[]): Promise<Member> {
  for (const m of members) {
    const res = await fetch(`${m.process!.endpoint}/v3/maintenance/status`, { method: "POST", body: "{}" });
    const status = (await res.json()) as { header: { member_id: string }; leader: string };
    if (status.header.member_id === status.leader) return m;
  }
  throw new Error("no etcd member says it leads");
}

await main();
