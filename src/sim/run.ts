// Runs a scenario: builds the world, boots the nodes and creates the VMs at t=0, applies each step at its
// time, checks the invariants after every task, and returns the event log with the final state.
import { ConstraintStore } from "../adapters/etcd/constraint-store.js";
import { viewVm, type Placement, type VmSpec } from "../core/model.js";
import { applyCommand, createVm, simService } from "./commands.js";
import type { Violation } from "./invariants.js";
import { parseScenario, formatTime, type InitialState, type Scenario } from "./scenario.js";
import { World, type SimLine, type StoredEvent } from "./world.js";

/** How long a change in etcd takes to reach a watcher. */
export const WATCH_DELAY_MS = 10;

export interface SimResult {
  /** The log, one line per event, step and final state; what golden files hold. */
  lines: string[];
  events: StoredEvent[];
  violations: Violation[];
  /** The world at the end, for further checks (random schedules). */
  world: World;
}

export function simulate(source: string): Promise<SimResult> {
  return runScenario(parseScenario(source));
}

/** `programLog` gets the programs' own log lines (JSON, as havend writes them) with the simulated time. */
export async function runScenario(
  scenario: Scenario,
  options: { programLog?: (line: string) => void } = {},
): Promise<SimResult> {
  const world = new World({
    ttlSeconds: scenario.ttlSeconds,
    marginMs: scenario.marginMs,
    rules: scenario.rules,
    watchDelayMs: WATCH_DELAY_MS,
    etcdMembers: scenario.etcdMembers,
  });
  const { programLog } = options;
  // The logger stamps the wall clock; the simulated time replaces it.
  if (programLog)
    world.programLog = (line) =>
      programLog(`t=${formatTime(world.now())} ${line.replace(/^\{"time":"[^"]*",/, "{")}`);
  const service = simService(world);
  for (const node of scenario.nodes) world.addNode(node.name, { memoryMb: node.memoryMb, vcpus: node.vcpus });
  await seedRules(world, scenario);
  const specs = scenario.vms.map((vm) => createVm(world, vm));
  const given = scenario.vms.filter((vm) => vm.initial.state !== "stopped");
  for (const vm of given)
    await seedVm(
      world,
      specs.find((spec) => spec.name === vm.name)!,
      vm.initial,
    );
  // Nodes boot first (the first one elects itself), then the other VMs are created; each is a task of its
  // own, so that the programs' first steps settle in between.
  world.scheduler.at(0, () => {
    for (const node of scenario.nodes) world.powerOn(node.name);
  });
  world.scheduler.at(0, () => {
    for (const spec of specs.filter((s) => !given.some((vm) => vm.name === s.name)))
      void world.store
        .createSpec(spec)
        .then(() => world.store.appendEvent({ type: "created", vm: spec.name, reason: "created by user" }));
  });
  for (const step of scenario.steps) {
    world.scheduler.at(step.at, () => {
      const line = world.note(`>> ${step.text}`);
      void applyCommand(world, service, step.command).then((outcome) => {
        if (outcome) line.text += ` => ${outcome}`;
      });
    });
  }
  await world.scheduler.runUntil(scenario.until, () => world.invariants.check());
  const events = [...world.events].sort((a, b) => a.at - b.at || a.seq - b.seq);
  world.invariants.finish(events);
  for (const line of finalState(world)) world.note(`== ${line}`);
  const entries: SimLine[] = [
    ...world.lines,
    ...events.map((e) => ({ at: e.at, seq: e.seq, text: formatEvent(e) })),
  ];
  entries.sort((a, b) => a.at - b.at || a.seq - b.seq);
  return {
    lines: entries.map((entry) => `t=${formatTime(entry.at)} ${entry.text}`),
    events,
    violations: world.invariants.violations,
    world,
  };
}

/** What etcd holds before the run begins (nobody watches yet): constraints and node attributes. */
async function seedRules(world: World, scenario: Scenario): Promise<void> {
  const constraints = ConstraintStore.of(world.store);
  const importedAt = world.iso();
  for (const constraint of scenario.rules.constraints)
    await constraints.putConstraint({ ...constraint, importedAt });
  for (const [node, attributes] of scenario.rules.nodeAttributes)
    await constraints.putNodeAttributes({ node, attributes, importedAt });
}

/**
 * A VM that is started, running or in error when the run begins: its spec, its placement (generation 1) and,
 * for a running one, its QEMU, which the node's havend finds when it boots.
 */
async function seedVm(world: World, spec: VmSpec, initial: InitialState): Promise<void> {
  await world.store.createSpec({ ...spec, state: "started" });
  await world.store.appendEvent({ type: "created", vm: spec.name, reason: "created by user" });
  if (!("node" in initial)) return;
  const placement: Placement = {
    node: initial.node,
    generation: 1,
    restarts: 0,
    relocations: 0,
    state: initial.state === "error" ? "error" : "active",
    reason: `${initial.state === "error" ? "in error" : "running"} when the scenario began`,
    updatedAt: world.iso(),
  };
  await world.store.swapPlacement(spec.name, placement, 0);
  if (initial.state !== "running") return;
  const images = spec.disks.map((disk) => disk.image);
  world.machines.spawn(initial.node, spec.name, 1, images, "running", spec.canary);
}

function formatEvent(event: StoredEvent): string {
  const who = [event.vm && `vm=${event.vm}`, event.node && `node=${event.node}`].filter(Boolean).join(" ");
  return `${event.type}${who ? ` ${who}` : ""}: ${event.reason}`;
}

/** One line per node and per VM: what the world looks like when the scenario ends. */
function finalState(world: World): string[] {
  const { machines } = world;
  const vms = world.vmMaps();
  const leader = world.leader();
  const maintenance = new Set(
    world.etcd.data
      .peek(world.store.maintenancePrefix)
      .map((kv) => kv.key.slice(world.store.maintenancePrefix.length)),
  );
  const lines: string[] = [];
  for (const node of world.nodes.values()) {
    const facts = [
      !node.powered ? "powered off" : world.online(node.name) ? "online" : "not registered",
      node.frozen && "frozen",
      node.netCut && "cut off from etcd",
      leader === node.name && "controller",
      maintenance.has(node.name) && "maintenance",
    ].filter(Boolean);
    lines.push(`node ${node.name}: ${facts.join(", ")}`);
  }
  for (const spec of [...vms.specs.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    const placement = vms.placements.get(spec.name);
    const view = viewVm(spec, placement, vms.statuses.get(spec.name));
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
