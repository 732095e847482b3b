// Join tokens and the join exchange on a fake etcd, with a real cluster CA in a temporary directory (the
// certificates are made by openssl, as on a server).
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, beforeEach, describe, test } from "node:test";
import { ClusterStore } from "../../src/adapters/etcd/cluster-store.js";
import { FakeEtcd } from "../../src/adapters/etcd/fake.js";
import { JoinService, type JoinAuthority } from "../../src/api/join-service.js";
import { HavenError } from "../../src/core/errors.js";
import { decodeJoinToken, fingerprintOf, type JoinSettings } from "../../src/core/join.js";
import type { Clock } from "../../src/lib/clock.js";
import { caFiles, createClusterCa, newNodeKey, signNodeRequest } from "../../src/setup/pki.js";
import { nodeInfo, refusal } from "./fixtures.js";

const SETTINGS: JoinSettings = {
  cluster: "haven",
  prefix: "/test/",
  etcd: ["https://198.18.0.1:2379"],
  etcdTls: "node",
  leaseTtlSeconds: 5,
  apiToken: "t0ken",
  storage: { type: "dir", path: "/srv/haven" },
};

describe("joining servers", () => {
  let caDir: string;
  let authority: JoinAuthority;
  let now: number;
  let etcd: FakeEtcd;
  let store: ClusterStore;
  let joins: JoinService;
  const clock: Clock = { now: () => now, sleep: () => Promise.resolve() };
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
    joins = new JoinService(store, clock, random, authority, "node1");
  });

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
    assert.match(await refusal(joins.join(storage), "INPUT"), /only have the compute role for now/);
    assert.throws(() => decodeJoinToken("hello"), /not a Haven join token/);
    assert.throws(() => decodeJoinToken(token.slice(0, -8)), /damaged/);
  });

  test("a node without the CA key cannot make tokens", async () => {
    const plain = new JoinService(store, clock, random, undefined, "node2");
    assert.match(await refusal(plain.issueToken("node4"), "CONFLICT"), /node2 holds no cluster CA key/);
    assert.throws(() => plain.caCertificate(), /holds no cluster CA key/);
  });
});
