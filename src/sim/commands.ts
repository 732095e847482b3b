// A scenario step applied to the world: user requests go through the checks and events of the API service
// (src/api/service.ts), faults change the machines. Returns a line for the log when the step did not simply
// happen (a refusal, nothing to act on).
import { describeConstraint } from "../adapters/etcd/constraint-store.js";
import { migrationSettingsOf, type VmSpec } from "../core/model.js";
import { orderRefusal } from "../core/scheduler/prepare.js";
import { formatScore } from "../core/scheduler/scores.js";
import type { Constraint } from "../core/scheduler/types.js";
import { isEtcdError } from "./etcd.js";
import type { ScenarioConstraint, ScenarioVm, SimCommand } from "./scenario.js";
import type { World } from "./world.js";

export function createVm(world: World, vm: ScenarioVm): void {
  const spec: VmSpec = {
    name: vm.name,
    state: "stopped",
    memoryMb: vm.memoryMb,
    vcpus: vm.vcpus,
    kernel: "/var/lib/haven/guest/vmlinuz",
    disks: Array.from({ length: vm.disks }, (_, i) => ({ image: `${vm.name}-disk${i}` })),
    canary: false,
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
  world.etcd.putSpec(null, spec);
  world.etcd.appendEvent(null, { type: "created", vm: vm.name, reason: "created by user" });
}

export function applyCommand(world: World, command: SimCommand): string | undefined {
  try {
    return apply(world, command);
  } catch (err) {
    if (isEtcdError(err)) return `failed: ${err.message}`;
    if (err instanceof Refused) return `refused: ${err.message}`;
    throw err;
  }
}

class Refused extends Error {}

function apply(world: World, command: SimCommand): string | undefined {
  const { etcd, machines } = world;
  switch (command.type) {
    case "start":
    case "stop": {
      const spec = requireSpec(world, command.vm);
      const state = command.type === "start" ? "started" : "stopped";
      if (spec.state === state) return `VM ${spec.name} is already ${state}`;
      etcd.putSpec(null, { ...spec, state });
      etcd.appendEvent(null, { type: `${command.type}-requested`, vm: spec.name, reason: "by user" });
      return undefined;
    }
    case "set": {
      const spec = requireSpec(world, command.vm);
      const next: VmSpec = command.changes.reduce<VmSpec>(
        (acc, { key, value }) => ({ ...acc, [key]: value }),
        spec,
      );
      etcd.putSpec(null, next);
      const changes = command.changes.map(({ key, value }) => `${key}=${String(value)}`);
      etcd.appendEvent(null, { type: "changed", vm: spec.name, reason: `by user: ${changes.join(", ")}` });
      return undefined;
    }
    case "migrate":
      return requestMigration(world, command);
    case "migration-cancel": {
      const spec = requireSpec(world, command.vm);
      etcd.check(null, "cancel migration");
      const migration = etcd.placements.get(spec.name)?.migration;
      if (!migration) throw new Refused(`VM ${spec.name} is not moving`);
      const request = {
        id: migration.id,
        settings: migration.settings,
        cancel: true,
        reason: "cancelled by user",
        time: world.iso(),
      };
      etcd.putRequest(null, spec.name, request, true);
      etcd.appendEvent(null, { type: "migration-cancel-requested", vm: spec.name, reason: "by user" });
      return undefined;
    }
    case "maintenance": {
      etcd.check(null, "maintenance");
      const current = etcd.maintenance.has(command.node);
      if (command.on && !current) {
        if (!etcd.nodes.has(command.node)) throw new Refused(`node ${command.node} is not online`);
        etcd.setMaintenance(null, command.node, { since: world.iso(), reason: "by user" });
        etcd.appendEvent(null, {
          type: "maintenance-on",
          node: command.node,
          reason: "by user: its guests move away, and it takes no new ones",
        });
      }
      if (!command.on && current) {
        etcd.setMaintenance(null, command.node, null);
        etcd.appendEvent(null, {
          type: "maintenance-off",
          node: command.node,
          reason: "by user: it takes guests again",
        });
      }
      return undefined;
    }
    case "migration-defaults": {
      etcd.setMigrationDefaults(null, { ...etcd.migrationDefaults, ...command.changes });
      const changes = Object.entries(command.changes).map(([key, value]) => `${key}=${String(value)}`);
      etcd.appendEvent(null, {
        type: "migration-defaults-changed",
        reason: `by user: ${changes.join(", ")}`,
      });
      return undefined;
    }
    case "constraint":
      return addConstraint(world, command.constraint);
    case "constraint-delete": {
      etcd.check(null, "constraint");
      const existing = etcd.constraints.get(command.id);
      if (!existing) throw new Refused(`constraint ${command.id} does not exist`);
      etcd.deleteConstraint(null, command.id);
      etcd.appendEvent(null, { type: "constraint-deleted", reason: `by user: ${describe(existing)}` });
      return undefined;
    }
    case "attribute": {
      etcd.check(null, "node attributes");
      const attributes = { ...etcd.nodeAttributes.get(command.node), ...command.attributes };
      etcd.setNodeAttributes(null, command.node, attributes);
      return undefined;
    }
    case "fence-agent": {
      if (!command.behaviour) {
        etcd.check(null, "fence agent");
        if (!etcd.fenceAgents.has(command.node)) throw new Refused(`node ${command.node} has no fence agent`);
        etcd.setFenceAgent(null, command.node, null);
        etcd.appendEvent(null, { type: "fence-agent-cleared", node: command.node, reason: "by user" });
        return undefined;
      }
      const agent = { command: ["fence_sim", command.node], timeoutSeconds: command.timeoutSeconds };
      etcd.setFenceAgent(null, command.node, agent);
      world.node(command.node).fence = command.behaviour;
      etcd.appendEvent(null, {
        type: "fence-agent-set",
        node: command.node,
        reason: `by user: '${agent.command.join(" ")}', timeout ${agent.timeoutSeconds} s`,
      });
      return undefined;
    }
    case "fence-result":
      world.node(command.node).fence = command.behaviour;
      return undefined;
    case "storage-fence":
      machines.fenceError = command.ok ? undefined : command.message;
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
    case "thaw":
      world.thaw(command.node);
      return undefined;
    case "etcd-slow":
      for (const node of world.nodes.values())
        if (command.node === null || node.name === command.node) node.keepAliveLatencyMs = command.latencyMs;
      return undefined;
    case "quorum-loss":
    case "quorum-back":
      etcd.setQuorum(command.type === "quorum-back");
      return undefined;
    case "crash": {
      const proc = command.node
        ? machines.proc(command.node, command.vm)
        : (machines.proc(etcd.placements.get(command.vm)?.node ?? "", command.vm) ??
          machines.all().find((p) => p.vm === command.vm));
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
      if (!transfer) return `nothing to fail: no migration stream of ${command.vm} is under way`;
      machines.failTransfer(transfer, command.message);
      return undefined;
    }
    case "kill-target":
    case "kill-source": {
      const migration = etcd.placements.get(command.vm)?.migration;
      if (!migration) return `nothing to kill: VM ${command.vm} is not moving`;
      const node = command.type === "kill-target" ? migration.to : migration.from;
      world.powerOff(node);
      return `powered off ${node}`;
    }
  }
}

/** HavenService.addConstraint: a known id is refused, not replaced, and so is an order cycle. */
function addConstraint(world: World, constraint: ScenarioConstraint): undefined {
  const { etcd } = world;
  etcd.check(null, "constraint");
  if (etcd.constraints.has(constraint.id))
    throw new Refused(
      `constraint ${constraint.id} exists; delete it first ('haven constraint delete ${constraint.id}')`,
    );
  for (const vm of constraint.type === "order" ? [constraint.first, constraint.then] : [constraint.vm])
    requireSpec(world, vm);
  if (constraint.type === "colocation") requireSpec(world, constraint.withVm);
  if (constraint.type === "order") {
    const recorded = [...etcd.constraints.values()].filter((c) => c.type === "order");
    const refusal = orderRefusal(constraint, recorded);
    if (refusal) throw new Refused(refusal);
  }
  etcd.putConstraint(null, constraint);
  etcd.appendEvent(null, {
    type: "constraint-added",
    vm: constraint.type === "order" ? constraint.then : constraint.vm,
    reason: `by user: ${describe(constraint)}`,
  });
  return undefined;
}

/** The API's wording for a constraint in events (no command writes colocation sets; they get a plain one). */
function describe(constraint: Constraint): string {
  if (constraint.type === "colocation-set")
    return `${constraint.vms.join(", ")} together: ${formatScore(constraint.score)}`;
  return describeConstraint({ ...constraint, importedAt: "" });
}

function requireSpec(world: World, vm: string): VmSpec {
  world.etcd.check(null, "read spec");
  const spec = world.etcd.specs.get(vm);
  if (!spec) throw new Refused(`VM ${vm} does not exist`);
  return spec;
}

/** HavenService.requestMigration: the checks that answer at once; the controller checks again. */
function requestMigration(
  world: World,
  command: Extract<SimCommand, { type: "migrate" }>,
): string | undefined {
  const { etcd } = world;
  const spec = requireSpec(world, command.vm);
  const name = spec.name;
  const placement = etcd.placements.get(name);
  const status = etcd.statuses.get(name)?.value;
  if (spec.state !== "started" || !placement || status?.state !== "running" || status.node !== placement.node)
    throw new Refused(`VM ${name} is not running${status ? ` (it is ${status.state})` : ""}`);
  if (placement.migration)
    throw new Refused(
      `VM ${name} is already moving to ${placement.migration.to}; cancel it with 'haven vm migrate --cancel ${name}'`,
    );
  if (command.to !== undefined) {
    if (command.to === placement.node) throw new Refused(`VM ${name} already runs on ${command.to}`);
    if (!etcd.nodes.has(command.to)) throw new Refused(`node ${command.to} is not online`);
    if (etcd.maintenance.has(command.to)) throw new Refused(`node ${command.to} is in maintenance`);
  }
  const settings = migrationSettingsOf(etcd.migrationDefaults);
  const id = world.nextRequestId();
  const recorded = etcd.putRequest(
    null,
    name,
    {
      id,
      to: command.to,
      settings: {
        ...settings,
        ...(command.timeoutSeconds !== undefined ? { timeoutSeconds: command.timeoutSeconds } : {}),
        ...(command.transport !== undefined ? { transport: command.transport } : {}),
      },
      cancel: false,
      reason: "by user",
      time: world.iso(),
    },
    false,
  );
  if (!recorded) throw new Refused(`a migration request for VM ${name} is already pending`);
  etcd.appendEvent(null, {
    type: "migration-requested",
    vm: name,
    reason: `by user, to ${command.to ?? "a node the controller picks"} (request ${id})`,
  });
  return undefined;
}
