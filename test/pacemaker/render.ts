// A scenario as a user would bring it to Haven: a crm configuration (or the same as CIB XML) whose guests are
// VirtualDomain resources, and the libvirt domain each names (its memory and vCPUs, one RBD disk). The same
// scenario as a CIB for crm_simulate is cib.ts's.
import { formatScore } from "../../src/core/scheduler/scores.js";
import type { Constraint } from "../../src/core/scheduler/types.js";
import { cibOf } from "./cib.js";
import type { Scenario } from "./scenario.js";

export const domainPath = (vm: string) => `/guests/${vm}.xml`;
export const diskOf = (vm: string) => `${vm}-disk`;

export function domainsOf(scenario: Scenario, kernel: string): Record<string, string> {
  return Object.fromEntries(
    scenario.vms.map((vm) => [
      domainPath(vm.name),
      `<domain type='kvm'><name>${vm.name}</name><memory unit='MiB'>${vm.memoryMb}</memory><vcpu>${vm.vcpus}</vcpu>` +
        `<os><type>hvm</type><kernel>${kernel}</kernel></os><devices><disk type='network' device='disk'>` +
        `<source protocol='rbd' name='rbd/${diskOf(vm.name)}'/><target dev='vda' bus='virtio'/></disk></devices></domain>`,
    ]),
  );
}

export function crmOf(scenario: Scenario): string {
  const lines: string[] = [];
  for (const node of scenario.nodes) {
    const attributes = { ...node.attributes, ...(node.standby ? { standby: "on" } : {}) };
    const pairs = Object.entries(attributes).map(([name, value]) => `${name}=${value}`);
    lines.push(`node ${node.name}${pairs.length > 0 ? ` attributes ${pairs.join(" ")}` : ""}`);
  }
  for (const vm of scenario.vms) {
    const meta = [
      `priority=${vm.priority}`,
      `resource-stickiness=${formatScore(vm.stickiness)}`,
      `allow-migrate=${vm.allowMigrate}`,
      ...(vm.state === "stopped" ? ["target-role=Stopped"] : []),
    ];
    lines.push(
      `primitive ${vm.name} ocf:heartbeat:VirtualDomain params config=${domainPath(vm.name)} meta ${meta.join(" ")}`,
    );
  }
  for (const constraint of scenario.constraints) lines.push(crmConstraint(constraint));
  lines.push(`property cib-bootstrap-options: placement-strategy=${scenario.strategy}`);
  return lines.join("\n") + "\n";
}

function crmConstraint(constraint: Constraint): string {
  const score = (value: number) => formatScore(value).replace("INFINITY", "inf");
  switch (constraint.type) {
    case "location":
      return `location ${constraint.id} ${constraint.vm} ${score(constraint.score)}: ${constraint.node}`;
    case "location-rule":
      return `location ${constraint.id} ${constraint.vm} rule ${score(constraint.score)}: ${constraint.rule}`;
    case "colocation":
      return `colocation ${constraint.id} ${score(constraint.score)}: ${constraint.vm} ${constraint.withVm}`;
    case "colocation-set":
      return `colocation ${constraint.id} ${score(constraint.score)}: ${constraint.vms.join(" ")}`;
    case "order":
      return `order ${constraint.id} ${constraint.kind === "mandatory" ? "Mandatory" : "Optional"}: ${constraint.first} ${constraint.then}`;
  }
}

/** The scenario as a CIB that `haven import cib` reads: VirtualDomain primitives naming their domains. */
export function importableCibOf(scenario: Scenario): string {
  return cibOf(configOf(scenario), stateOf(scenario), { configOf: domainPath });
}

export const configOf = (scenario: Scenario) => ({
  vms: scenario.vms,
  constraints: scenario.constraints,
  placementStrategy: scenario.strategy,
});

export const stateOf = (scenario: Scenario) => ({
  nodes: scenario.nodes,
  vms: new Map(
    [...scenario.running].map(([vm, node]) => [vm, { node, running: true, failures: [] }] as const),
  ),
  nowMs: 0,
});
