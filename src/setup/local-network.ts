// The guest network of a local cluster, wired like hosts on one switch: a bridge that every host's own guest
// bridge is wired to (local-hosts.ts), and a network namespace of its own on it (through a veth pair) that
// runs the DHCP server (Debian's dnsmasq) and from which `haven network exec` reaches the guests. Addresses
// come from 198.19.0.0/24, inside 198.18.0.0/15 (reserved for network test labs); the bridge has no address
// on the machine's own side and nothing is routed or NATed, so no guest packet can leave the machine.
import { createHash } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { run } from "../lib/command.js";
import { livePid, terminate } from "../lib/process.js";
import { execInNamespace, linkExists, namespaces, runInNamespace } from "../lib/netns.js";

export const labNetworkSchema = z.object({
  bridge: z.string(),
  namespace: z.string(),
  /** The veth end on the bridge; its peer is `lab0` inside the namespace. */
  veth: z.string(),
  subnet: z.string(),
  /** The namespace's own address: the DHCP server, and where `network exec` commands come from. */
  address: z.string(),
  dhcpRange: z.tuple([z.string(), z.string()]),
  dir: z.string(),
});
export type LabNetwork = z.infer<typeof labNetworkSchema>;

/** A short name for the local cluster in `stateDir`, for the names of what it creates on the machine. */
export const localClusterId = (stateDir: string): string =>
  createHash("sha256").update(stateDir).digest("hex").slice(0, 6);

/** The lab network of the cluster in `stateDir`: names derived from the directory, so clusters never share. */
export function labNetworkFor(stateDir: string): LabNetwork {
  const id = localClusterId(stateDir);
  return {
    bridge: `hv${id}lab`,
    namespace: `haven-${id}-lab`,
    veth: `hv${id}lv`,
    subnet: "198.19.0.0/24",
    address: "198.19.0.1",
    dhcpRange: ["198.19.0.100", "198.19.0.250"],
    dir: join(stateDir, "network"),
  };
}

const files = (lab: LabNetwork) => ({
  pid: join(lab.dir, "dnsmasq.pid"),
  leases: join(lab.dir, "dnsmasq.leases"),
  log: join(lab.dir, "dnsmasq.log"),
});

/** Creates whatever part of the lab network is missing: bridge, namespace, veth pair, DHCP server. */
export async function ensureLabNetwork(lab: LabNetwork, progress: (line: string) => void): Promise<void> {
  await mkdir(lab.dir, { recursive: true });
  if (!(await linkExists(lab.bridge))) {
    const filtering = await addBridge(lab.bridge);
    progress(
      `created guest bridge ${lab.bridge}${filtering ? "" : " (this kernel's bridges cannot filter VLANs)"}`,
    );
  }
  if (!(await namespaces()).includes(lab.namespace)) await run("ip", ["netns", "add", lab.namespace]);
  if (!(await linkExists(lab.veth))) {
    const peer = `${lab.veth.slice(0, -1)}p`;
    await run("ip", ["link", "add", lab.veth, "type", "veth", "peer", "name", peer]);
    await run("ip", ["link", "set", peer, "netns", lab.namespace]);
    await inLab(lab, ["ip", "link", "set", peer, "name", "lab0"]);
    await inLab(lab, ["ip", "addr", "add", `${lab.address}/24`, "dev", "lab0"]);
    await inLab(lab, ["ip", "link", "set", "lab0", "up"]);
    await inLab(lab, ["ip", "link", "set", "lo", "up"]);
    await run("ip", ["link", "set", lab.veth, "master", lab.bridge, "up"]);
  }
  if ((await dhcpServerPid(lab)) === undefined) {
    await startDhcpServer(lab);
    progress(
      `guest network ${lab.subnet} on ${lab.bridge}: DHCP from ${lab.address} (namespace ${lab.namespace})`,
    );
  }
}

/** Removes all of it; parts already gone are fine. */
export async function removeLabNetwork(lab: LabNetwork): Promise<void> {
  const pid = await dhcpServerPid(lab);
  if (pid !== undefined) await terminate(pid, 5000);
  await run("ip", ["netns", "delete", lab.namespace]).catch(() => undefined);
  for (const link of [lab.veth, lab.bridge]) await run("ip", ["link", "delete", link]).catch(() => undefined);
}

/** Runs `argv` inside the lab namespace with this process's stdio; resolves with its exit code. */
export const execInLab = (lab: LabNetwork, argv: string[]): Promise<number> =>
  execInNamespace(lab.namespace, argv);

export const labLeasesFile = (lab: LabNetwork) => files(lab).leases;

const inLab = (lab: LabNetwork, argv: string[]): Promise<string> => runInNamespace(lab.namespace, argv);

/**
 * Adds a bridge (in `namespace`, or here) and sets it up; returns whether it filters VLANs. VLAN filtering
 * where the kernel has it, so that guests can be put on VLANs (the default VLAN 1 stays untagged); a kernel
 * without it gets a plain bridge, and guests asking for a VLAN cannot start there.
 */
export async function addBridge(name: string, namespace?: string): Promise<boolean> {
  const where = namespace === undefined ? [] : ["-n", namespace];
  const add = (...options: string[]) =>
    run("ip", [...where, "link", "add", name, "type", "bridge", ...options]);
  const filtering = await add("vlan_filtering", "1").then(
    () => true,
    () => false,
  );
  if (!filtering) await add();
  await run("ip", [...where, "link", "set", name, "up"]);
  return filtering;
}

function dhcpServerPid(lab: LabNetwork): Promise<number | undefined> {
  return livePid(files(lab).pid, files(lab).leases);
}

/**
 * dnsmasq as a DHCP server only: no DNS (port 0), no router or DNS server handed out (the lab routes
 * nowhere), bound to the namespace's lab0. It daemonizes; its pidfile and leases live in the state dir.
 */
async function startDhcpServer(lab: LabNetwork): Promise<void> {
  const { pid, leases, log } = files(lab);
  await inLab(lab, [
    "dnsmasq",
    "--conf-file=/dev/null",
    "--port=0",
    "--interface=lab0",
    "--bind-interfaces",
    `--dhcp-range=${lab.dhcpRange[0]},${lab.dhcpRange[1]},255.255.255.0,1h`,
    "--dhcp-option=3",
    "--dhcp-option=6",
    "--dhcp-authoritative",
    // Root keeps writing the lease file in the state directory (dnsmasq would drop to nobody).
    "--user=root",
    `--dhcp-leasefile=${leases}`,
    `--pid-file=${pid}`,
    "--log-dhcp",
    `--log-facility=${log}`,
  ]);
}
