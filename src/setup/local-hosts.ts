// The hosts of a local cluster: each node is a network namespace of its own, a host with one network card
// (eth0) on the hosts network, a bridge shared by every local cluster of this machine as servers share a
// switch. The machine itself is on that bridge too (MACHINE_ADDRESS), so the CLI reaches every node's API.
// Each host also has its own guest bridge (named as the lab's, as servers name their guest bridge alike),
// wired by a veth pair to the cluster's guest network. Addresses come from 198.18.0.0/16, inside
// 198.18.0.0/15 (reserved for network test labs); no namespace has a default route and the machine forwards
// nothing, so no packet leaves the machine.
//
// Whatever runs on a node runs inside its host (havend, its etcd member, its Ceph daemons and, through
// havend, its QEMUs), so every byte between nodes crosses a veth link, and a partition is a cut link.
import { createHash } from "node:crypto";
import { z } from "zod";
import { run } from "../lib/command.js";
import { linkExists, namespaces, runInNamespace } from "../lib/netns.js";
import { conflict, inputError, notFound, unavailable } from "../core/errors.js";
import { addBridge, localClusterId, type LabNetwork } from "./local-network.js";

/** The bridge of the hosts network, shared by the local clusters of this machine. */
const HOSTS_BRIDGE = "haven-hosts";
/** This machine's address on the hosts network. */
const MACHINE_ADDRESS = "198.18.0.1";
const HOSTS_PREFIX_LENGTH = 16;
/** A host's card on the hosts network, and its port on its own guest bridge, inside its namespace. */
const HOST_CARD = "eth0";
const GUEST_UPLINK = "guest0";
/** The nftables table (inside a host) that cuts its link. */
export const CUT_TABLE = "haven_cut";
/** Hosts per cluster: 198.18.SLOT.1 to .250. */
const MAX_HOSTS = 250;

export const localHostSchema = z.object({
  /** The node (or the server that joins as it) this host is. */
  name: z.string(),
  namespace: z.string(),
  address: z.string(),
  /** The machine's end of the host's eth0 (on HOSTS_BRIDGE). */
  link: z.string(),
  /** The machine's end of the host's guest uplink (on the lab bridge). */
  guestLink: z.string(),
});
export type LocalHost = z.infer<typeof localHostSchema>;

export const localHostsSchema = z.object({
  /** This cluster's hosts are 198.18.SLOT.N. */
  slot: z.number().int().min(1).max(254),
  hosts: z.array(localHostSchema),
});
export type LocalHosts = z.infer<typeof localHostsSchema>;

/**
 * The hosts of a new cluster, one per name, on a slot of the hosts network no other local cluster of this
 * machine uses (each starts its search at a slot derived from its state directory).
 */
export async function planHosts(stateDir: string, names: string[]): Promise<LocalHosts> {
  const used = await usedSlots();
  const start = createHash("sha256").update(stateDir).digest().readUInt8(0) % 254;
  const slot = Array.from({ length: 254 }, (_, i) => ((start + i) % 254) + 1).find((s) => !used.has(s));
  if (slot === undefined) throw unavailable("every slot of the hosts network 198.18.0.0/16 is in use");
  const hosts: LocalHosts = { slot, hosts: [] };
  for (const name of names) hosts.hosts.push(nextHost(stateDir, hosts, name));
  return hosts;
}

/** A new host for `name` after the cluster's others (a server that is to join the cluster). */
export function nextHost(stateDir: string, hosts: LocalHosts, name: string): LocalHost {
  if (!/^[a-z0-9][a-z0-9-]{0,31}$/.test(name))
    throw inputError(`bad host name ${JSON.stringify(name)}: lower-case letters, digits and -, up to 32`);
  if (hosts.hosts.some((host) => host.name === name)) throw conflict(`host ${name} exists already`);
  const index = Math.max(0, ...hosts.hosts.map((host) => hostIndex(host))) + 1;
  if (index > MAX_HOSTS) throw inputError(`a local cluster has at most ${MAX_HOSTS} hosts`);
  const id = localClusterId(stateDir);
  return {
    name,
    namespace: `haven-${id}-${name}`,
    address: `198.18.${hosts.slot}.${index}`,
    link: `hv${id}h${index}`,
    guestLink: `hv${id}g${index}`,
  };
}

const hostIndex = (host: LocalHost) => Number(host.address.split(".")[3]);

/** The slots that the hosts of this machine's local clusters use (read from their eth0 addresses). */
async function usedSlots(): Promise<Set<number>> {
  const slots = new Set<number>();
  for (const namespace of await namespaces()) {
    if (!namespace.startsWith("haven-")) continue;
    const addresses = await run("ip", ["-n", namespace, "-4", "-o", "addr", "show"]).catch(() => "");
    for (const match of addresses.matchAll(/inet 198\.18\.(\d+)\.\d+\//g)) slots.add(Number(match[1]));
  }
  return slots;
}

/** Creates whatever is missing of the hosts network and of these hosts; `lab` is the guest network. */
export async function ensureHosts(
  hosts: LocalHosts,
  lab: LabNetwork | undefined,
  progress: (line: string) => void,
): Promise<void> {
  await ensureHostsBridge();
  for (const host of hosts.hosts) {
    if (await ensureHost(host, lab))
      progress(`host ${host.name}: ${host.address} (namespace ${host.namespace})`);
  }
}

async function ensureHostsBridge(): Promise<void> {
  if (await linkExists(HOSTS_BRIDGE)) return;
  // Two clusters coming up at once may race to create it: the loser finds it made.
  await run("ip", ["link", "add", HOSTS_BRIDGE, "type", "bridge"]).catch(async (err: Error) => {
    if (!(await linkExists(HOSTS_BRIDGE))) throw err;
  });
  await run("ip", ["addr", "replace", `${MACHINE_ADDRESS}/${HOSTS_PREFIX_LENGTH}`, "dev", HOSTS_BRIDGE]);
  await run("ip", ["link", "set", HOSTS_BRIDGE, "up"]);
}

/** Makes the host's namespace and links as far as they are missing; returns whether anything was made. */
async function ensureHost(host: LocalHost, lab: LabNetwork | undefined): Promise<boolean> {
  let made = false;
  const inHost = (argv: string[]) => runInNamespace(host.namespace, argv);
  if (!(await namespaces()).includes(host.namespace)) {
    await run("ip", ["netns", "add", host.namespace]);
    await inHost(["ip", "link", "set", "lo", "up"]);
    made = true;
  }
  if (!(await linkExists(host.link))) {
    await addVeth(host.link, HOST_CARD, host.namespace);
    await inHost(["ip", "addr", "add", `${host.address}/${HOSTS_PREFIX_LENGTH}`, "dev", HOST_CARD]);
    await inHost(["ip", "link", "set", HOST_CARD, "up"]);
    await run("ip", ["link", "set", host.link, "master", HOSTS_BRIDGE, "up"]);
    made = true;
  }
  if (lab && !(await linkExists(host.guestLink))) {
    if (!(await linkExists(lab.bridge, host.namespace))) await addBridge(lab.bridge, host.namespace);
    await addVeth(host.guestLink, GUEST_UPLINK, host.namespace);
    await inHost(["ip", "link", "set", GUEST_UPLINK, "master", lab.bridge, "up"]);
    await run("ip", ["link", "set", host.guestLink, "master", lab.bridge, "up"]);
    // The uplink carries every VLAN (tagged) besides the untagged default, as a trunk between switches.
    await inHost(["bridge", "vlan", "add", "dev", GUEST_UPLINK, "vid", "2-4094"]).catch(() => undefined);
    await run("bridge", ["vlan", "add", "dev", host.guestLink, "vid", "2-4094"]).catch(() => undefined);
    made = true;
  }
  return made;
}

/** A veth pair: `outside` here, its peer `inside` in `namespace`. */
const addVeth = (outside: string, inside: string, namespace: string) =>
  run("ip", ["link", "add", outside, "type", "veth", "peer", "name", inside, "netns", namespace]);

/**
 * Removes these hosts (their namespaces, and with them everything inside: links, cuts) and the hosts
 * bridge once no host of any cluster is left on it. Parts already gone are fine.
 */
export async function removeHosts(hosts: LocalHosts): Promise<void> {
  for (const host of hosts.hosts) {
    await run("ip", ["netns", "delete", host.namespace]).catch(() => undefined);
    // Deleting a namespace deletes its ends of the veth pairs, and so the machine's ends; in case not:
    for (const link of [host.link, host.guestLink])
      if (await linkExists(link)) await run("ip", ["link", "delete", link]).catch(() => undefined);
  }
  const ports = await run("ip", ["-o", "link", "show", "master", HOSTS_BRIDGE]).catch(() => "");
  if (ports.trim() === "") await run("ip", ["link", "delete", HOSTS_BRIDGE]).catch(() => undefined);
}

/** The cluster's hosts; a clear error for a cluster whose nodes have none. */
export function requireHosts(hosts: LocalHosts | undefined): LocalHosts {
  if (!hosts)
    throw inputError(
      "this cluster's nodes are not hosts of their own (an installed cluster, or a local one made before " +
        "local hosts: recreate it with 'haven cluster down --purge' and 'haven cluster up')",
    );
  return hosts;
}

/** The host named `name`; a clear error naming the others when there is none. */
export function findHost(hosts: LocalHosts | undefined, name: string): LocalHost {
  const all = requireHosts(hosts).hosts;
  const host = all.find((candidate) => candidate.name === name);
  if (!host) throw notFound(`host ${name} does not exist (hosts: ${all.map((h) => h.name).join(", ")})`);
  return host;
}

/** The namespace of the host with this address, if it is one of these hosts. */
export const namespaceAt = (hosts: LocalHosts | undefined, address: string): string | undefined =>
  hosts?.hosts.find((host) => host.address === address)?.namespace;

/**
 * Cuts the host's link: everything it sends, and unless `oneway` everything it receives, on eth0 is dropped
 * (loopback and its guests' bridge are untouched). A cut replaces an earlier one.
 */
export async function cutHost(host: LocalHost, oneway: boolean): Promise<void> {
  await healHost(host);
  const rules = [
    `add table inet ${CUT_TABLE}`,
    `add chain inet ${CUT_TABLE} out { type filter hook output priority 0 ; policy accept ; }`,
    `add rule inet ${CUT_TABLE} out oifname "${HOST_CARD}" drop`,
    ...(oneway
      ? []
      : [
          `add chain inet ${CUT_TABLE} in { type filter hook input priority 0 ; policy accept ; }`,
          `add rule inet ${CUT_TABLE} in iifname "${HOST_CARD}" drop`,
        ]),
  ];
  await runInNamespace(host.namespace, ["nft", "-f", "-"], rules.join("\n") + "\n").catch((err: Error) => {
    throw unavailable(
      `cannot cut ${host.name}'s link with nftables (Debian package nftables): ${err.message}`,
    );
  });
}

/** Restores the host's link; returns whether it was cut. */
export async function healHost(host: LocalHost): Promise<boolean> {
  if ((await linkState(host)) === "up") return false;
  await runInNamespace(host.namespace, ["nft", "delete", "table", "inet", CUT_TABLE]);
  return true;
}

/** Whether the host's link is up, cut both ways or cut one way (its cut has no input chain). */
export async function linkState(host: LocalHost): Promise<"up" | "cut" | "cut one way"> {
  const table = await runInNamespace(host.namespace, ["nft", "list", "table", "inet", CUT_TABLE]).catch(
    () => undefined,
  );
  if (table === undefined) return "up";
  return /chain in\b/.test(table) ? "cut" : "cut one way";
}
