// The crm constraint statements: location (a score for one node, or rules over node attributes),
// colocation and order. Resource sets, patterns, date rules and score-attribute rules are valid crm but
// stop the statement as `unsupported` (reported, not imported).
import type {
  AttributeMap,
  CrmItem,
  CrmRule,
  OrderKind,
  RuleCondition,
  RuleExpression,
  RuleOperator,
} from "./crm.js";
import { VALUE_TYPES, type ValueType } from "../scheduler/value-comparison.js";
import {
  ID_PATTERN,
  NODE_PATTERN,
  own,
  parseBoolean,
  position,
  readName,
  readScore,
  splitAttribute,
  type StatementReader,
  type Token,
} from "./crm-syntax.js";

const ATTRIBUTE_PATTERN = /^#?[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
/** What a score looks like before its range is checked. */
const SCORE_WORD = /^[+-]?(\d+|inf|infinity)$/i;
const ROLES = ["Started", "Stopped", "Master", "Slave", "Promoted", "Unpromoted"];
const ORDER_ACTIONS = ["start", "stop", "promote", "demote"];
const ORDER_KINDS: Record<string, OrderKind> = {
  mandatory: "Mandatory",
  optional: "Optional",
  serialize: "Serialize",
  advisory: "Optional", // crm's old name for score 0
};

const LOCATION_OPTIONS = ["role", "resource-discovery"];

export function parseLocation(reader: StatementReader): CrmItem {
  const id = readName(reader, "constraint id");
  const rscToken = reader.next("resource");
  if (rscToken.text.startsWith("{"))
    reader.unsupported("resource sets in locations are not supported", rscToken);
  if (rscToken.text.startsWith("/")) reader.unsupported("resource patterns are not supported", rscToken);
  if (!ID_PATTERN.test(rscToken.text)) reader.fail(`"${rscToken.text}" is not a valid resource id`, rscToken);
  const options: AttributeMap = {};
  while (reader.peek() && splitAttribute(reader.peek()!)) readOption(reader, options, LOCATION_OPTIONS);
  const base = { id, rsc: rscToken.text, options, ...position(reader) };
  if (reader.peek()?.text === "rule") return { kind: "location-rule", ...base, rules: readRules(reader) };
  const score = readScore(reader.next('"<score>: <node>" or "rule"'), reader);
  const node = readName(reader, "node name", NODE_PATTERN);
  // Older crm printed the role after the node.
  while (!reader.done()) readOption(reader, options, ["role"]);
  return { kind: "location", ...base, score, node };
}

function readOption(reader: StatementReader, into: AttributeMap, allowed: string[]): void {
  const token = reader.next("option");
  const [name = "", value = ""] = splitAttribute(token) ?? [];
  const key = name.replace(/^\$/, "");
  if (!allowed.includes(key)) reader.fail(`unexpected "${token.text}"`, token);
  if (key === "role" && !ROLES.includes(value)) reader.fail(`unknown role "${value}"`, token);
  into[key] = value;
}

function readRules(reader: StatementReader): CrmRule[] {
  const rules: CrmRule[] = [];
  while (!reader.done()) {
    const ruleToken = reader.next("rule");
    if (ruleToken.text !== "rule") reader.fail(`expected "rule", found "${ruleToken.text}"`, ruleToken);
    rules.push(readRule(reader, ruleToken));
  }
  return rules;
}

function readRule(reader: StatementReader, ruleToken: Token): CrmRule {
  const options: AttributeMap = {};
  while (reader.peek() && splitAttribute(reader.peek()!)) {
    const token = reader.peek()!;
    if (token.text.startsWith("$id-ref="))
      reader.unsupported("references to shared rules are not supported", token);
    readOption(reader, options, ["id", "role"]);
  }
  const scoreToken = reader.next('"<score>:"');
  const scoreText = scoreToken.text.slice(0, -1);
  const byAttribute = !SCORE_WORD.test(scoreText) && ATTRIBUTE_PATTERN.test(scoreText);
  if (scoreToken.text.endsWith(":") && byAttribute) {
    reader.unsupported("rules scored by a node attribute (score-attribute) are not supported", scoreToken);
  }
  const score = readScore(scoreToken, reader);
  const expression = readExpression(reader);
  const role = options.role;
  return { score, ...(role && { role }), expression, line: ruleToken.line, column: ruleToken.column };
}

function readExpression(reader: StatementReader): RuleExpression {
  const conditions = [readCondition(reader)];
  let join: "and" | "or" | undefined;
  while (!reader.done() && reader.peek()!.text !== "rule") {
    const token = reader.next('"and" or "or"');
    if (token.text !== "and" && token.text !== "or") {
      reader.fail(`expected "and", "or" or "rule", found "${token.text}"`, token);
    }
    if (join && join !== token.text) reader.fail(`a rule uses one operator: "and" or "or", not both`, token);
    join = token.text;
    conditions.push(readCondition(reader));
  }
  return { join: join ?? "and", conditions };
}

const BINARY_OPERATORS = ["eq", "ne", "lt", "gt", "lte", "gte"];

function readCondition(reader: StatementReader): RuleCondition {
  const first = reader.next("rule condition");
  if (first.text === "date") reader.unsupported("date expressions in rules are not supported", first);
  if (first.text === "defined" || first.text === "not_defined") {
    const op = first.text;
    return { attribute: readName(reader, "node attribute", ATTRIBUTE_PATTERN), op };
  }
  if (!ATTRIBUTE_PATTERN.test(first.text)) reader.fail(`"${first.text}" is not a node attribute`, first);
  const opToken = reader.next(`operator after "${first.text}"`);
  const [typeOrOp, maybeOp] = opToken.text.split(":", 2) as [string, string?];
  const op = maybeOp ?? typeOrOp;
  const type = maybeOp === undefined ? undefined : typeOrOp;
  if (!BINARY_OPERATORS.includes(op)) {
    reader.fail(`unknown operator "${op}" (eq, ne, lt, gt, lte, gte, defined, not_defined)`, opToken);
  }
  if (type !== undefined && !(VALUE_TYPES as readonly string[]).includes(type))
    reader.fail(`unknown value type "${type}"`, opToken);
  const value = reader.next(`value after "${opToken.text}"`).text;
  const condition = { attribute: first.text, op: op as RuleOperator, value };
  return type ? { ...condition, type: type as ValueType } : condition;
}

interface Reference {
  name: string;
  suffix?: string;
  token: Token;
}

/** Reads `rsc[:role|action] ...` up to the end, plus `name=value` options; refuses resource sets. */
function readReferences(reader: StatementReader, allowedOptions: string[], options: AttributeMap) {
  const references: Reference[] = [];
  while (!reader.done()) {
    const token = reader.next("resource");
    if (/^[([]|[)\]]$/.test(token.text)) reader.unsupported("resource sets are not supported", token);
    const pair = splitAttribute(token);
    if (pair && (pair[0] === "sequential" || pair[0] === "require-all")) {
      reader.unsupported("resource sets are not supported", token);
    }
    if (pair) {
      if (!allowedOptions.includes(pair[0])) reader.fail(`unknown option "${pair[0]}"`, token);
      options[pair[0]] = pair[1];
      continue;
    }
    const [name = "", suffix, ...rest] = token.text.split(":");
    if (!ID_PATTERN.test(name) || rest.length > 0) reader.fail(`"${token.text}" is not a resource`, token);
    references.push({ name, ...(suffix !== undefined && { suffix }), token });
  }
  if (references.length < 2) reader.fail("expected at least two resources");
  return references;
}

export function parseColocation(reader: StatementReader): CrmItem {
  const id = readName(reader, "constraint id");
  const score = readScore(reader.next('"<score>:"'), reader);
  const options: AttributeMap = {};
  const references = readReferences(reader, ["node-attribute"], options);
  for (const { suffix, token } of references) {
    if (suffix !== undefined && !ROLES.includes(suffix)) reader.fail(`unknown role "${suffix}"`, token);
  }
  const resources = references.map((reference) => reference.name);
  const roles = references.map((reference) => reference.suffix);
  return { kind: "colocation", id, score, resources, roles, options, ...position(reader) };
}

export function parseOrder(reader: StatementReader): CrmItem {
  const id = readName(reader, "constraint id");
  let orderKind: OrderKind = "Mandatory"; // Pacemaker's default kind
  let score: number | undefined;
  const first = reader.peek();
  if (first?.text.endsWith(":")) {
    reader.next("kind");
    const word = first.text.slice(0, -1);
    const kind = own(ORDER_KINDS, word.toLowerCase());
    if (kind) orderKind = kind;
    else if (!SCORE_WORD.test(word)) {
      reader.fail(`"${word}" is neither an order kind (Mandatory, Optional, Serialize) nor a score`, first);
    } else {
      score = readScore(first, reader);
      orderKind = score > 0 ? "Mandatory" : "Optional"; // Pacemaker: a positive score is mandatory
    }
  }
  const options: AttributeMap = {};
  const references = readReferences(reader, ["symmetrical"], options);
  for (const { suffix, token } of references) {
    if (suffix !== undefined && !ORDER_ACTIONS.includes(suffix))
      reader.fail(`unknown action "${suffix}"`, token);
  }
  const symmetrical = options.symmetrical === undefined ? undefined : parseBoolean(options.symmetrical);
  if (symmetrical === null) reader.fail(`symmetrical must be true or false, not "${options.symmetrical}"`);
  return {
    kind: "order",
    id,
    orderKind,
    ...(score !== undefined && { score }),
    resources: references.map((reference) => reference.name),
    actions: references.map((reference) => reference.suffix),
    ...(symmetrical !== undefined && { symmetrical }),
    ...position(reader),
  };
}
