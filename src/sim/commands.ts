// A scenario step applied to the world: user requests go through the API service (src/api/service.ts) over
// the API's etcd client, faults change the machines and the nodes. Returns a line for the log when the step
// did not simply happen (a refusal, nothing to act on).
import { ConstraintStore } from "../adapters/etcd/constraint-store.js";
import { EtcdUnavailableError } from "../adapters/etcd/port.js";
import { HavenService } from "../api/service.js";
import { HavenError } from "../core/errors.js";
import { viewVm, type VmSpec } from "../core/model.js";
import { simStorage } from "./adapters.js";
import type { ScenarioVm, SimCommand } from "./scenario.js";
import type { World } from "./world.js";

export function createVm(world: World, vm: ScenarioVm): VmSpec {
  const spec: VmSpec = {
    name: vm.name,
    state: "stopped",
    memoryMb: vm.memoryMb,
    vcpus: vm.vcpus,
    kernel: "/var/lib/haven/guest/vmlinuz",
    disks: Array.from({ length: vm.disks }, (_, i) => ({ image: `${vm.name}-disk${i}` })),
    canary: vm.canary,
    ha: vm.ha,
    restartLimit: vm.restartLimit,
    relocateLimit: vm.relocateLimit,
    failureTimeoutSeconds: vm.failureTimeoutSeconds,
    priority: vm.priority,
    stickiness: vm.stickiness,
    allowMigrate: vm.allowMigrate,
    stopGraceSeconds: 30,
    createdAt: world.iso(),
  };
  world.setTiming(vm.name, vm.timing);
  if (vm.canary) world.setCanary(vm.name);
  return spec;
}

/** The API service of the simulated cluster: migration requests are numbered m1, m2, … */
export function simService(world: World): HavenService {
  let requests = 0;
  const storage = simStorage(world, "api");
  // VMs are made by the scenario itself (createVm above), so the service never builds one.
  const unused = (what: string) => () => Promise.reject(new Error(`${what} is not simulated`));
  const options = {
    name: "sim",
    guestDir: "/sim",
    capabilities: unused("QEMU's capabilities"),
    writeSeed: unused("cloud-init seeds"),
  };
  return new HavenService(world.store, storage, options, () => `m${++requests}`);
}

export async function applyCommand(
  world: World,
  service: HavenService,
  command: SimCommand,
): Promise<string | undefined> {
  try {
    return await apply(world, service, command);
  } catch (err) {
    if (err instanceof HavenError) return `refused: ${err.message}`;
    if (err instanceof EtcdUnavailableError) return `failed: ${err.message}`;
    throw err;
  }
}

async function apply(world: World, service: HavenService, command: SimCommand): Promise<string | undefined> {
  const { store } = world;
  switch (command.type) {
    case "start":
    case "stop": {
      const state = command.type === "start" ? "started" : "stopped";
      const before = (await store.getSpec(command.vm))?.value.state;
      if (before === state) return `VM ${command.vm} is already ${state}`;
      await service.setDesiredState(command.vm, state);
      return undefined;
    }
    case "set":
      await service.updateVm(
        command.vm,
        Object.fromEntries(command.changes.map(({ key, value }) => [key, value])),
      );
      return undefined;
    case "migrate":
      await service.requestMigration(command.vm, {
        to: command.to,
        settings: { timeoutSeconds: command.timeoutSeconds, transport: command.transport },
      });
      return undefined;
    case "migration-cancel":
      await service.cancelMigration(command.vm);
      return undefined;
    case "maintenance":
      await service.setMaintenance(command.node, command.on);
      return undefined;
    case "migration-defaults":
      await service.setMigrationDefaults(command.changes);
      return undefined;
    case "constraint":
      await service.addConstraint(command.constraint);
      return undefined;
    case "constraint-delete":
      await service.deleteConstraint(command.id);
      return undefined;
    case "attribute": {
      const constraints = ConstraintStore.of(store);
      const known = await constraints.getNodeAttributes(command.node);
      const attributes = { ...known?.attributes, ...command.attributes };
      await constraints.putNodeAttributes({ node: command.node, attributes, importedAt: world.iso() });
      return undefined;
    }
    case "fence-agent": {
      if (!command.behaviour) {
        await service.clearFenceAgent(command.node);
        return undefined;
      }
      // As `haven fence agent set` records it (the API also checks that the command exists on its node).
      const agent = { command: ["fence_sim", command.node], timeoutSeconds: command.timeoutSeconds };
      await store.putFenceAgent(command.node, agent);
      world.node(command.node).fence = command.behaviour;
      await store.appendEvent({
        type: "fence-agent-set",
        node: command.node,
        reason: `by user: '${agent.command.join(" ")}', timeout ${agent.timeoutSeconds} s`,
      });
      return undefined;
    }
    case "show": {
      const vms = world.vmMaps();
      const spec = vms.specs.get(command.vm)!;
      return showLine(viewVm(spec, vms.placements.get(command.vm), vms.statuses.get(command.vm)));
    }
    default:
      return applyFault(world, command);
  }
}

/** What `haven vm show` says, in one line. */
function showLine(view: ReturnType<typeof viewVm>): string {
  const facts = [
    view.node && `on ${view.node}`,
    view.generation !== null && `generation ${view.generation}`,
    view.pid !== null && `pid ${view.pid}`,
    `rbd clients ${view.rbdClients.length > 0 ? view.rbdClients.join(" ") : "none"}`,
    view.canary && `last ack ${view.lastAck ?? "none"}`,
  ].filter(Boolean);
  return `${view.state} ${facts.join(", ")}`;
}

/** Faults: what happens to machines, networks, processes and etcd, not through Haven. */
function applyFault(world: World, command: SimCommand): string | undefined {
  const { machines } = world;
  if ("node" in command && command.node === "leader") {
    const leader = world.leader();
    if (!leader) return "nothing to act on: no node leads";
    const outcome = applyFault(world, { ...command, node: leader });
    return `the leader is ${leader}${outcome ? `; ${outcome}` : ""}`;
  }
  switch (command.type) {
    case "storage-fence":
      machines.fenceError = command.ok ? undefined : command.message;
      return undefined;
    case "fence-result":
      world.node(command.node).fence = command.behaviour;
      return undefined;
    case "power-off":
      world.powerOff(command.node);
      return undefined;
    case "power-on":
      world.powerOn(command.node);
      return undefined;
    case "net-cut":
    case "net-restore":
      world.setNetCut(command.node, command.type === "net-cut");
      return undefined;
    case "freeze":
      world.freeze(command.node);
      return undefined;
    case "shutdown":
      return world.shutdown(command.node) ? undefined : `nothing to shut down: ${command.node} is off`;
    case "reboot":
      if (!world.shutdown(command.node)) return `nothing to reboot: ${command.node} is off`;
      world.scheduler.after(command.downMs, () => world.powerOn(command.node));
      return undefined;
    case "havend-kill":
      return world.killHavend(command.node)
        ? undefined
        : `nothing to kill: no havend runs on ${command.node}`;
    case "havend-start":
      return world.startHavend(command.node)
        ? undefined
        : `nothing to start: ${command.node} is off or its havend runs`;
    case "etcd-kill":
    case "etcd-start":
      world.etcd.setMemberDown(command.member, command.type === "etcd-kill");
      return undefined;
    case "fail-stop":
      world.failStops(command.vm, command.times, command.message, command.node);
      return undefined;
    case "thaw":
      world.thaw(command.node);
      return undefined;
    case "etcd-slow":
      for (const node of world.nodes.values())
        if (command.node === null || node.name === command.node) node.keepAliveLatencyMs = command.latencyMs;
      return undefined;
    case "quorum-loss":
    case "quorum-back":
      world.etcd.setQuorumLost(command.type === "quorum-loss");
      return undefined;
    case "crash": {
      const placed = world.vmMaps().placements.get(command.vm)?.node;
      const proc = command.node
        ? machines.proc(command.node, command.vm)
        : (machines.proc(placed ?? "", command.vm) ?? machines.all().find((p) => p.vm === command.vm));
      if (!proc)
        return `nothing to crash: no QEMU of ${command.vm} runs${command.node ? ` on ${command.node}` : ""}`;
      machines.exit(proc, "crash");
      return `killed QEMU pid ${proc.pid} on ${proc.node}`;
    }
    case "fail-start":
      world.failStarts(command.vm, command.times, command.message, command.node);
      return undefined;
    case "migration-fail": {
      const transfer = machines
        .all()
        .find((p) => p.vm === command.vm && p.sending?.status === "active")?.sending;
      if (transfer) machines.failTransfer(transfer, command.message);
      machines.failNextTransfers(command.vm, command.times - (transfer ? 1 : 0), command.message);
      return transfer || command.times > 1
        ? undefined
        : `nothing to fail: no migration stream of ${command.vm} is under way`;
    }
    case "kill-target":
    case "kill-source": {
      const migration = world.vmMaps().placements.get(command.vm)?.migration;
      if (!migration) return `nothing to kill: VM ${command.vm} is not moving`;
      const node = command.type === "kill-target" ? migration.to : migration.from;
      world.powerOff(node);
      return `powered off ${node}`;
    }
    default:
      throw new Error(`unhandled command ${command.type}`);
  }
}
