// Join tokens and the join exchange on a fake etcd, with a real cluster CA in a temporary directory (the
// certificates are made by openssl, as on a server); and the removal of nodes.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, beforeEach, describe, test } from "node:test";
import { ClusterStore } from "../../src/adapters/etcd/cluster-store.js";
import type { EtcdMember, EtcdMembership } from "../../src/adapters/etcd/port.js";
import { FakeEtcd } from "../../src/adapters/etcd/fake.js";
import { JoinService, type JoinAuthority } from "../../src/api/join-service.js";
import { HavenError } from "../../src/core/errors.js";
import { decodeJoinToken, fingerprintOf, type JoinSettings } from "../../src/core/join.js";
import type { Clock } from "../../src/lib/clock.js";
import { caFiles, createClusterCa, newNodeKey, signNodeRequest } from "../../src/setup/pki.js";
import { ConstraintStore } from "../../src/adapters/etcd/constraint-store.js";
import { RefusedToJoin } from "../../src/havend/havend.js";
import { waitFor } from "../../src/lib/async.js";
import { havendOnFakes, nodeInfo, placementOn, refusal, vmSpec } from "./fixtures.js";

const SETTINGS: JoinSettings = {
  cluster: "haven",
  prefix: "/test/",
  etcd: ["https://198.18.0.1:2379"],
  etcdTls: "node",
  leaseTtlSeconds: 5,
  apiToken: "t0ken",
  storage: { type: "dir", path: "/srv/haven" },
};

/**
 * etcd's membership as etcd keeps it: one voter to begin with; a learner has no name or client URL until its
 * server starts, and is promoted only once started (in sync).
 */
class MembershipOnFakes implements EtcdMembership {
  list: EtcdMember[] = [
    {
      id: "1",
      name: "etcd-node1",
      peerUrls: ["https://198.18.0.1:2380"],
      clientUrls: ["https://198.18.0.1:2379"],
      learner: false,
    },
  ];
  /** etcd's refusals of the next adds: it refuses changes until its leader has heard from a quorum for 5 s. */
  unhealthyFor = 0;
  members = () => Promise.resolve(this.list.map((m) => ({ ...m })));
  addLearner(peerUrls: string[]): Promise<EtcdMember> {
    if (this.unhealthyFor-- > 0)
      return Promise.reject(new Error("etcd unavailable: etcdserver: unhealthy cluster"));
    const member = { id: String(this.list.length + 1), name: "", peerUrls, clientUrls: [], learner: true };
    this.list.push(member);
    return Promise.resolve({ ...member });
  }
  promote(id: string): Promise<void> {
    const member = this.list.find((m) => m.id === id);
    if (!member?.name)
      return Promise.reject(new Error("can only promote a learner member which is in sync with leader"));
    member.learner = false;
    return Promise.resolve();
  }
  remove(id: string): Promise<void> {
    this.list = this.list.filter((m) => m.id !== id);
    return Promise.resolve();
  }
  start(id: string, name: string, address: string): void {
    const member = this.list.find((m) => m.id === id)!;
    member.name = name;
    member.clientUrls = [`https://${address}:2379`];
  }
}

describe("joining servers", () => {
  let caDir: string;
  let authority: JoinAuthority;
  let now: number;
  let etcd: FakeEtcd;
  let store: ClusterStore;
  let joins: JoinService;
  const clock: Clock = {
    now: () => now,
    sleep: (ms) => {
      now += ms;
      return Promise.resolve();
    },
  };
  let counter = 0;
  const random = (bytes: number) => Buffer.alloc(bytes, ++counter);

  before(async () => {
    caDir = await mkdtemp(join(tmpdir(), "haven-join-test-"));
    await createClusterCa(caDir, "haven");
    authority = {
      caCertificate: await readFile(join(caDir, caFiles.cert), "utf8"),
      api: "https://198.18.0.1:7443",
      sign: (node, address, csr) => signNodeRequest(caDir, node, [address], csr),
      settingsFor: () => Promise.resolve(SETTINGS),
    };
  });
  after(() => rm(caDir, { recursive: true, force: true }));

  beforeEach(() => {
    now = Date.parse("2026-12-01T10:00:00Z");
    etcd = new FakeEtcd({ now: () => now });
    store = new ClusterStore(etcd, "/test/", clock);
    removedUsers = [];
    joins = new JoinService(store, clock, random, authority, "node1", {
      removeStorageUser: (node) => {
        removedUsers.push(node);
        return Promise.resolve();
      },
    });
  });
  let removedUsers: string[] = [];

  const requestFor = async (token: string, secret?: string) => {
    const decoded = decodeJoinToken(token);
    return {
      id: decoded.id,
      secret: secret ?? decoded.secret,
      address: "198.18.0.4",
      roles: ["compute" as const],
      csr: (await newNodeKey(decoded.node)).csrPem,
    };
  };

  test("a token names the node, the signing API and the CA's fingerprint; it lets exactly one server join", async () => {
    const issued = await joins.issueToken("node4", 600);
    const token = decodeJoinToken(issued.token);
    assert.equal(token.node, "node4");
    assert.equal(token.api, authority.api);
    assert.equal(token.ca, fingerprintOf(new X509Certificate(authority.caCertificate).fingerprint256));
    assert.equal(issued.expiresAt, "2026-12-01T10:10:00.000Z");
    const stored = JSON.stringify((await etcd.list("/test/join-grants/")).kvs);
    assert.ok(!stored.includes(token.secret), "etcd keeps the secret's hash, not the secret");

    const joined = await joins.join(await requestFor(issued.token));
    assert.equal(joined.node, "node4");
    assert.equal(joined.apiToken, "t0ken");
    const cert = new X509Certificate(joined.certificate);
    assert.ok(
      cert.verify(new X509Certificate(authority.caCertificate).publicKey),
      "signed by the cluster CA",
    );
    assert.match(cert.subject, /CN=node4/);
    assert.match(cert.subjectAltName ?? "", /DNS:node4/);
    assert.match(cert.subjectAltName ?? "", /IP Address:198\.18\.0\.4/);

    assert.match(
      await refusal(joins.join(await requestFor(issued.token)), "NOT_FOUND"),
      /used, replaced or expired/,
    );
    const events = (await store.listEvents()).map((e) => e.type).sort();
    assert.deepEqual(events, ["join-token", "node-joined"]);
  });

  test("a wrong secret is refused and leaves the token usable", async () => {
    const { token } = await joins.issueToken("node4");
    const wrong = "0".repeat(64);
    assert.match(await refusal(joins.join(await requestFor(token, wrong)), "INPUT"), /secret is wrong/);
    assert.equal((await joins.join(await requestFor(token))).node, "node4");
  });

  test("an expired token is refused", async () => {
    const { token } = await joins.issueToken("node4", 60);
    now += 61_000;
    // Whether etcd's lease removed the grant already or the expiry check refuses it, the answer says so.
    const err = await joins.join(await requestFor(token)).then(
      () => assert.fail("an expired token was accepted"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof HavenError, String(err));
    assert.match(err.message, /expired/);
  });

  test("two servers with one token: one joins, the other is refused", async () => {
    const { token } = await joins.issueToken("node4");
    const results = await Promise.allSettled([
      joins.join(await requestFor(token)),
      joins.join(await requestFor(token)),
    ]);
    assert.deepEqual(results.map((r) => r.status).sort(), ["fulfilled", "rejected"]);
  });

  test("a new token for a node replaces the earlier one; a name that is online is refused", async () => {
    const first = await joins.issueToken("node4");
    const second = await joins.issueToken("node4");
    await refusal(joins.join(await requestFor(first.token)), "NOT_FOUND");
    await store.putNode(nodeInfo("node2"), await etcd.grantLease(10));
    assert.match(await refusal(joins.issueToken("node2"), "CONFLICT"), /node2 is online already/);
    assert.equal((await joins.join(await requestFor(second.token))).node, "node4");
  });

  test("bad input is named", async () => {
    assert.match(await refusal(joins.issueToken("no/such name"), "INPUT"), /invalid node name/);
    assert.match(await refusal(joins.issueToken("node4", 5), "INPUT"), /join token lives from 60 s/);
    const { token } = await joins.issueToken("node4");
    const request = {
      ...(await requestFor(token)),
      csr: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
    };
    assert.match(await refusal(joins.join(request), "INPUT"), /cannot sign the certificate request/);
    const storage = { ...(await requestFor(token)), roles: ["compute" as const, "storage" as const] };
    assert.match(await refusal(joins.join(storage), "INPUT"), /cannot have the storage role yet/);
    const monitor = { ...(await requestFor(token)), roles: ["compute" as const, "monitor" as const] };
    assert.match(await refusal(joins.join(monitor), "INPUT"), /etcd is not run by Haven/);
    assert.throws(() => decodeJoinToken("hello"), /not a Haven join token/);
    assert.throws(() => decodeJoinToken(token.slice(0, -8)), /damaged/);
  });

  test("a running compute node is marked and leaves; once it is offline without guests the cluster forgets it", async () => {
    const lease = await etcd.grantLease(10);
    await store.putNode(nodeInfo("node4", { roles: ["compute"] }), lease);
    await store.createSpec(vmSpec("web"));
    assert.ok(await store.swapPlacement("web", placementOn("node4"), 0));
    await store.setMaintenance("node4", { since: "t0", reason: "removed from the cluster" });
    await store.putFenceAgent("node4", { command: ["fence_ipmilan"], timeoutSeconds: 30 });
    await ConstraintStore.of(store).putNodeAttributes({
      node: "node4",
      attributes: { rack: "a" },
      importedAt: "t0",
    });

    const leaving = await joins.removeNode("node4", false);
    assert.deepEqual(leaving, { node: "node4", state: "leaving", guests: ["web"] });
    assert.equal((await store.getRemovedNode("node4"))?.by, "node1");
    assert.deepEqual(await joins.removeNode("node4", false), leaving, "asking again changes nothing");
    assert.deepEqual(removedUsers, [], "nothing is forgotten while the node runs");

    await etcd.revokeLease(lease);
    assert.match(
      await refusal(joins.removeNode("node4", false), "CONFLICT"),
      /still placed on node4 \(web\)/,
    );
    assert.ok(await store.swapPlacement("web", null, 1));
    assert.deepEqual(await joins.removeNode("node4", false), { node: "node4", state: "removed", guests: [] });
    assert.deepEqual(removedUsers, ["node4"]);
    assert.equal((await store.listMaintenance()).size, 0);
    assert.equal(await store.getFenceAgent("node4"), undefined);
    assert.equal(await ConstraintStore.of(store).getNodeAttributes("node4"), undefined);
    const types = (await store.listEvents()).map((e) => `${e.type} ${e.node}`);
    assert.deepEqual(types.filter((t) => t.startsWith("node-")).sort(), [
      "node-leaving node4",
      "node-removed node4",
    ]);

    // The mark keeps its havend out until the name joins anew.
    const havend = havendOnFakes({ info: nodeInfo("node4"), store });
    await assert.rejects(havend.register(new AbortController().signal), (err: Error) => {
      assert.ok(err instanceof RefusedToJoin && !err.retry);
      assert.match(err.message, /node4 was removed from the cluster .*'haven node add node4'/);
      return true;
    });
    const { token } = await joins.issueToken("node4");
    await joins.join(await requestFor(token));
    assert.equal(await store.getRemovedNode("node4"), undefined, "joining again lifts the mark");
  });

  test("a running havend hears of its removal", async () => {
    const stop = new AbortController();
    let heard = false;
    const havend = havendOnFakes({
      info: nodeInfo("node4", { roles: ["compute"] }),
      store,
      onRemoved: () => void (heard = true),
    });
    await havend.register(stop.signal);
    const running = havend.run(stop.signal);
    await joins.removeNode("node4", false);
    await waitFor("onRemoved", () => (heard ? true : undefined), 30_000, 50);
    stop.abort();
    await running;
  });

  test("removal refuses nodes with daemons, offline nodes without --force, and bad names", async () => {
    await store.putNode(nodeInfo("node2", { roles: ["storage", "monitor"] }), await etcd.grantLease(10));
    assert.match(
      await refusal(joins.removeNode("node2", false), "CONFLICT"),
      /node2 cannot be removed: Haven cannot yet move OSDs \(the storage role\) off a node/,
    );
    assert.equal(await store.getRemovedNode("node2"), undefined);
    await store.putNode(nodeInfo("node3", { roles: ["monitor"] }), await etcd.grantLease(10));
    assert.match(
      await refusal(joins.removeNode("node3", false), "CONFLICT"),
      /node3 cannot be removed: this cluster's etcd is not Haven's/,
    );
    const localCeph = new JoinService(store, clock, random, authority, "node1", {
      etcd: new MembershipOnFakes(),
      cephFollowsRoles: true,
    });
    assert.match(
      await refusal(localCeph.removeNode("node3", false), "CONFLICT"),
      /cannot yet move Ceph monitors \(the monitor role\)/,
    );
    assert.match(
      await refusal(joins.removeNode("gone", false), "NOT_FOUND"),
      /gone is not online: .* --force/,
    );
    assert.match(await refusal(joins.removeNode("no/such", false), "INPUT"), /invalid node name/);
    assert.deepEqual(await joins.removeNode("gone", true), { node: "gone", state: "removed", guests: [] });
    assert.deepEqual(removedUsers, ["gone"]);
    assert.equal((await store.getRemovedNode("gone"))?.by, "node1");
  });

  test("a monitor's removal removes its etcd member once it is offline; a learner takes its vote; the last voter stays", async () => {
    const membership = new MembershipOnFakes();
    const member = (id: string, learner: boolean) => ({
      id,
      name: `etcd-node${id}`,
      peerUrls: [`https://198.18.0.${id}:2380`],
      clientUrls: [`https://198.18.0.${id}:2379`],
      learner,
    });
    membership.list = [member("1", false), member("2", false), member("3", false), member("4", true)];
    const shrinking = new JoinService(store, clock, random, authority, "node1", { etcd: membership });
    const votes = () => membership.list.map((m) => `${m.name}:${m.learner ? "learner" : "voter"}`);
    const lease = await etcd.grantLease(10);
    await store.putNode(nodeInfo("node2", { roles: ["compute", "monitor"] }), lease);

    assert.equal((await shrinking.removeNode("node2", false)).state, "leaving");
    assert.equal(membership.list.length, 4, "the member stays while its node runs");
    await etcd.revokeLease(lease);
    assert.equal((await shrinking.removeNode("node2", false)).state, "removed");
    assert.deepEqual(votes(), ["etcd-node1:voter", "etcd-node3:voter", "etcd-node4:voter"]);
    const events = await store.listEvents();
    assert.match(
      events.find((e) => e.type === "etcd-member-removed")?.reason ?? "",
      /etcd member etcd-node2 removed \(learner 4 votes in its place\)/,
    );

    // A server gone for good (--force) loses its member too; the last voter does not go.
    assert.equal((await shrinking.removeNode("node3", true)).state, "removed");
    assert.equal((await shrinking.removeNode("node4", true)).state, "removed");
    assert.deepEqual(votes(), ["etcd-node1:voter"]);
    assert.match(
      await refusal(shrinking.removeNode("node1", true), "CONFLICT"),
      /node1 cannot be removed: its etcd member is the cluster's last voting member/,
    );
    assert.equal(await store.getRemovedNode("node1"), undefined, "a refused removal marks nothing");
  });

  test("monitors grow etcd: each joins as a learner, and votes when that makes the voters odd, up to five", async () => {
    const membership = new MembershipOnFakes();
    const growing = new JoinService(store, clock, random, authority, "node1", { etcd: membership });
    const joinMonitor = async (node: string, address: string) => {
      const { token } = await growing.issueToken(node);
      const request = {
        ...(await requestFor(token)),
        address,
        roles: ["compute" as const, "monitor" as const],
        etcd: { clientPort: 2379, peerPort: 2380 },
      };
      const joined = await growing.join(request);
      // The joining server starts its member, and promotes it when it was told to.
      membership.start(joined.etcdMember!.id, joined.etcdMember!.name, address);
      if (joined.etcdMember!.promote) await membership.promote(joined.etcdMember!.id);
      return joined;
    };
    const votes = () => membership.list.map((m) => `${m.name}:${m.learner ? "learner" : "voter"}`);

    const second = await joinMonitor("node2", "198.18.0.2");
    assert.deepEqual(second.etcdMember, {
      id: "2",
      name: "etcd-node2",
      initialCluster: "etcd-node1=https://198.18.0.1:2380,etcd-node2=https://198.18.0.2:2380",
      promote: false,
    });
    assert.deepEqual(second.etcd, ["https://198.18.0.1:2379"], "a node is told the voters' client URLs");
    assert.deepEqual(
      votes(),
      ["etcd-node1:voter", "etcd-node2:learner"],
      "two voters would survive nothing more",
    );

    const third = await joinMonitor("node3", "198.18.0.3");
    assert.equal(third.etcdMember!.promote, true);
    assert.deepEqual(third.etcd, ["https://198.18.0.1:2379", "https://198.18.0.2:2379"]);
    assert.deepEqual(votes(), ["etcd-node1:voter", "etcd-node2:voter", "etcd-node3:voter"]);

    await joinMonitor("node4", "198.18.0.4");
    await joinMonitor("node5", "198.18.0.5");
    await joinMonitor("node6", "198.18.0.6");
    assert.deepEqual(votes().slice(3), ["etcd-node4:voter", "etcd-node5:voter", "etcd-node6:learner"]);
    const { token } = await growing.issueToken("node7");
    const seventh = {
      ...(await requestFor(token)),
      roles: ["monitor" as const],
      etcd: { clientPort: 1, peerPort: 2 },
    };
    assert.match(await refusal(growing.join(seventh), "CONFLICT"), /5 voting members and a learner already/);
    assert.equal(membership.list.length, 6, "a refused join changes nothing");
    const compute = { ...(await requestFor(token)), roles: ["compute" as const] };
    assert.equal((await growing.join(compute)).etcdMember, undefined, "compute servers are etcd's clients");
  });

  test("a learner that never started stops the next monitor's join, which says what to do and keeps its token", async () => {
    const membership = new MembershipOnFakes();
    const growing = new JoinService(store, clock, random, authority, "node1", { etcd: membership });
    const monitor = async (node: string) => ({
      ...(await requestFor((await growing.issueToken(node)).token)),
      roles: ["monitor" as const],
      etcd: { clientPort: 2379, peerPort: 2380 },
    });
    await growing.join(await monitor("node2")); // its server never starts its member
    const third = await monitor("node3");
    assert.match(
      await refusal(growing.join(third), "UNAVAILABLE"),
      /would not promote its learner https:\/\/198\.18\.0\.4:2380 .*'etcdctl member remove 2'/,
    );
    assert.equal(membership.list.length, 2, "nothing was added");
    membership.start("2", "etcd-node2", "198.18.0.4");
    assert.equal((await growing.join(third)).etcdMember?.promote, true, "the token still works");
  });

  test("a membership change etcd refuses for a moment is tried again", async () => {
    const membership = new MembershipOnFakes();
    membership.unhealthyFor = 3;
    const growing = new JoinService(store, clock, random, authority, "node1", { etcd: membership });
    const { token } = await growing.issueToken("node2");
    const request = {
      ...(await requestFor(token)),
      roles: ["monitor" as const],
      etcd: { clientPort: 1, peerPort: 2 },
    };
    const started = now;
    assert.equal((await growing.join(request)).etcdMember?.name, "etcd-node2");
    assert.equal(now - started, 3000, "three refusals, a second apart");
    assert.equal(membership.list.length, 2);
  });

  test("a node without the CA key cannot make tokens", async () => {
    const plain = new JoinService(store, clock, random, undefined, "node2");
    assert.match(await refusal(plain.issueToken("node4"), "CONFLICT"), /node2 holds no cluster CA key/);
    assert.throws(() => plain.caCertificate(), /holds no cluster CA key/);
  });
});
