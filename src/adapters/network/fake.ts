// An in-memory HostNetwork for unit tests: a fixed set of bridges, and the taps plugged into them.
import type { HostNetwork } from "./port.js";

export class FakeHostNetwork implements HostNetwork {
  readonly plugged = new Map<string, { bridge: string; vlan?: number }>();

  constructor(private readonly available: string[] = []) {}

  bridges(): Promise<string[]> {
    return Promise.resolve([...this.available].sort());
  }

  plug(tap: string, bridge: string, vlan?: number): Promise<void> {
    if (!this.available.includes(bridge))
      return Promise.reject(new Error(`bridge ${bridge} does not exist on this node`));
    this.plugged.set(tap, vlan === undefined ? { bridge } : { bridge, vlan });
    return Promise.resolve();
  }
}
