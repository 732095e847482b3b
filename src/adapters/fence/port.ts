// External fence agents: a command per node that powers the node off (IPMI, a PDU, a hypervisor API),
// for hardware where storage fencing alone is not wanted. Exit status 0 means the node is off.
import type { FenceAgent } from "../../core/model.js";

export interface FenceOutcome {
  ok: boolean;
  /** One line for events: how the command ended, and the tail of its output. */
  summary: string;
  durationMs: number;
}

export interface FenceAgentRunner {
  /** Runs `agent` against `node`; never rejects, a failure is an outcome with ok false. */
  run(node: string, agent: FenceAgent): Promise<FenceOutcome>;
}
