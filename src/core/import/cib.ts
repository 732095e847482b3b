// Reads Pacemaker's CIB XML — what `cibadmin --query` and `pcs cluster cib` print — into the same items as a
// crm configuration (crm.ts), so that one translation (translate.ts) and one report serve both. Every item
// and finding keeps the line and column of its element. The status section is not read. Constructs Haven
// does not import (groups, clones, tickets, resource sets between sets, date rules, ...) become
// `unsupported` items with a warning, as in crm.
import type {
  AttributeMap,
  CrmItem,
  CrmOp,
  CrmParseResult,
  CrmRule,
  Diagnostic,
  Located,
  OrderKind,
  RuleCondition,
  RuleExpression,
  RuleOperator,
} from "./crm.js";
import { own, parseBoolean, parseScore } from "./crm-syntax.js";
import { VALUE_TYPES, type ValueType } from "../scheduler/value-comparison.js";
import { parseXml, type XmlElement } from "./xml.js";

/** Why a CIB element is not imported (the same words as crm's). */
const UNSUPPORTED: Record<string, string> = {
  group: "groups are not supported; express them as colocation and order constraints",
  clone: "clones are not supported: a VM runs on one node at a time",
  master: "promotable (master/slave) resources are not supported",
  bundle: "bundles (containers) are not supported",
  template: "resource templates are not supported; write the parameters into each primitive",
  rsc_ticket: "tickets (multi-site clusters) are not supported",
  "fencing-topology":
    "fencing topologies are not imported: Haven fences by blocklisting a node's Ceph clients",
  tags: "tags are not supported",
  alerts: "alerts are not imported: Haven records every decision as an event instead",
  acls: "ACLs are not imported",
};

const OPERATORS = ["eq", "ne", "lt", "gt", "lte", "gte", "defined", "not_defined"];
const ORDER_KINDS: Record<string, OrderKind> = {
  mandatory: "Mandatory",
  optional: "Optional",
  serialize: "Serialize",
};

class Problem extends Error {
  constructor(
    message: string,
    readonly at: Located,
    readonly unsupported = false,
  ) {
    super(message);
  }
}

const children = (element: XmlElement, name?: string) =>
  element.children.filter((child) => name === undefined || child.name === name);
const at = (element: XmlElement): Located => ({ line: element.line, column: element.column });

/** Parses CIB XML. Never throws on bad input: every problem is a diagnostic. */
export function parseCib(text: string): CrmParseResult {
  const { root, diagnostics } = parseXml(text);
  if (!root) return { items: [], diagnostics };
  const reader = new CibReader(diagnostics);
  const configuration = root.name === "configuration" ? root : children(root, "configuration")[0];
  if (root.name !== "cib" && root.name !== "configuration") {
    reader.error(at(root), `<${root.name}> is not a CIB: expected <cib> or <configuration>`);
  } else if (!configuration) {
    reader.error(at(root), "the CIB has no <configuration>");
  } else {
    reader.readConfiguration(configuration);
  }
  diagnostics.sort((a, b) => a.line - b.line || a.column - b.column);
  return { items: reader.items, diagnostics };
}

class CibReader {
  readonly items: CrmItem[] = [];

  constructor(private readonly diagnostics: Diagnostic[]) {}

  error(place: Located, message: string): void {
    this.diagnostics.push({ ...place, severity: "error", message });
  }

  warning(place: Located, message: string): void {
    this.diagnostics.push({ ...place, severity: "warning", message });
  }

  readConfiguration(configuration: XmlElement): void {
    for (const section of configuration.children) {
      switch (section.name) {
        case "crm_config":
          children(section, "cluster_property_set").forEach((set) =>
            this.guard(set, () => this.properties(set)),
          );
          break;
        case "nodes":
          children(section).forEach((node) => this.guard(node, () => this.node(node)));
          break;
        case "resources":
          children(section).forEach((resource) => this.guard(resource, () => this.resource(resource)));
          break;
        case "constraints":
          children(section).forEach((constraint) =>
            this.guard(constraint, () => this.constraint(constraint)),
          );
          break;
        case "rsc_defaults":
        case "op_defaults":
          this.guard(section, () => this.defaults(section));
          break;
        default: {
          const reason = own(UNSUPPORTED, section.name);
          if (reason) this.unsupported(section, reason);
          else this.warning(at(section), `<${section.name}> is not imported`);
        }
      }
    }
  }

  /** Runs one element's reader: a problem is reported (and the element left out), never thrown on. */
  private guard(element: XmlElement, read: () => void): void {
    try {
      read();
    } catch (problem) {
      if (!(problem instanceof Problem)) throw problem;
      const id = element.attributes.id;
      const message = `${element.name}${id ? ` ${id}` : ""}: ${problem.message}`;
      if (!problem.unsupported) return this.error(problem.at, message);
      this.items.push({
        kind: "unsupported",
        keyword: element.name,
        ...(id !== undefined && { id }),
        reason: problem.message,
        ...at(element),
      });
      this.warning(problem.at, `${message}; not imported`);
    }
  }

  private unsupported(element: XmlElement, reason: string): void {
    this.guard(element, () => {
      throw new Problem(reason, at(element), true);
    });
  }

  private required(element: XmlElement, name: string): string {
    const value = element.attributes[name];
    if (value === undefined || value === "") throw new Problem(`${name}= is missing`, at(element));
    return value;
  }

  private score(element: XmlElement, text: string): number {
    const score = parseScore(text);
    if (typeof score !== "number") throw new Problem(score.error, at(element));
    return score;
  }

  /** The name=value pairs of an element's attribute sets named `setName` (the first value of a name wins,
   * as in Pacemaker, where sets of equal score apply in document order). */
  private nvpairs(element: XmlElement, setName: string): AttributeMap {
    const values: AttributeMap = {};
    for (const set of children(element, setName)) {
      if (set.attributes["id-ref"] !== undefined)
        throw new Problem("references to shared attribute sets are not supported", at(set), true);
      if (children(set, "rule").length > 0)
        throw new Problem(`rule-based ${setName} are not supported`, at(set), true);
      for (const pair of children(set, "nvpair")) {
        if (pair.attributes["id-ref"] !== undefined)
          throw new Problem("references to shared attributes are not supported", at(pair), true);
        const name = this.required(pair, "name");
        if (name === "__proto__") throw new Problem(`"${name}" is not a valid name`, at(pair));
        if (Object.hasOwn(values, name)) {
          this.warning(at(pair), `"${name}" is given twice; the first value is used, as in Pacemaker`);
          continue;
        }
        values[name] = pair.attributes.value ?? "";
      }
    }
    return values;
  }

  private properties(set: XmlElement): void {
    if (set.attributes["id-ref"] !== undefined || children(set, "rule").length > 0)
      throw new Problem("references and rules in cluster properties are not supported", at(set), true);
    for (const pair of children(set, "nvpair")) {
      const name = this.required(pair, "name");
      this.items.push({ kind: "property", values: { [name]: pair.attributes.value ?? "" }, ...at(pair) });
    }
  }

  private node(node: XmlElement): void {
    if (node.name !== "node") return this.warning(at(node), `<${node.name}> in <nodes> is not imported`);
    const type = node.attributes.type;
    if (type === "remote") throw new Problem("Pacemaker remote nodes are not supported", at(node), true);
    if (type !== undefined && type !== "member" && type !== "normal")
      throw new Problem(`unknown node type "${type}"`, at(node));
    this.items.push({
      kind: "node",
      name: node.attributes.uname ?? this.required(node, "id"),
      attributes: this.nvpairs(node, "instance_attributes"),
      utilization: this.nvpairs(node, "utilization"),
      ...at(node),
    });
  }

  private resource(resource: XmlElement): void {
    if (resource.name !== "primitive") {
      const reason = own(UNSUPPORTED, resource.name) ?? `<${resource.name}> is not supported`;
      throw new Problem(reason, at(resource), true);
    }
    if (resource.attributes.template !== undefined)
      throw new Problem("resource templates are not supported", at(resource), true);
    const id = this.required(resource, "id");
    const agentClass = this.required(resource, "class");
    const provider = resource.attributes.provider;
    const type = this.required(resource, "type");
    const ops = children(resource, "operations").flatMap((operations) => {
      if (operations.attributes["id-ref"] !== undefined)
        throw new Problem("shared operation sets are not supported", at(operations), true);
      return children(operations, "op").map((op) => this.op(op));
    });
    this.items.push({
      kind: "primitive",
      id,
      agent: { class: agentClass, ...(provider !== undefined && { provider }), type },
      params: this.nvpairs(resource, "instance_attributes"),
      meta: this.nvpairs(resource, "meta_attributes"),
      utilization: this.nvpairs(resource, "utilization"),
      ops,
      ...at(resource),
    });
  }

  private op(op: XmlElement): CrmOp {
    const { id: _id, name, ...attrs } = op.attributes;
    if (!name) throw new Problem("an op needs name=", at(op));
    const nested = { ...this.nvpairs(op, "meta_attributes"), ...this.nvpairs(op, "instance_attributes") };
    return { name, attrs: { ...attrs, ...nested }, ...at(op) };
  }

  private defaults(section: XmlElement): void {
    const kind = section.name as "rsc_defaults" | "op_defaults";
    const values = this.nvpairs(section, "meta_attributes");
    if (Object.keys(values).length > 0) this.items.push({ kind, values, ...at(section) });
  }

  private constraint(constraint: XmlElement): void {
    switch (constraint.name) {
      case "rsc_location":
        return this.location(constraint);
      case "rsc_colocation":
        return this.colocation(constraint);
      case "rsc_order":
        return this.order(constraint);
      default: {
        const reason = own(UNSUPPORTED, constraint.name) ?? `<${constraint.name}> is not supported`;
        throw new Problem(reason, at(constraint), true);
      }
    }
  }

  private location(location: XmlElement): void {
    const id = this.required(location, "id");
    if (location.attributes["rsc-pattern"] !== undefined)
      throw new Problem("resource patterns are not supported", at(location), true);
    if (children(location, "resource_set").length > 0)
      throw new Problem("resource sets in locations are not supported", at(location), true);
    const rsc = this.required(location, "rsc");
    const options: AttributeMap = {};
    for (const name of ["role", "resource-discovery"]) {
      const value = location.attributes[name];
      if (value !== undefined) options[name] = value;
    }
    const base = { id, rsc, options, ...at(location) };
    const rules = children(location, "rule");
    if (rules.length > 0) {
      this.items.push({ kind: "location-rule", ...base, rules: rules.map((rule) => this.rule(rule)) });
      return;
    }
    const node = this.required(location, "node");
    const score = this.score(location, this.required(location, "score"));
    this.items.push({ kind: "location", ...base, score, node });
  }

  private rule(rule: XmlElement): CrmRule {
    if (rule.attributes["id-ref"] !== undefined)
      throw new Problem("references to shared rules are not supported", at(rule), true);
    if (rule.attributes["score-attribute"] !== undefined)
      throw new Problem(
        "rules scored by a node attribute (score-attribute) are not supported",
        at(rule),
        true,
      );
    const score = this.score(rule, rule.attributes.score ?? "0");
    const role = rule.attributes.role;
    return { score, ...(role !== undefined && { role }), expression: this.expression(rule), ...at(rule) };
  }

  private expression(rule: XmlElement): RuleExpression {
    const op = (rule.attributes["boolean-op"] ?? "and").toLowerCase();
    if (op !== "and" && op !== "or") throw new Problem(`unknown boolean-op "${op}"`, at(rule));
    const conditions = rule.children.map((child): RuleCondition | RuleExpression => {
      if (child.name === "rule") return this.expression(child);
      if (child.name === "expression") return this.condition(child);
      if (child.name === "date_expression")
        throw new Problem("date expressions in rules are not supported", at(child), true);
      throw new Problem(`<${child.name}> in a rule is not supported`, at(child), true);
    });
    if (conditions.length === 0)
      throw new Problem("a rule without expressions is not supported", at(rule), true);
    return { join: op, conditions };
  }

  private condition(expression: XmlElement): RuleCondition {
    const attribute = this.required(expression, "attribute");
    const operation = this.required(expression, "operation");
    const source = expression.attributes["value-source"];
    if (source !== undefined && source !== "literal")
      throw new Problem(`value-source=${source} is not supported`, at(expression), true);
    if (!OPERATORS.includes(operation))
      throw new Problem(`unknown operation "${operation}" (${OPERATORS.join(", ")})`, at(expression));
    if (operation === "defined" || operation === "not_defined") return { attribute, op: operation };
    const value = this.required(expression, "value");
    const type = expression.attributes.type;
    if (type !== undefined && !(VALUE_TYPES as readonly string[]).includes(type))
      throw new Problem(`unknown value type "${type}"`, at(expression));
    const condition = { attribute, op: operation as RuleOperator, value };
    return type ? { ...condition, type: type as ValueType } : condition;
  }

  private colocation(colocation: XmlElement): void {
    const id = this.required(colocation, "id");
    let score = this.score(colocation, colocation.attributes.score ?? "0");
    const options: AttributeMap = {};
    const attribute = colocation.attributes["node-attribute"];
    if (attribute !== undefined) options["node-attribute"] = attribute;
    let resources: string[];
    let roles: (string | undefined)[];
    const sets = children(colocation, "resource_set");
    if (sets.length === 0) {
      resources = [this.required(colocation, "rsc"), this.required(colocation, "with-rsc")];
      roles = [colocation.attributes["rsc-role"], colocation.attributes["with-rsc-role"]];
    } else {
      const set = this.onlySet(sets, "colocations");
      if (set.attributes.sequential !== undefined && parseBoolean(set.attributes.sequential) === false) {
        this.warning(
          at(set),
          `rsc_colocation ${id}: a set that is not sequential colocates nothing on its own`,
        );
        return;
      }
      if (set.attributes.score !== undefined) score = this.score(set, set.attributes.score);
      const members = this.members(set);
      // crm reads two VMs as "the first with the second", a set as "each with the one before": a set of two
      // is written the crm way round.
      resources = members.length === 2 ? [members[1]!, members[0]!] : members;
      roles = members.map(() => set.attributes.role);
    }
    this.items.push({ kind: "colocation", id, score, resources, roles, options, ...at(colocation) });
  }

  private order(order: XmlElement): void {
    const id = this.required(order, "id");
    let orderKind: OrderKind = "Mandatory";
    let score: number | undefined;
    const kind = order.attributes.kind;
    if (kind !== undefined) {
      const known = own(ORDER_KINDS, kind.toLowerCase());
      if (!known) throw new Problem(`unknown kind "${kind}" (Mandatory, Optional, Serialize)`, at(order));
      orderKind = known;
    } else if (order.attributes.score !== undefined) {
      score = this.score(order, order.attributes.score);
      orderKind = score > 0 ? "Mandatory" : "Optional"; // Pacemaker: a positive score is mandatory
    }
    const symmetrical =
      order.attributes.symmetrical === undefined ? undefined : parseBoolean(order.attributes.symmetrical);
    if (symmetrical === null)
      throw new Problem(
        `symmetrical must be true or false, not "${order.attributes.symmetrical}"`,
        at(order),
      );
    let resources: string[];
    let actions: (string | undefined)[];
    const sets = children(order, "resource_set");
    if (sets.length === 0) {
      resources = [this.required(order, "first"), this.required(order, "then")];
      actions = [order.attributes["first-action"], order.attributes["then-action"]];
    } else {
      const set = this.onlySet(sets, "orders");
      if (
        set.attributes["require-all"] !== undefined &&
        parseBoolean(set.attributes["require-all"]) === false
      )
        throw new Problem("require-all=false is not supported", at(set), true);
      if (set.attributes.sequential !== undefined && parseBoolean(set.attributes.sequential) === false) {
        this.warning(at(set), `rsc_order ${id}: a set that is not sequential orders nothing on its own`);
        return;
      }
      resources = this.members(set);
      actions = resources.map(() => set.attributes.action);
    }
    this.items.push({
      kind: "order",
      id,
      orderKind,
      ...(score !== undefined && { score }),
      resources,
      actions,
      ...(symmetrical !== undefined && { symmetrical }),
      ...at(order),
    });
  }

  private onlySet(sets: XmlElement[], what: string): XmlElement {
    if (sets.length > 1)
      throw new Problem(`${what} between resource sets are not supported`, at(sets[1]!), true);
    return sets[0]!;
  }

  private members(set: XmlElement): string[] {
    const members = children(set, "resource_ref").map((ref) => this.required(ref, "id"));
    if (members.length < 2) throw new Problem("a resource set needs at least two resources", at(set));
    return members;
  }
}
