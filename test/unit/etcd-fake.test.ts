// The fake etcd must behave like etcd where Haven depends on it: revisions, compares, leases, watches,
// compaction; the informer and the election are exercised on top of it with a hand-driven clock.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { campaign, leader, resign } from "../../src/adapters/etcd/election.js";
import { FakeEtcd } from "../../src/adapters/etcd/fake.js";
import { runInformer } from "../../src/adapters/etcd/informer.js";
import {
  CompactedError,
  EtcdUnavailableError,
  LeaseNotFoundError,
  type KeyValue,
  type WatchEvent,
} from "../../src/adapters/etcd/port.js";

function setup() {
  let nowMs = 1_000_000;
  const etcd = new FakeEtcd({ now: () => nowMs });
  return { etcd, advance: (ms: number) => (nowMs += ms) };
}

/** Lets microtasks and timers of 0 ms run until `condition` holds. */
async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (condition()) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  assert.fail(`timed out waiting for ${what}`);
}

/** Lets every pending microtask and immediate run a few rounds. */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
}

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

void describe("FakeEtcd", () => {
  void it("keeps etcd's revisions per key and for the store", async () => {
    const { etcd } = setup();
    assert.equal(await etcd.put("a/1", "x"), 2); // etcd starts at revision 1
    assert.equal(await etcd.put("a/1", "y"), 3);
    assert.equal(await etcd.put("a/0", "z"), 4);
    await etcd.put("b", "other");
    assert.deepEqual(await etcd.get("a/1"), {
      key: "a/1",
      value: "y",
      createRevision: 2,
      modRevision: 3,
      version: 2,
      lease: "0",
    });
    const { kvs, revision } = await etcd.list("a/");
    assert.deepEqual(
      kvs.map((kv) => kv.key),
      ["a/0", "a/1"],
    );
    assert.equal(revision, 5);
    assert.equal(await etcd.delete("missing"), 0);
    assert.equal(etcd.revision, 5, "deleting nothing makes no revision");
    assert.equal(await etcd.delete("a/", { prefix: true }), 2);
    assert.equal(etcd.revision, 6, "one delete call is one revision");
    assert.equal(await etcd.get("a/1"), undefined);
    await etcd.put("a/1", "again");
    assert.equal((await etcd.get("a/1"))?.version, 1, "a re-created key starts a new life");
  });

  void it("evaluates txn compares like etcd, including on missing keys", async () => {
    const { etcd } = setup();
    const createIfAbsent = (value: string) =>
      etcd.txn(
        [{ key: "k", target: "create", result: "equal", value: 0 }],
        [{ type: "put", key: "k", value }],
        [{ type: "get", key: "k" }],
      );
    const first = await createIfAbsent("one");
    assert.equal(first.succeeded, true);
    assert.deepEqual(first.responses, [[]]);
    const second = await createIfAbsent("two");
    assert.equal(second.succeeded, false);
    assert.equal(second.responses[0]?.[0]?.value, "one");

    const missing = (target: "version" | "mod" | "lease" | "value", value: number | string) =>
      etcd.txn([{ key: "nope", target, result: "equal", value }], []);
    assert.equal((await missing("version", 0)).succeeded, true);
    assert.equal((await missing("mod", 0)).succeeded, true);
    assert.equal((await missing("lease", "0")).succeeded, true);
    assert.equal((await missing("value", "")).succeeded, false, "etcd fails value compares on missing keys");

    const mod = (await etcd.get("k"))?.modRevision ?? 0;
    const cas = await etcd.txn(
      [
        { key: "k", target: "mod", result: "equal", value: mod },
        { key: "k", target: "value", result: "less", value: "p" },
      ],
      [
        { type: "put", key: "k", value: "three" },
        { type: "get", key: "k" },
      ],
    );
    assert.equal(cas.succeeded, true);
    assert.equal(cas.responses[1]?.[0]?.value, "three", "a get sees the writes before it in the same txn");
    const stale = await etcd.txn(
      [{ key: "k", target: "mod", result: "equal", value: mod }],
      [{ type: "delete", key: "k" }],
    );
    assert.equal(stale.succeeded, false);
    await assert.rejects(
      etcd.txn(
        [],
        [
          { type: "put", key: "d", value: "1" },
          { type: "put", key: "d", value: "2" },
        ],
      ),
      /duplicate key/,
    );
  });

  void it("deletes the keys of an expired lease and reports them to watchers", async () => {
    const { etcd, advance } = setup();
    const lease = await etcd.grantLease(5);
    await etcd.put("nodes/n1", "up", { lease });
    await etcd.put("nodes/n2", "up");
    const stop = new AbortController();
    const { seen, onEvents } = recorder();
    const watching = etcd.watch("nodes/", etcd.revision + 1, { onEvents }, stop.signal);

    advance(4000);
    assert.equal(await etcd.keepAlive(lease), 5);
    advance(4000);
    assert.deepEqual(etcd.expireLeases(), [], "the keep-alive extended the lease");
    advance(1001);
    assert.deepEqual(etcd.expireLeases(), [lease]);
    assert.equal(await etcd.get("nodes/n1"), undefined);
    assert.equal((await etcd.get("nodes/n2"))?.value, "up");
    assert.equal(await etcd.keepAlive(lease), 0);
    await assert.rejects(etcd.put("nodes/n1", "back", { lease }), LeaseNotFoundError);
    await until(() => seen.length === 1, "delete event");
    assert.deepEqual(seen, [`delete nodes/n1@${etcd.revision}`]);
    stop.abort();
    await watching;
  });

  void it("refuses to renew a lease past its deadline even before expireLeases()", async () => {
    const { etcd, advance } = setup();
    const lease = await etcd.grantLease(2);
    await etcd.put("k", "v", { lease });
    advance(2000);
    assert.equal(await etcd.keepAlive(lease), 0);
    assert.equal(await etcd.get("k"), undefined);
    await etcd.revokeLease(lease); // revoking a gone lease is fine
  });

  void it("replays history to watches from an old revision and rejects compacted ones", async () => {
    const { etcd } = setup();
    const start = await etcd.put("a/1", "1");
    await etcd.put("b/1", "not watched");
    await etcd.put("a/2", "2");
    await etcd.delete("a/1");
    const stop = new AbortController();
    const { seen, onEvents } = recorder();
    const watching = etcd.watch("a/", start, { onEvents }, stop.signal);
    await etcd.put("a/3", "3");
    await until(() => seen.length === 4, "four events");
    assert.deepEqual(seen, ["put a/1=1@2", "put a/2=2@4", "delete a/1@5", "put a/3=3@6"]);
    stop.abort();
    await watching;

    etcd.compact(5);
    await assert.rejects(etcd.watch("a/", 4, { onEvents }, new AbortController().signal), (err) => {
      assert.ok(err instanceof CompactedError);
      assert.equal(err.compactRevision, 5);
      return true;
    });
    const late = recorder();
    const again = new AbortController();
    const resumed = etcd.watch("a/", 5, { onEvents: late.onEvents }, again.signal);
    await until(() => late.seen.length === 2, "events from the compaction point");
    again.abort();
    await resumed;
  });

  void it("simulates quorum loss: calls reject and open watches break", async () => {
    const { etcd } = setup();
    const watching = etcd.watch("", 0, { onEvents: () => undefined }, new AbortController().signal);
    await settle();
    etcd.setUnavailable(true);
    await assert.rejects(watching, EtcdUnavailableError);
    await assert.rejects(etcd.get("k"), EtcdUnavailableError);
    await assert.rejects(etcd.grantLease(5), EtcdUnavailableError);
    etcd.setUnavailable(false);
    assert.equal(await etcd.get("k"), undefined);
  });
});

void describe("runInformer on FakeEtcd", () => {
  void it("delivers a snapshot then events, resumes after errors and relists after compaction", async () => {
    const { etcd } = setup();
    await etcd.put("vms/a", "1");
    await etcd.put("other", "x");
    const snapshots: { keys: string[]; revision: number }[] = [];
    const { seen, onEvents } = recorder();
    const errors: number[] = [];
    const pendingSleeps: (() => void)[] = [];
    const stop = new AbortController();
    const running = runInformer(
      etcd,
      "vms/",
      {
        onSnapshot: (kvs: KeyValue[], revision: number) =>
          snapshots.push({ keys: kvs.map((kv) => kv.key), revision }),
        onEvents,
        onError: (_err, retryInMs) => errors.push(retryInMs),
      },
      stop.signal,
      {
        initialBackoffMs: 10,
        maxBackoffMs: 25,
        sleep: () => new Promise((resolve) => pendingSleeps.push(resolve)),
      },
    );
    await until(() => snapshots.length === 1, "first snapshot");
    assert.deepEqual(snapshots[0], { keys: ["vms/a"], revision: 3 });
    await etcd.put("vms/b", "2");
    await until(() => seen.length === 1, "first event");

    // A broken watch resumes where it stopped, without a new snapshot; the backoff grows, capped.
    etcd.setUnavailable(true);
    await until(() => errors.length === 1 && pendingSleeps.length === 1, "first error");
    pendingSleeps.shift()?.();
    await until(() => errors.length === 2 && pendingSleeps.length === 1, "second error");
    pendingSleeps.shift()?.();
    await until(() => errors.length === 3 && pendingSleeps.length === 1, "third error");
    assert.deepEqual(errors, [10, 20, 25]);
    etcd.setUnavailable(false);
    await etcd.put("vms/c", "3");
    pendingSleeps.shift()?.();
    await until(() => seen.length === 2, "event written during the outage");
    assert.equal(snapshots.length, 1);

    // If the history it needs was compacted meanwhile, only a new snapshot is correct.
    etcd.setUnavailable(true);
    await until(() => pendingSleeps.length === 1, "error before compaction");
    etcd.setUnavailable(false);
    await etcd.put("vms/d", "4");
    await etcd.put("other", "moves the revision past the informer's resume point");
    etcd.compact(etcd.revision);
    pendingSleeps.shift()?.();
    await until(() => snapshots.length === 2, "relist after compaction");
    assert.deepEqual(snapshots[1], { keys: ["vms/a", "vms/b", "vms/c", "vms/d"], revision: etcd.revision });
    assert.deepEqual(seen, ["put vms/b=2@4", "put vms/c=3@5"]);

    stop.abort();
    await running;
  });
});

void describe("election on FakeEtcd", () => {
  void it("lets one candidate lead; the next takes over after resign or lease expiry", async () => {
    const { etcd, advance } = setup();
    const [l1, l2, l3] = [await etcd.grantLease(5), await etcd.grantLease(5), await etcd.grantLease(60)];
    const stop = new AbortController();
    await campaign(etcd, "leader", "n1", l1, stop.signal);
    assert.equal(await leader(etcd, "leader"), "n1");
    await campaign(etcd, "leader", "n1", l1, stop.signal); // already ours: resolves at once

    let n2Leads = false;
    const n2 = campaign(etcd, "leader", "n2", l2, stop.signal).then(() => (n2Leads = true));
    await settle();
    assert.equal(n2Leads, false);
    assert.equal(await resign(etcd, "leader", l2), false, "n2 cannot delete n1's key");
    assert.equal(await leader(etcd, "leader"), "n1");

    assert.equal(await resign(etcd, "leader", l1), true);
    await n2;
    assert.equal(await leader(etcd, "leader"), "n2");

    let n3Leads = false;
    const n3 = campaign(etcd, "leader", "n3", l3, stop.signal).then(() => (n3Leads = true));
    advance(4000);
    await etcd.keepAlive(l3);
    advance(2000);
    etcd.expireLeases(); // n2 stopped renewing
    await n3;
    assert.equal(n3Leads, true);
    assert.equal(await leader(etcd, "leader"), "n3");

    const l4 = await etcd.grantLease(5);
    const giveUp = new AbortController();
    const n4 = campaign(etcd, "leader", "n4", l4, giveUp.signal);
    giveUp.abort();
    await assert.rejects(n4, { name: "AbortError" });
    stop.abort();
  });
});
