// Runs a scenario: builds the world, boots the nodes and creates the VMs at t=0, applies each step at its
// time, checks the invariants after every task, and returns the event log with the final state.
import { viewVm } from "../core/model.js";
import { applyCommand, createVm } from "./commands.js";
import type { StoredEvent } from "./etcd.js";
import type { Violation } from "./invariants.js";
import { parseScenario, formatTime, type Scenario } from "./scenario.js";
import { World, type SimLine } from "./world.js";

/** How long a change in etcd takes to reach a watcher. */
export const WATCH_DELAY_MS = 10;

export interface SimResult {
  /** The log, one line per event, step and final state; what golden files hold. */
  lines: string[];
  events: StoredEvent[];
  violations: Violation[];
}

export function simulate(source: string): SimResult {
  return runScenario(parseScenario(source));
}

export function runScenario(scenario: Scenario): SimResult {
  const world = new World({
    ttlSeconds: scenario.ttlSeconds,
    marginMs: scenario.marginMs,
    rules: scenario.rules,
    watchDelayMs: WATCH_DELAY_MS,
  });
  for (const node of scenario.nodes) world.addNode(node.name, { memoryMb: node.memoryMb, vcpus: node.vcpus });
  world.clock.at(0, () => {
    for (const node of scenario.nodes) world.powerOn(node.name);
    for (const vm of scenario.vms) createVm(world, vm);
  });
  for (const step of scenario.steps) {
    world.clock.at(step.at, () => {
      const line = world.note(`>> ${step.text}`);
      const outcome = applyCommand(world, step.command);
      if (outcome) line.text += ` => ${outcome}`;
    });
  }
  world.clock.runUntil(scenario.until, () => world.invariants.check());
  world.invariants.finish(world.etcd.events);
  for (const line of finalState(world)) world.note(`== ${line}`);
  const entries: SimLine[] = [
    ...world.lines,
    ...world.etcd.events.map((e) => ({ at: e.at, seq: e.seq, text: formatEvent(e) })),
  ];
  entries.sort((a, b) => a.at - b.at || a.seq - b.seq);
  return {
    lines: entries.map((entry) => `t=${formatTime(entry.at)} ${entry.text}`),
    events: [...world.etcd.events].sort((a, b) => a.at - b.at || a.seq - b.seq),
    violations: world.invariants.violations,
  };
}

function formatEvent(event: StoredEvent): string {
  const who = [event.vm && `vm=${event.vm}`, event.node && `node=${event.node}`].filter(Boolean).join(" ");
  return `${event.type}${who ? ` ${who}` : ""}: ${event.reason}`;
}

/** One line per node and per VM: what the world looks like when the scenario ends. */
function finalState(world: World): string[] {
  const { etcd, machines } = world;
  const lines: string[] = [];
  for (const node of world.nodes.values()) {
    const facts = [
      !node.powered ? "powered off" : etcd.nodes.has(node.name) ? "online" : "not registered",
      node.frozen && "frozen",
      node.netCut && "cut off from etcd",
      etcd.leader?.value === node.name && "controller",
      etcd.maintenance.has(node.name) && "maintenance",
    ].filter(Boolean);
    lines.push(`node ${node.name}: ${facts.join(", ")}`);
  }
  for (const spec of [...etcd.specs.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    const placement = etcd.placements.get(spec.name);
    const view = viewVm(spec, placement, etcd.statuses.get(spec.name)?.value);
    const where = placement ? ` on ${placement.node}, generation ${placement.generation}` : "";
    const record = placement ? ` (restarts ${placement.restarts}, relocations ${placement.relocations})` : "";
    const why = placement?.state === "error" ? `: ${placement.reason}` : "";
    const moving = placement?.migration ? `, moving to ${placement.migration.to}` : "";
    const qemus = machines
      .all()
      .filter((proc) => proc.vm === spec.name)
      .map(
        (proc) =>
          `${proc.node} pid ${proc.pid} generation ${proc.generation} ${proc.mode}${machines.blocklist.has(proc.client) ? " blocklisted" : ""}`,
      );
    lines.push(
      `vm ${spec.name}: ${view.state}${where}${record}${moving}${why}; QEMU: ${qemus.length > 0 ? qemus.join(", ") : "none"}`,
    );
  }
  return lines;
}
