// The naming and addressing of a local cluster's hosts (no namespace is made here).
import assert from "node:assert/strict";
import { test } from "node:test";
import { nextHost, type LocalHosts } from "../../src/setup/local-hosts.js";

const STATE = "/tmp/haven-unit-state";

test("hosts take the next address of the cluster's slot, with interface names Linux accepts", () => {
  const hosts: LocalHosts = { slot: 42, hosts: [] };
  for (const name of ["node1", "node2", "node3"]) hosts.hosts.push(nextHost(STATE, hosts, name));
  assert.deepEqual(
    hosts.hosts.map((h) => h.address),
    ["198.18.42.1", "198.18.42.2", "198.18.42.3"],
  );
  const [first] = hosts.hosts;
  assert.match(first!.namespace, /^haven-[0-9a-f]{6}-node1$/);
  for (const host of hosts.hosts)
    for (const link of [host.link, host.guestLink]) assert.ok(link.length <= 15, `${link} fits IFNAMSIZ`);
  assert.equal(new Set(hosts.hosts.flatMap((h) => [h.link, h.guestLink])).size, 6);
  // A host added after one was removed does not take a used address.
  const gap: LocalHosts = { slot: 42, hosts: [hosts.hosts[0]!, hosts.hosts[2]!] };
  assert.equal(nextHost(STATE, gap, "node4").address, "198.18.42.4");
});

test("a host name must be new and fit a namespace name", () => {
  const hosts: LocalHosts = { slot: 7, hosts: [] };
  hosts.hosts.push(nextHost(STATE, hosts, "node1"));
  assert.throws(() => nextHost(STATE, hosts, "node1"), /host node1 exists already/);
  for (const bad of ["", "Node", "a/b", "-x", "x".repeat(33)])
    assert.throws(() => nextHost(STATE, hosts, bad), /bad host name/);
});
