// A Pacemaker 2.1 CIB of one of Haven's scheduling problems: the same nodes (attributes, standby, offline,
// capacity as utilization), guests as Dummy resources (priority, stickiness, target-role, utilization), the
// same constraints, and a status section in which each running guest has a successful start on its node.
// crm_simulate reads it and says what Pacemaker would do.
import { parseRule, type RuleExpression } from "../../src/core/scheduler/rules.js";
import { formatScore } from "../../src/core/scheduler/scores.js";
import {
  DEFAULT_PLACEMENT_STRATEGY,
  type Constraint,
  type SchedConfig,
  type SchedState,
} from "../../src/core/scheduler/types.js";

export const escapeXml = (text: string) =>
  text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

const attrs = (values: Record<string, string | number | undefined>) =>
  Object.entries(values)
    .filter(([, value]) => value !== undefined)
    .map(([name, value]) => ` ${name}="${escapeXml(String(value))}"`)
    .join("");

const nvpairs = (prefix: string, values: Record<string, string | number>) =>
  Object.entries(values)
    .map(([name, value]) => `<nvpair${attrs({ id: `${prefix}-${name}`, name, value })}/>`)
    .join("");

/** The digest Pacemaker 2.1.5 records for a Dummy resource without parameters (so nothing is restarted). */
const DUMMY_DIGEST = "f2317cad3d54cec5d7d7aa7d0bf35cf8";
const TRANSITION_KEY = "2:-1:0:00000000-0000-0000-0000-000000000000";

export interface CibOptions {
  /** Guests as VirtualDomain resources naming this libvirt file (for Haven's import), not Dummy. */
  configOf?: (vm: string) => string;
}

export function cibOf(config: SchedConfig, state: SchedState, options: CibOptions = {}): string {
  const out: string[] = [];
  out.push(
    `<cib crm_feature_set="3.16.1" validate-with="pacemaker-3.9" epoch="1" num_updates="0" admin_epoch="0" have-quorum="1" dc-uuid="1">`,
    `<configuration><crm_config><cluster_property_set id="cib-options">`,
    nvpairs("cib-options", {
      "stonith-enabled": "false",
      "enable-startup-probes": "false",
      "placement-strategy": config.placementStrategy ?? DEFAULT_PLACEMENT_STRATEGY,
    }),
    `</cluster_property_set></crm_config><nodes>`,
  );
  state.nodes.forEach((node, position) => {
    const attributes = { ...node.attributes, ...(node.standby ? { standby: "on" } : {}) };
    out.push(
      `<node${attrs({ id: position + 1, uname: node.name })}>`,
      `<instance_attributes id="${node.name}-attributes">${nvpairs(node.name, attributes)}</instance_attributes>`,
      `<utilization id="${node.name}-utilization">`,
      nvpairs(`${node.name}-utilization`, { cpu: node.capacity.vcpus, memory: node.capacity.memoryMb }),
      `</utilization></node>`,
    );
  });
  out.push(`</nodes><resources>`);
  // Pacemaker assigns resources of equal priority in the order of the CIB; Haven by name.
  for (const vm of [...config.vms].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const meta: Record<string, string | number> = {
      priority: vm.priority,
      "resource-stickiness": formatScore(vm.stickiness),
      "allow-migrate": String(vm.allowMigrate),
    };
    if (vm.state === "stopped") meta["target-role"] = "Stopped";
    const type = options.configOf ? "VirtualDomain" : "Dummy";
    const params: Record<string, string> = options.configOf ? { config: options.configOf(vm.name) } : {};
    out.push(
      `<primitive id="${vm.name}" class="ocf" provider="heartbeat" type="${type}">`,
      `<instance_attributes id="${vm.name}-params">${nvpairs(`${vm.name}-params`, params)}</instance_attributes>`,
      `<meta_attributes id="${vm.name}-meta">${nvpairs(`${vm.name}-meta`, meta)}</meta_attributes>`,
      `<utilization id="${vm.name}-utilization">`,
      nvpairs(`${vm.name}-utilization`, { cpu: vm.vcpus, memory: vm.memoryMb }),
      `</utilization></primitive>`,
    );
  }
  out.push(`</resources><constraints>`);
  for (const constraint of config.constraints) out.push(constraintXml(constraint));
  out.push(`</constraints></configuration><status>`);
  state.nodes.forEach((node, position) => out.push(nodeState(node.name, node.online, position + 1, state)));
  out.push(`</status></cib>`);
  return out.join("\n");
}

export function constraintXml(constraint: Constraint): string {
  switch (constraint.type) {
    case "location":
      return `<rsc_location${attrs({ id: constraint.id, rsc: constraint.vm, node: constraint.node, score: formatScore(constraint.score) })}/>`;
    case "location-rule": {
      const parsed = parseRule(constraint.rule);
      if (!parsed.ok) throw new Error(parsed.error);
      const rule = ruleXml(parsed.rule, `${constraint.id}-rule`, formatScore(constraint.score));
      return `<rsc_location${attrs({ id: constraint.id, rsc: constraint.vm })}>${rule}</rsc_location>`;
    }
    case "colocation":
      return `<rsc_colocation${attrs({ id: constraint.id, rsc: constraint.vm, "with-rsc": constraint.withVm, score: formatScore(constraint.score) })}/>`;
    case "colocation-set": {
      const refs = constraint.vms.map((vm) => `<resource_ref id="${vm}"/>`).join("");
      const set = `<resource_set id="${constraint.id}-set">${refs}</resource_set>`;
      return `<rsc_colocation${attrs({ id: constraint.id, score: formatScore(constraint.score) })}>${set}</rsc_colocation>`;
    }
    case "order": {
      const kind = constraint.kind === "mandatory" ? "Mandatory" : "Optional";
      return `<rsc_order${attrs({ id: constraint.id, first: constraint.first, then: constraint.then, kind })}/>`;
    }
  }
}

/** Haven's one-line rule as Pacemaker's XML: one boolean-op per rule, nested rules for the rest. */
function ruleXml(rule: RuleExpression, id: string, score?: string): string {
  const operands = rule.kind === "and" || rule.kind === "or" ? rule.operands : [rule];
  const op = rule.kind === "or" ? "or" : "and";
  const children = operands.map((operand, position): string => {
    const childId = `${id}-${position + 1}`;
    switch (operand.kind) {
      case "and":
      case "or":
        return ruleXml(operand, childId);
      case "compare": {
        const { attribute, comparison, value, valueType } = operand;
        return `<expression${attrs({ id: childId, attribute, operation: comparison, value, type: valueType })}/>`;
      }
      case "defined":
      case "not_defined":
        return `<expression${attrs({ id: childId, attribute: operand.attribute, operation: operand.kind })}/>`;
    }
  });
  return `<rule${attrs({ id, score, "boolean-op": op })}>${children.join("")}</rule>`;
}

function nodeState(name: string, online: boolean, id: number, state: SchedState): string {
  const membership = online
    ? 'in_ccm="true" crmd="online" join="member" expected="member"'
    : 'in_ccm="false" crmd="offline" join="down" expected="down"';
  const resources: string[] = [];
  for (const [vm, runtime] of state.vms) {
    if (runtime.node !== name || !runtime.running) continue;
    resources.push(
      `<lrm_resource id="${vm}" type="Dummy" class="ocf" provider="heartbeat"><lrm_rsc_op id="${vm}_last_0" operation_key="${vm}_start_0" ` +
        `operation="start" crm-debug-origin="haven" crm_feature_set="3.16.1" transition-key="${TRANSITION_KEY}" transition-magic="0:0;${TRANSITION_KEY}" ` +
        `exit-reason="" call-id="2" rc-code="0" op-status="0" interval="0" last-rc-change="1700000000" exec-time="0" queue-time="0" op-digest="${DUMMY_DIGEST}"/></lrm_resource>`,
    );
  }
  return `<node_state id="${id}" uname="${name}" ${membership}><lrm id="${id}"><lrm_resources>${resources.join("")}</lrm_resources></lrm></node_state>`;
}
