// The host-network port: which bridges a node offers to guests, and plugging a guest's tap device into one.
// The Linux implementation drives `ip` and `bridge`; the fake records what was asked.

export interface HostNetwork {
  /** Bridges on this host that guests' network cards can be plugged into, sorted. */
  bridges(): Promise<string[]>;
  /**
   * Makes `tap` a port of `bridge` and brings it up; with `vlan`, an untagged member of that VLAN only (the
   * bridge must filter VLANs). Throws, naming the bridge, when it does not exist.
   */
  plug(tap: string, bridge: string, vlan?: number): Promise<void>;
}
