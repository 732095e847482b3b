// The constraints of an import: crm location, colocation and order items, checked against the imported VMs
// and the known nodes, and written in the shapes of the scheduler's constraint input (type, id, vm, node,
// withVm, first/then, numeric scores, rule text; see src/core/scheduler/types.ts), plus the crm line.
// Mandatory constraints that contradict each other are reported by one pass over the constraints each
// (union-find for colocations, a depth-first search for order cycles): nothing iterates to a fixpoint.
import { evaluateRule, parseRule, quoted } from "../scheduler/rules.js";
import { colocationPairs, INFINITY_SCORE, orderPairs, type AttributeMap, type CrmItem } from "./crm.js";
import type { Located, RuleCondition, RuleExpression } from "./crm.js";

export type ImportedConstraint =
  | { type: "location"; id: string; vm: string; node: string; score: number; line: number }
  | { type: "location-rule"; id: string; vm: string; rule: string; score: number; line: number }
  /** `vm` is placed relative to `withVm` (Pacemaker's rsc / with-rsc). */
  | { type: "colocation"; id: string; vm: string; withVm: string; score: number; line: number }
  /** A negative set of three or more: each VM keeps away from every VM before it. */
  | { type: "colocation-set"; id: string; vms: string[]; score: number; line: number }
  /** `then` starts after `first`. */
  | { type: "order"; id: string; first: string; then: string; kind: "mandatory" | "optional"; line: number };

/**
 * Where a finding is: a crm item, a token, or a translated constraint (its line; column 1), in the crm file
 * unless `source` names another file.
 */
export type Place = { line: number; column?: number; source?: string };

export interface Reporter {
  error(at: Place, message: string): void;
  warning(at: Place, message: string): void;
}

export interface ConstraintScope {
  vms: ReadonlySet<string>;
  /** Resources defined in the configuration but not imported, with the reason. */
  notImported: ReadonlyMap<string, string>;
  /** Known nodes with their attributes; when empty, node references cannot be checked. */
  nodes: ReadonlyMap<string, AttributeMap>;
}

type ConstraintItem = Extract<CrmItem, { kind: "location" | "location-rule" | "colocation" | "order" }>;

export function translateConstraints(
  items: CrmItem[],
  scope: ConstraintScope,
  report: Reporter,
): ImportedConstraint[] {
  const translator = new ConstraintTranslator(scope, report);
  const constraints = items.flatMap((item) => translator.translate(item));
  checkLocations(constraints, scope, report);
  checkColocations(constraints, report);
  checkOrderCycles(constraints, report);
  return constraints;
}

class ConstraintTranslator {
  constructor(
    private readonly scope: ConstraintScope,
    private readonly report: Reporter,
  ) {}

  translate(item: CrmItem): ImportedConstraint[] {
    if (item.kind === "location") return this.location(item);
    if (item.kind === "location-rule") return this.locationRules(item);
    if (item.kind === "colocation") return this.colocation(item);
    if (item.kind === "order") return this.order(item);
    return [];
  }

  private location(item: Extract<CrmItem, { kind: "location" }>): ImportedConstraint[] {
    if (!this.resolve(item, [item.rsc]) || !this.locationOptions(item) || !this.knownNode(item, item.node)) {
      return [];
    }
    return [
      { type: "location", id: item.id, vm: item.rsc, node: item.node, score: item.score, line: item.line },
    ];
  }

  private locationRules(item: Extract<CrmItem, { kind: "location-rule" }>): ImportedConstraint[] {
    if (!this.resolve(item, [item.rsc]) || !this.locationOptions(item)) return [];
    // Pacemaker adds the score of every rule that holds, so several rules are several constraints.
    return item.rules.flatMap((rule, index) => {
      const id = index === 0 ? item.id : `${item.id}-${index + 1}`;
      if (rule.role !== undefined && rule.role !== "Started") {
        this.report.warning(
          rule,
          `${item.id}: a rule for role ${rule.role} is not imported: Haven VMs have no roles`,
        );
        return [];
      }
      const text = this.ruleText(item.id, rule.expression, rule);
      if (text === undefined) return [];
      return [
        { type: "location-rule" as const, id, vm: item.rsc, rule: text, score: rule.score, line: rule.line },
      ];
    });
  }

  private colocation(item: Extract<CrmItem, { kind: "colocation" }>): ImportedConstraint[] {
    if (!this.resolve(item, item.resources)) return [];
    const role = item.roles.find((candidate) => candidate !== undefined && candidate !== "Started");
    if (role !== undefined) return this.drop(item, `role ${role} is not honoured: Haven VMs have no roles`);
    if (item.options["node-attribute"] !== undefined) {
      return this.drop(item, "node-attribute is not honoured: Haven colocates on the same node");
    }
    const pairs = colocationPairs(item.resources);
    if (
      pairs.some((pair) => pair.rsc === pair.withRsc) ||
      new Set(item.resources).size < item.resources.length
    )
      return this.fail(item, "a VM cannot be colocated with itself");
    // Pacemaker reads a negative set not as a chain but as every VM kept away from every VM before it.
    if (item.resources.length > 2 && item.score < 0) {
      const { id, score, line } = item;
      return [{ type: "colocation-set", id, vms: [...item.resources], score, line }];
    }
    return pairs.map((pair, index) => ({
      type: "colocation",
      id: pairs.length === 1 ? item.id : `${item.id}-${index + 1}`,
      vm: pair.rsc,
      withVm: pair.withRsc,
      score: item.score,
      line: item.line,
    }));
  }

  private order(item: Extract<CrmItem, { kind: "order" }>): ImportedConstraint[] {
    if (!this.resolve(item, item.resources)) return [];
    const action = item.actions.find((candidate) => candidate !== undefined && candidate !== "start");
    if (action !== undefined)
      return this.drop(item, `action ${action} is not honoured: Haven orders starts only`);
    if (item.orderKind === "Serialize")
      return this.drop(item, "Serialize is not honoured: Haven orders starts only");
    if (item.symmetrical === false) {
      this.report.warning(item, `${item.id}: symmetrical=false has no effect: Haven does not order stops`);
    }
    const pairs = orderPairs(item.resources);
    if (pairs.some((pair) => pair.first === pair.then))
      return this.fail(item, "a VM cannot be ordered after itself");
    const kind = item.orderKind === "Mandatory" ? "mandatory" : "optional";
    return pairs.map((pair, index) => ({
      type: "order",
      id: pairs.length === 1 ? item.id : `${item.id}-${index + 1}`,
      first: pair.first,
      then: pair.then,
      kind,
      line: item.line,
    }));
  }

  /** Whether every resource is an imported VM; reports the others. */
  private resolve(item: ConstraintItem, resources: string[]): boolean {
    for (const resource of resources) {
      if (this.scope.vms.has(resource)) continue;
      const reason = this.scope.notImported.get(resource);
      if (reason === undefined) this.fail(item, `unknown resource "${resource}"`);
      else this.drop(item, `it refers to ${resource}, which is not imported (${reason})`);
      return false;
    }
    return true;
  }

  private locationOptions(item: Extract<CrmItem, { kind: "location" | "location-rule" }>): boolean {
    const { role, "resource-discovery": discovery } = item.options;
    if (discovery !== undefined) {
      this.report.warning(
        item,
        `${item.id}: resource-discovery=${discovery} is not honoured: Haven does not probe`,
      );
    }
    if (role === undefined || role === "Started") return true;
    this.drop(item, `role ${role} is not honoured: Haven VMs have no roles`);
    return false;
  }

  private knownNode(at: Located & { id: string }, node: string): boolean {
    if (this.scope.nodes.size === 0 || this.scope.nodes.has(node)) return true;
    this.fail(at, `unknown node "${node}"`);
    return false;
  }

  /** The rule in the scheduler's syntax, or undefined (reported) when it cannot be imported. */
  private ruleText(id: string, expression: RuleExpression, at: Located): string | undefined {
    const parts: string[] = [];
    for (const condition of expression.conditions) {
      if ("join" in condition) {
        // A nested rule (CIB): its own operator, in parentheses.
        const nested = this.ruleText(id, condition, at);
        if (nested === undefined) return undefined;
        parts.push(condition.conditions.length > 1 ? `(${nested})` : nested);
        continue;
      }
      const { attribute } = condition;
      if (attribute.startsWith("#") && attribute !== "#uname") {
        this.report.warning(
          at,
          `${id}: rule attribute ${attribute} is not supported (only #uname); not imported`,
        );
        return undefined;
      }
      if (!this.conditionNodesKnown(id, condition, at)) return undefined;
      parts.push(this.conditionText(condition));
    }
    return parts.join(` ${expression.join} `);
  }

  private conditionNodesKnown(id: string, condition: RuleCondition, at: Located): boolean {
    const nodes = this.scope.nodes;
    if (nodes.size === 0 || condition.op === "defined" || condition.op === "not_defined") return true;
    if (condition.attribute === "#uname") return this.knownNode({ ...at, id }, condition.value);
    const defined = [...nodes.values()].some((attributes) => Object.hasOwn(attributes, condition.attribute));
    if (!defined) this.report.warning(at, `${id}: no known node has the attribute "${condition.attribute}"`);
    return true;
  }

  private conditionText(condition: RuleCondition): string {
    if (condition.op === "defined" || condition.op === "not_defined")
      return `${condition.op} ${condition.attribute}`;
    const op = condition.type === undefined ? condition.op : `${condition.type}:${condition.op}`;
    return `${condition.attribute} ${op} ${quoted(condition.value)}`;
  }

  private drop(at: Located & { id: string }, reason: string): [] {
    this.report.warning(at, `${at.id}: ${reason}; not imported`);
    return [];
  }

  private fail(at: Located & { id: string }, message: string): [] {
    this.report.error(at, `${at.id}: ${message}`);
    return [];
  }
}

const isRequired = (score: number) => score >= INFINITY_SCORE;
const isBanned = (score: number) => score <= -INFINITY_SCORE;

/** A VM both required on and banned from a node, or banned from every node, can never be placed as asked. */
function checkLocations(constraints: ImportedConstraint[], scope: ConstraintScope, report: Reporter): void {
  if (scope.nodes.size === 0) return;
  const byVm = groupBy(
    constraints.filter((constraint) => constraint.type === "location" || constraint.type === "location-rule"),
    (constraint) => constraint.vm,
  );
  for (const [vm, locations] of byVm) {
    const bans = new Set<ImportedConstraint>();
    let bannedNodes = 0;
    for (const [node, attributes] of scope.nodes) {
      const holding = locations.filter((constraint) =>
        constraint.type === "location"
          ? constraint.node === node
          : ruleHolds(constraint.rule, node, attributes),
      );
      const required = holding.filter((constraint) => isRequired(constraint.score));
      const banned = holding.filter((constraint) => isBanned(constraint.score));
      banned.forEach((constraint) => bans.add(constraint));
      if (banned.length > 0) bannedNodes++;
      if (required.length > 0 && banned.length > 0) {
        report.error(
          banned[0]!,
          `contradiction: ${vm} is required on ${node} by ${ids(required)} (+INFINITY) and forbidden there by ${ids(banned)} (-INFINITY)`,
        );
      }
    }
    if (bannedNodes === scope.nodes.size) {
      const byLine = [...bans].sort((left, right) => left.line - right.line);
      report.error(
        byLine[0]!,
        `contradiction: ${vm} is banned from every node (by ${ids(byLine)}); it could never run`,
      );
    }
  }
}

/** +INFINITY colocations tie VMs into groups; a -INFINITY colocation inside one group cannot be met. */
function checkColocations(constraints: ImportedConstraint[], report: Reporter): void {
  const colocations = constraints.flatMap((constraint) =>
    constraint.type === "colocation" ? [constraint] : [],
  );
  const parent = new Map<string, string>();
  const root = (vm: string): string => {
    let current = vm;
    while (parent.has(current)) current = parent.get(current)!;
    for (let step = vm; step !== current;) {
      const next = parent.get(step)!;
      parent.set(step, current); // path compression: later lookups are direct
      step = next;
    }
    return current;
  };
  const together = colocations.filter((constraint) => isRequired(constraint.score));
  for (const { vm, withVm } of together) {
    const [a, b] = [root(vm), root(withVm)];
    if (a !== b) parent.set(a, b);
  }
  // A -INFINITY set keeps every member away from every member before it.
  const sets = constraints.flatMap((constraint) =>
    constraint.type === "colocation-set" && isBanned(constraint.score) ? [constraint] : [],
  );
  const apartPairs = [
    ...colocations.filter((constraint) => isBanned(constraint.score)),
    ...sets.flatMap((set) =>
      set.vms.flatMap((vm, position) => set.vms.slice(0, position).map((withVm) => ({ ...set, vm, withVm }))),
    ),
  ];
  for (const apart of apartPairs) {
    const group = root(apart.vm);
    if (group !== root(apart.withVm)) continue;
    const ties = together.filter((constraint) => root(constraint.vm) === group);
    report.error(
      apart,
      `contradiction: ${apart.id} keeps ${apart.vm} away from ${apart.withVm} (-INFINITY), but ${ids(ties)} tie them together (+INFINITY)`,
    );
  }
}

/** Mandatory orders in a cycle: none of the VMs on it could ever start. Each edge is followed once. */
function checkOrderCycles(constraints: ImportedConstraint[], report: Reporter): void {
  const orders = constraints.flatMap((constraint) =>
    constraint.type === "order" && constraint.kind === "mandatory" ? [constraint] : [],
  );
  const edges = groupBy(orders, (order) => order.first);
  const state = new Map<string, "open" | "done">();
  for (const start of edges.keys()) {
    if (state.has(start)) continue;
    const path: Array<{ vm: string; next: number; via?: ImportedConstraint & { type: "order" } }> = [
      { vm: start, next: 0 },
    ];
    state.set(start, "open");
    while (path.length > 0) {
      const frame = path[path.length - 1]!;
      const edge = (edges.get(frame.vm) ?? [])[frame.next++];
      if (!edge) {
        state.set(frame.vm, "done");
        path.pop();
        continue;
      }
      if (state.get(edge.then) === "open") {
        const cycle = [
          ...path.slice(path.findIndex((step) => step.vm === edge.then) + 1).map((step) => step.via!),
          edge,
        ];
        const vms = [edge.then, ...cycle.map((order) => order.then)].join(" → ");
        report.error(
          cycle[0]!,
          `contradiction: the mandatory orders ${ids(cycle)} form a cycle (${vms}); none of these VMs could start`,
        );
      } else if (!state.has(edge.then)) {
        state.set(edge.then, "open");
        path.push({ vm: edge.then, next: 0, via: edge });
      }
    }
  }
}

/** Whether a translated rule holds on a node, as the scheduler evaluates it. */
function ruleHolds(rule: string, node: string, attributes: AttributeMap): boolean {
  const parsed = parseRule(rule);
  return parsed.ok && evaluateRule(parsed.rule, { name: node, attributes });
}

function groupBy<T>(values: T[], key: (value: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const value of values) groups.set(key(value), [...(groups.get(key(value)) ?? []), value]);
  return groups;
}

const ids = (constraints: Array<{ id: string }>) =>
  [...new Set(constraints.map((constraint) => constraint.id))].join(", ");
