// HostNetwork on Linux: bridges are the interfaces with a /sys/class/net/NAME/bridge directory; taps are
// plugged with iproute2 (`ip link`, `bridge vlan`).
import { readdir, readFile } from "node:fs/promises";
import { run } from "../../lib/command.js";
import type { HostNetwork } from "./port.js";

const SYS_NET = "/sys/class/net";

export class LinuxHostNetwork implements HostNetwork {
  async bridges(): Promise<string[]> {
    const names = await readdir(SYS_NET).catch(() => []);
    const bridges = await Promise.all(names.map(async (name) => ((await isBridge(name)) ? name : undefined)));
    return bridges.filter((name): name is string => name !== undefined).sort();
  }

  async plug(tap: string, bridge: string, vlan?: number): Promise<void> {
    if (!(await isBridge(bridge))) throw new Error(`bridge ${bridge} does not exist on this node`);
    // A kernel built without VLAN filtering has no such file.
    const filtering = await readFile(`${SYS_NET}/${bridge}/bridge/vlan_filtering`, "utf8").catch(() => "0");
    if (vlan !== undefined && filtering.trim() !== "1")
      throw new Error(
        `bridge ${bridge} does not filter VLANs, so it cannot put a guest on VLAN ${vlan} ('ip link set ${bridge} type bridge vlan_filtering 1')`,
      );
    await run("ip", ["link", "set", "dev", tap, "master", bridge]);
    if (vlan !== undefined) {
      // A new port joins the bridge's default VLAN (1): the guest belongs to its own VLAN only.
      await run("bridge", ["vlan", "del", "dev", tap, "vid", "1"]).catch(() => undefined);
      await run("bridge", ["vlan", "add", "dev", tap, "vid", String(vlan), "pvid", "untagged"]);
    }
    await run("ip", ["link", "set", "dev", tap, "up"]);
  }
}

async function isBridge(name: string): Promise<boolean> {
  return readdir(`${SYS_NET}/${name}/bridge`).then(
    () => true,
    () => false,
  );
}
