// The real client against a real etcd (started here on loopback, removed afterwards): the same semantics
// the fake promises, plus endpoint failover and the gateway's streaming watch.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { campaign, leader, resign } from "../../src/adapters/etcd/election.js";
import { GatewayEtcdClient, JsonLineSplitter } from "../../src/adapters/etcd/gateway-client.js";
import { runInformer } from "../../src/adapters/etcd/informer.js";
import { freePort, startLocalEtcd, type LocalEtcd } from "../../src/setup/etcd.js";
import { createClusterCa, issueNodeCredentials, readTlsIdentity } from "../../src/setup/pki.js";
import {
  CompactedError,
  EtcdUnavailableError,
  LeaseNotFoundError,
  type WatchEvent,
} from "../../src/adapters/etcd/port.js";
import { SUITE_TIMEOUT } from "./harness.js";

const TEST_TIMEOUT = { timeout: 60_000 };

/** Collects watch events as "put k=v@rev" / "delete k@rev" strings. */
function recorder() {
  const seen: string[] = [];
  const onEvents = (events: WatchEvent[]) => {
    for (const e of events) {
      seen.push(
        e.type === "put"
          ? `put ${e.kv.key}=${e.kv.value}@${e.kv.modRevision}`
          : `delete ${e.kv.key}@${e.kv.modRevision}`,
      );
    }
  };
  return { seen, onEvents };
}

async function eventually(condition: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A single-member etcd for the tests of one describe block: started before them, removed after them. */
function singleMember(): { dir: string; etcd: LocalEtcd; client: GatewayEtcdClient } {
  const member = {} as { dir: string; etcd: LocalEtcd; client: GatewayEtcdClient };
  before(async () => {
    member.dir = await mkdtemp(join(tmpdir(), "haven-test-"));
    member.etcd = await startLocalEtcd({
      dataDir: join(member.dir, "etcd"),
      clientPort: await freePort(),
      peerPort: await freePort(),
      logFile: join(member.dir, "etcd.log"),
    });
    member.client = new GatewayEtcdClient({ endpoints: [member.etcd.endpoint] });
  });
  after(async () => {
    member.client?.close();
    await member.etcd?.stop();
    if (member.dir) await rm(member.dir, { recursive: true, force: true });
  });
  return member;
}

void describe("GatewayEtcdClient against etcd 3.4", SUITE_TIMEOUT, () => {
  const member = singleMember();
  let etcd: LocalEtcd | undefined;
  let client: GatewayEtcdClient;
  before(() => ({ etcd, client } = member));

  void it("gets, puts, lists and deletes keys", TEST_TIMEOUT, async () => {
    const r1 = await client.put("kv/a", "α value");
    const r2 = await client.put("kv/a", "second");
    await client.put("kv/b", "b");
    await client.put("kv0", "outside the prefix");
    assert.equal(r2, r1 + 1);
    const a = await client.get("kv/a");
    assert.deepEqual(a, {
      key: "kv/a",
      value: "second",
      createRevision: r1,
      modRevision: r2,
      version: 2,
      lease: "0",
    });
    assert.equal(await client.get("kv/missing"), undefined);
    const { kvs, revision } = await client.list("kv/");
    assert.deepEqual(
      kvs.map((kv) => kv.key),
      ["kv/a", "kv/b"],
    );
    assert.ok(revision >= r2 + 2);
    assert.equal(await client.delete("kv/nothing"), 0);
    assert.equal(await client.delete("kv/", { prefix: true }), 2);
    assert.equal((await client.list("kv/")).kvs.length, 0);
    assert.equal((await client.get("kv0"))?.value, "outside the prefix");
  });

  void it("fails over to the next endpoint and names them all when none answers", TEST_TIMEOUT, async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const failover = new GatewayEtcdClient({ endpoints: [dead, etcd?.endpoint ?? ""] });
    await failover.put("failover/k", "v");
    assert.equal((await failover.get("failover/k"))?.value, "v");
    failover.close();
    const none = new GatewayEtcdClient({ endpoints: [dead], requestTimeoutMs: 500 });
    await assert.rejects(none.get("k"), (err) => {
      assert.ok(err instanceof EtcdUnavailableError);
      assert.match(err.message, new RegExp(dead.replace(/[.:/]/g, "\\$&")));
      return true;
    });
    await assert.rejects(none.put("k", "v"), EtcdUnavailableError);
  });

  void it("runs the success or the failure branch of a txn", TEST_TIMEOUT, async () => {
    const createIfAbsent = (value: string) =>
      client.txn(
        [{ key: "txn/k", target: "create", result: "equal", value: 0 }],
        [{ type: "put", key: "txn/k", value }],
        [
          { type: "get", key: "txn/k" },
          { type: "delete", key: "txn/other" },
        ],
      );
    const first = await createIfAbsent("one");
    assert.equal(first.succeeded, true);
    assert.deepEqual(first.responses, [[]]);
    const second = await createIfAbsent("two");
    assert.equal(second.succeeded, false);
    assert.equal(second.responses.length, 2);
    assert.equal(second.responses[0]?.[0]?.value, "one");

    const kv = await client.get("txn/k");
    const cas = await client.txn(
      [
        { key: "txn/k", target: "mod", result: "equal", value: kv?.modRevision ?? 0 },
        { key: "txn/k", target: "value", result: "equal", value: "one" },
        { key: "txn/k", target: "lease", result: "equal", value: "0" },
        { key: "txn/k", target: "version", result: "less", value: 2 },
      ],
      [
        { type: "put", key: "txn/k", value: "three" },
        { type: "get", key: "txn/", prefix: true },
      ],
    );
    assert.equal(cas.succeeded, true);
    assert.equal(cas.responses[1]?.[0]?.value, "three");
    const missingValue = await client.txn(
      [{ key: "txn/none", target: "value", result: "equal", value: "" }],
      [],
    );
    assert.equal(missingValue.succeeded, false, "etcd fails value compares on missing keys");
  });

  void it("grants, keeps alive and revokes leases; revoking removes the keys", TEST_TIMEOUT, async () => {
    const lease = await client.grantLease(30);
    assert.match(lease, /^\d+$/);
    await client.put("lease/k", "v", { lease });
    assert.equal((await client.get("lease/k"))?.lease, lease);
    assert.equal(await client.keepAlive(lease), 30);
    await client.revokeLease(lease);
    assert.equal(await client.get("lease/k"), undefined);
    assert.equal(await client.keepAlive(lease), 0);
    await client.revokeLease(lease); // idempotent
    await assert.rejects(client.put("lease/k", "v", { lease }), LeaseNotFoundError);
    await assert.rejects(
      client.txn([], [{ type: "put", key: "lease/k", value: "v", lease }]),
      LeaseNotFoundError,
    );
  });

  void it("watches puts and deletes in order from a given revision", TEST_TIMEOUT, async () => {
    const start = await client.put("watch/a", "1");
    await client.put("watch-not/x", "not under the prefix");
    await client.txn(
      [],
      [
        { type: "put", key: "watch/b", value: "2" },
        { type: "delete", key: "watch/a" },
      ],
    );
    const stop = new AbortController();
    const { seen, onEvents } = recorder();
    const watching = client.watch("watch/", start, { onEvents }, stop.signal);
    await eventually(() => seen.length === 3, "history");
    const live = await client.put("watch/c", "3");
    await eventually(() => seen.length === 4, "live event");
    assert.deepEqual(seen, [
      `put watch/a=1@${start}`,
      `put watch/b=2@${start + 2}`,
      `delete watch/a@${start + 2}`,
      `put watch/c=3@${live}`,
    ]);
    stop.abort();
    await watching;
  });

  void it("rejects a watch from a compacted revision with CompactedError", TEST_TIMEOUT, async () => {
    const old = await client.put("compact/k", "1");
    const latest = await client.put("compact/k", "2");
    const res = await fetch(`${etcd?.endpoint}/v3/kv/compaction`, {
      method: "POST",
      body: JSON.stringify({ revision: String(latest), physical: true }),
    });
    assert.equal(res.status, 200);
    await assert.rejects(
      client.watch("compact/", old, { onEvents: () => undefined }, AbortSignal.timeout(5000)),
      (err) => {
        assert.ok(err instanceof CompactedError);
        assert.equal(err.compactRevision, latest);
        return true;
      },
    );
  });

  void it("informs about a snapshot and then the changes", TEST_TIMEOUT, async () => {
    await client.put("inf/a", "1");
    const snapshots: string[][] = [];
    const { seen, onEvents } = recorder();
    const stop = new AbortController();
    const running = runInformer(
      client,
      "inf/",
      { onSnapshot: (kvs) => snapshots.push(kvs.map((kv) => `${kv.key}=${kv.value}`)), onEvents },
      stop.signal,
    );
    await eventually(() => snapshots.length === 1, "snapshot");
    assert.deepEqual(snapshots, [["inf/a=1"]]);
    const rev = await client.put("inf/b", "2");
    await client.delete("inf/a");
    await eventually(() => seen.length === 2, "events");
    assert.deepEqual(seen, [`put inf/b=2@${rev}`, `delete inf/a@${rev + 1}`]);
    stop.abort();
    await running;
  });

  void it("elects one leader; the other candidate takes over after resign", TEST_TIMEOUT, async () => {
    const [l1, l2] = [await client.grantLease(30), await client.grantLease(30)];
    const stop = new AbortController();
    await campaign(client, "election/leader", "n1", l1, stop.signal);
    let n2Leads = false;
    // On a clock whose poll interval never passes, only the watch can wake n2 once n1 resigns.
    const stoppedClock = {
      now: () => Date.now(),
      sleep: (_ms: number, signal?: AbortSignal) =>
        new Promise<void>((resolve) => signal?.addEventListener("abort", () => resolve(), { once: true })),
    };
    const n2 = campaign(client, "election/leader", "n2", l2, stop.signal, stoppedClock).then(
      () => (n2Leads = true),
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(n2Leads, false);
    assert.equal(await leader(client, "election/leader"), "n1");
    assert.equal(await resign(client, "election/leader", l2), false);
    assert.equal(await resign(client, "election/leader", l1), true);
    await n2;
    assert.equal(await leader(client, "election/leader"), "n2");
    await Promise.all([client.revokeLease(l1), client.revokeLease(l2)]);
    assert.equal(await leader(client, "election/leader"), undefined);
    stop.abort();
  });
});

void describe("JsonLineSplitter", () => {
  void it("reassembles objects split across chunks and splits chunks holding several", () => {
    const splitter = new JsonLineSplitter();
    const bytes = new TextEncoder().encode('{"a":1}\n{"b":"é"}\n\n{"c":3}\n');
    const out: unknown[] = [];
    // é is two bytes in UTF-8: chunk boundaries at every byte also split characters.
    for (let i = 0; i < bytes.length; i++) out.push(...splitter.push(bytes.subarray(i, i + 1)));
    assert.deepEqual(out, [{ a: 1 }, { b: "é" }, { c: 3 }]);
    assert.deepEqual(splitter.push(new TextEncoder().encode('{"d":4}\n{"e":5}\n{"f"')), [{ d: 4 }, { e: 5 }]);
    assert.deepEqual(splitter.push(new TextEncoder().encode(":6}\n")), [{ f: 6 }]);
  });
});

void describe("etcd's membership through GatewayEtcdClient", SUITE_TIMEOUT, () => {
  const member = singleMember();
  const client = () => member.client;

  void it(
    "grows etcd: a learner is added, starts, is promoted once in sync; clients follow the member list",
    TEST_TIMEOUT,
    async () => {
      const peerPort = await freePort();
      const peerUrl = `http://127.0.0.1:${peerPort}`;
      const learner = await client().addLearner([peerUrl]);
      assert.equal(learner.learner, true);
      const before = await client().members();
      assert.deepEqual(
        before.map((m) => m.learner).sort(),
        [false, true],
        "one voter and the learner, not started yet",
      );
      const first = before.find((m) => !m.learner)!;
      const second = await startLocalEtcd({
        name: "second",
        dataDir: join(member.dir, "second"),
        clientPort: await freePort(),
        peerPort,
        logFile: join(member.dir, "second.log"),
        initialCluster: `${first.name}=${first.peerUrls[0]},second=${peerUrl}`,
        initialClusterState: "existing",
        waitHealthy: false,
      });
      try {
        // etcd refuses to promote a learner that has not caught up with the leader: retried until it has.
        const deadline = Date.now() + 30_000;
        for (;;) {
          const refused = await client()
            .promote(learner.id)
            .then(
              () => undefined,
              (err: Error) => err,
            );
          if (!refused) break;
          assert.match(refused.message, /in sync|learner/);
          if (Date.now() > deadline) assert.fail(`not promoted: ${refused.message}`);
          await new Promise((resolve) => setTimeout(resolve, 500));
        }
        const after = await client().members();
        assert.deepEqual(after.map((m) => [m.name, m.learner]).sort(), [
          [first.name, false],
          ["second", false],
        ]);
        // Each client knew one member: it learns the other, after those it knew.
        await client().syncEndpoints();
        assert.deepEqual(client().knownEndpoints, [member.etcd.endpoint, second.endpoint]);
        const follower = new GatewayEtcdClient({ endpoints: [second.endpoint] });
        try {
          await follower.syncEndpoints();
          assert.deepEqual(follower.knownEndpoints, [second.endpoint, member.etcd.endpoint]);
          await follower.put("grown/k", "v");
          assert.equal((await client().get("grown/k"))?.value, "v");
        } finally {
          follower.close();
        }
      } finally {
        await second.stop();
      }
    },
  );
});

void describe("GatewayEtcdClient against etcd with TLS", SUITE_TIMEOUT, () => {
  let dir = "";
  let etcd: LocalEtcd | undefined;
  let node: { dir: string };
  let stranger: { dir: string };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "haven-test-"));
    const ca = await createClusterCa(join(dir, "ca"), "test");
    const otherCa = await createClusterCa(join(dir, "other-ca"), "other");
    const member = await issueNodeCredentials(ca.dir, "etcd", ["127.0.0.1"], join(dir, "member"));
    node = await issueNodeCredentials(ca.dir, "node1", ["127.0.10.1"], join(dir, "node1"));
    stranger = await issueNodeCredentials(otherCa.dir, "node1", ["127.0.10.1"], join(dir, "stranger"));
    etcd = await startLocalEtcd({
      dataDir: join(dir, "etcd"),
      clientPort: await freePort(),
      peerPort: await freePort(),
      logFile: join(dir, "etcd.log"),
      tlsDir: member.dir,
    });
  });

  after(async () => {
    await etcd?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  void it(
    "serves a client with a certificate from the cluster CA, reads, writes and watches",
    TEST_TIMEOUT,
    async () => {
      assert.match(etcd!.endpoint, /^https:\/\//);
      const client = new GatewayEtcdClient({
        endpoints: [etcd!.endpoint],
        tls: readTlsIdentity(node.dir, "client"),
      });
      try {
        const { seen, onEvents } = recorder();
        const watching = new AbortController();
        const watch = client.watch("tls/", 1, { onEvents }, watching.signal);
        await client.put("tls/a", "over TLS");
        assert.equal((await client.get("tls/a"))?.value, "over TLS");
        await eventually(() => seen.length === 1, "the watch event");
        watching.abort();
        await watch;
      } finally {
        client.close();
      }
    },
  );

  void it(
    "refuses a client without a certificate, with another CA's, or in clear",
    TEST_TIMEOUT,
    async () => {
      const ca = readTlsIdentity(node.dir, "client").ca;
      const clients = [
        new GatewayEtcdClient({ endpoints: [etcd!.endpoint], tls: { ca }, requestTimeoutMs: 2000 }),
        new GatewayEtcdClient({
          endpoints: [etcd!.endpoint],
          tls: { ...readTlsIdentity(stranger.dir, "client"), ca },
          requestTimeoutMs: 2000,
        }),
        new GatewayEtcdClient({
          endpoints: [etcd!.endpoint.replace(/^https:/, "http:")],
          requestTimeoutMs: 2000,
        }),
      ];
      for (const client of clients) {
        await assert.rejects(client.get("tls/a"), EtcdUnavailableError);
        client.close();
      }
    },
  );
});
