// Reads crm shell configuration — the seed's hand-written file or `crm configure show` output — into plain
// items. Only the syntax is judged here; what Haven makes of the items is translate.ts. Malformed input is an
// error at the line and column of the offending token (continuation lines keep their own positions).
// Constructs Haven does not support (groups, clones, resource sets, date rules, ...) become `unsupported`
// items with a warning: the rest of the file still imports, and nothing is dropped without a word.
// Tokens and shared value syntaxes live in crm-syntax.ts, the constraint statements in crm-constraints.ts.
import { parseColocation, parseLocation, parseOrder } from "./crm-constraints.js";
import type { ValueType } from "../scheduler/value-comparison.js";
import {
  CrmProblem,
  ID_PATTERN,
  NODE_PATTERN,
  StatementReader,
  isKeyword,
  own,
  position,
  readName,
  splitAttribute,
  tokenizeCrm,
  type Diagnostic,
  type Located,
  type Token,
} from "./crm-syntax.js";

export {
  INFINITY_SCORE,
  parseBoolean,
  parseDuration,
  parseScore,
  tokenizeCrm,
  type Diagnostic,
  type Located,
  type Severity,
} from "./crm-syntax.js";

export type AttributeMap = Record<string, string>;
export type OrderKind = "Mandatory" | "Optional" | "Serialize";
export type RuleOperator = "eq" | "ne" | "lt" | "gt" | "lte" | "gte";

export interface ResourceAgent {
  class: string;
  provider?: string;
  type: string;
}

export interface CrmOp extends Located {
  name: string;
  attrs: AttributeMap;
}

export type RuleCondition =
  | { attribute: string; op: RuleOperator; value: string; type?: ValueType }
  | { attribute: string; op: "defined" }
  | { attribute: string; op: "not_defined" };

/**
 * Pacemaker rules combine their conditions with one operator; crm cannot mix `and` and `or` in a rule, but
 * a CIB rule may hold rules of its own (nested expressions).
 */
export interface RuleExpression {
  join: "and" | "or";
  conditions: Array<RuleCondition | RuleExpression>;
}

export interface CrmRule extends Located {
  score: number;
  role?: string;
  expression: RuleExpression;
}

/**
 * One crm statement. Colocation direction (crm semantics): with two resources, `colocation id score: A B`
 * places A relative to B — Pacemaker places B first, then puts A on B's node (positive score) or away from
 * it (negative score). With more than two, crm writes one sequential resource set, which Pacemaker reads the
 * other way round: each member is placed relative to the one before it. `colocationPairs` spells both out.
 */
export type CrmItem =
  | ({ kind: "node"; name: string; attributes: AttributeMap; utilization: AttributeMap } & Located)
  | ({
      kind: "primitive";
      id: string;
      agent: ResourceAgent;
      params: AttributeMap;
      meta: AttributeMap;
      utilization: AttributeMap;
      ops: CrmOp[];
    } & Located)
  | ({
      kind: "location";
      id: string;
      rsc: string;
      score: number;
      node: string;
      options: AttributeMap;
    } & Located)
  | ({ kind: "location-rule"; id: string; rsc: string; rules: CrmRule[]; options: AttributeMap } & Located)
  | ({
      kind: "colocation";
      id: string;
      score: number;
      resources: string[];
      roles: (string | undefined)[];
      options: AttributeMap;
    } & Located)
  | ({
      kind: "order";
      id: string;
      orderKind: OrderKind;
      /** Set when the order was written with a (deprecated) score instead of a kind. */
      score?: number;
      resources: string[];
      actions: (string | undefined)[];
      symmetrical?: boolean;
    } & Located)
  | ({ kind: "property"; values: AttributeMap } & Located)
  | ({ kind: "rsc_defaults"; values: AttributeMap } & Located)
  | ({ kind: "op_defaults"; values: AttributeMap } & Located)
  | ({ kind: "unsupported"; keyword: string; id?: string; reason: string } & Located);

export interface CrmParseResult {
  items: CrmItem[];
  diagnostics: Diagnostic[];
}

/** Who is placed relative to whom, in crm's reading of `colocation id score: resources...`. */
export function colocationPairs(resources: string[]): Array<{ rsc: string; withRsc: string }> {
  if (resources.length === 2) return [{ rsc: resources[0]!, withRsc: resources[1]! }];
  return resources.slice(1).map((rsc, index) => ({ rsc, withRsc: resources[index]! }));
}

/** `order id kind: A B C` means A before B before C. */
export function orderPairs(resources: string[]): Array<{ first: string; then: string }> {
  return resources.slice(1).map((then, index) => ({ first: resources[index]!, then }));
}

// ---- Statements ----

type Warn = (at: Located, message: string) => void;

const UNSUPPORTED_KEYWORDS: Record<string, string> = {
  group: "groups are not supported; express them as colocation and order constraints",
  clone: "clones are not supported: a VM runs on one node at a time",
  ms: "promotable (master/slave) resources are not supported",
  master: "promotable (master/slave) resources are not supported",
  bundle: "bundles (containers) are not supported",
  rsc_template: "resource templates are not supported; write the parameters into each primitive",
  rsc_ticket: "tickets (multi-site clusters) are not supported",
  fencing_topology: "fencing topologies are not imported: Haven fences by blocklisting a node's Ceph clients",
  tag: "tags are not supported",
  alert: "alerts are not imported: Haven records every decision as an event instead",
  acl_target: "ACLs are not imported",
  acl_group: "ACLs are not imported",
  user: "ACLs are not imported",
  role: "ACLs are not imported",
};

const STATEMENT_PARSERS: Record<string, (reader: StatementReader, warn: Warn) => CrmItem> = {
  node: parseNode,
  primitive: parsePrimitive,
  location: parseLocation,
  colocation: parseColocation,
  collocation: parseColocation,
  order: parseOrder,
  property: parseValues,
  rsc_defaults: parseValues,
  op_defaults: parseValues,
};

/** Parses crm configuration text. Never throws on bad input: every problem is a diagnostic. */
export function parseCrm(text: string): CrmParseResult {
  const { statements, diagnostics } = tokenizeCrm(text);
  const items: CrmItem[] = [];
  const warn: Warn = ({ line, column }, message) =>
    diagnostics.push({ line, column, severity: "warning", message });
  for (const statement of statements) {
    if (statement.broken) continue; // its tokenizer error is already reported
    const reader = new StatementReader(statement.tokens);
    const keyword = reader.keyword.text;
    try {
      const parse = own(STATEMENT_PARSERS, keyword);
      const unsupported = own(UNSUPPORTED_KEYWORDS, keyword);
      if (parse) items.push(parse(reader, warn));
      else if (unsupported) reader.unsupported(unsupported, reader.keyword);
      else reader.fail(`unknown keyword "${keyword}"`, reader.keyword);
    } catch (problem) {
      if (!(problem instanceof CrmProblem)) throw problem;
      const known = Object.hasOwn(STATEMENT_PARSERS, keyword) || Object.hasOwn(UNSUPPORTED_KEYWORDS, keyword);
      const id = known ? statementId(reader) : undefined;
      const message = known ? `${keyword}${id ? ` ${id}` : ""}: ${problem.message}` : problem.message;
      if (!problem.unsupported) diagnostics.push({ ...problem.at, severity: "error", message });
      else {
        const { line, column } = reader.keyword;
        items.push({
          kind: "unsupported",
          keyword,
          ...(id && { id }),
          reason: problem.message,
          line,
          column,
        });
        warn(problem.at, `${message}; not imported`);
      }
    }
  }
  diagnostics.sort((a, b) => a.line - b.line || a.column - b.column);
  return { items, diagnostics };
}

function statementId(reader: StatementReader): string | undefined {
  const second = reader.tokens[1]?.text;
  return second && ID_PATTERN.test(second) ? second : undefined;
}

/** Reads name=value pairs into `into` until a section keyword. */
function readAttributes(
  reader: StatementReader,
  into: AttributeMap,
  stopWords: ReadonlySet<string>,
  context: string,
  warn: Warn,
): void {
  while (!reader.done() && !isKeyword(reader.peek()!, stopWords)) {
    const token = reader.next("name=value");
    const pair = splitAttribute(token);
    if (pair?.[0] === "$id-ref")
      reader.unsupported("references to shared attribute sets are not supported", token);
    if (token.text === "rule" || (!pair && token.text.endsWith(":"))) {
      reader.unsupported(`rule-based ${context} are not supported`, token);
    }
    if (!pair) return reader.fail(`expected name=value in ${context}, found "${token.text}"`, token);
    if (pair[0] === "$id") continue; // names the attribute set inside the CIB; meaningless to Haven
    if (pair[0] === "__proto__") reader.fail(`"${pair[0]}" is not a valid name`, token);
    if (Object.hasOwn(into, pair[0])) warn(token, `"${pair[0]}" is given twice; the later value is used`);
    into[pair[0]] = pair[1];
  }
}

const NODE_SECTIONS = new Set(["attributes", "utilization"]);

function parseNode(reader: StatementReader, warn: Warn): CrmItem {
  let token = reader.next("node name");
  if (token.text.startsWith("$id=")) token = reader.next("node name");
  // `crm configure show` prints `node 1: vmhost1`, the corosync node id first.
  if (token.text.endsWith(":") && !token.text.includes("=")) token = reader.next("node name");
  const [name = "", type, ...rest] = token.text.split(":");
  if (!NODE_PATTERN.test(name) || rest.length > 0)
    reader.fail(`"${token.text}" is not a valid node name`, token);
  if (type === "remote") reader.unsupported("Pacemaker remote nodes are not supported", token);
  if (type !== undefined && type !== "member" && type !== "normal") {
    reader.fail(`unknown node type "${type}"`, token);
  }
  const item = { kind: "node" as const, name, attributes: {}, utilization: {}, ...position(reader) };
  while (!reader.done()) {
    const section = reader.next("attributes or utilization");
    if (section.text.startsWith("description=")) continue; // free text for people; no effect on placement
    if (!isKeyword(section, NODE_SECTIONS)) {
      reader.fail(`expected "attributes" or "utilization", found "${section.text}"`, section);
    }
    const into = section.text === "attributes" ? item.attributes : item.utilization;
    readAttributes(reader, into, NODE_SECTIONS, `node ${section.text}`, warn);
  }
  return item;
}

const PRIMITIVE_SECTIONS = new Set([
  "params",
  "meta",
  "utilization",
  "op",
  "op_params",
  "op_meta",
  "operations",
]);

function parsePrimitive(reader: StatementReader, warn: Warn): CrmItem {
  const id = readName(reader, "resource id");
  const agent = parseAgent(reader.next("resource agent"), reader);
  const item = {
    kind: "primitive" as const,
    id,
    agent,
    params: {},
    meta: {},
    utilization: {},
    ...position(reader),
  };
  const ops: CrmOp[] = [];
  while (!reader.done()) {
    const token = reader.peek()!;
    if (token.text.startsWith("description=")) {
      reader.next("description"); // free text for people; no effect on the VM
      continue;
    }
    // crm accepts parameters before any section keyword.
    const section = isKeyword(token, PRIMITIVE_SECTIONS) ? reader.next("section").text : "params";
    if (section === "op") ops.push(readOp(reader, warn));
    else if (section === "operations") readOperationsId(reader);
    else if (section === "op_params" || section === "op_meta") {
      const op = ops[ops.length - 1] ?? reader.fail(`"${section}" must follow an op`, token);
      readAttributes(reader, op.attrs, PRIMITIVE_SECTIONS, `op ${op.name} attributes`, warn);
    } else {
      const into =
        section === "meta" ? item.meta : section === "utilization" ? item.utilization : item.params;
      readAttributes(reader, into, PRIMITIVE_SECTIONS, section, warn);
    }
  }
  return { ...item, ops };
}

function parseAgent(token: Token, reader: StatementReader): ResourceAgent {
  if (token.text.startsWith("@")) reader.unsupported("resource templates are not supported", token);
  const parts = token.text.split(":");
  if (parts.some((part) => !/^[A-Za-z0-9_.-]+$/.test(part)) || parts.length > 3) {
    reader.fail(`"${token.text}" is not a resource agent (class:provider:type)`, token);
  }
  const [first, second, third] = parts as [string, string?, string?];
  if (third !== undefined) return { class: first, provider: second!, type: third };
  if (first === "ocf" || second === undefined) {
    if (second !== undefined) reader.fail(`ocf agent "${token.text}" needs a provider`, token);
    return { class: "ocf", provider: "heartbeat", type: first }; // crm's default for a bare type
  }
  return { class: first, type: second };
}

function readOp(reader: StatementReader, warn: Warn): CrmOp {
  const name = reader.next("operation name");
  if (isKeyword(name, PRIMITIVE_SECTIONS) || !ID_PATTERN.test(name.text)) {
    reader.fail(`expected an operation name, found "${name.text}"`, name);
  }
  const op: CrmOp = { name: name.text, attrs: {}, line: name.line, column: name.column };
  readAttributes(reader, op.attrs, PRIMITIVE_SECTIONS, `op ${name.text}`, warn);
  return op;
}

function readOperationsId(reader: StatementReader): void {
  const token = reader.next("$id=...");
  if (token.text.startsWith("$id-ref=")) reader.unsupported("shared operation sets are not supported", token);
  if (!token.text.startsWith("$id=")) reader.fail(`expected $id=... after "operations"`, token);
}

function parseValues(reader: StatementReader, warn: Warn): CrmItem {
  const kind = reader.keyword.text as "property" | "rsc_defaults" | "op_defaults";
  const first = reader.peek();
  // `crm configure show` prints `property cib-bootstrap-options: ...`, naming the set first.
  if (first && first.text.endsWith(":") && !first.text.includes("=")) reader.next("set name");
  const values: AttributeMap = {};
  readAttributes(reader, values, new Set(), kind, warn);
  if (Object.keys(values).length === 0) reader.fail("expected name=value");
  return { kind, values, ...position(reader) };
}
