// Rules over node attributes, written as in Pacemaker's crm shell: `hw eq vm`, `#uname ne node3`,
// `cores integer:gte 8`, `defined gpu`, `not_defined maintenance`, joined with `and` / `or` and grouped with
// parentheses. `and` binds tighter than `or` (Pacemaker's XML has one boolean-op per rule and nests rules
// instead; precedence plus parentheses expresses the same trees in one line). Values compare as Pacemaker
// compares them (value-comparison.ts).
import { compareValues, VALUE_TYPES, type ValueType } from "./value-comparison.js";

export const COMPARISONS = ["eq", "ne", "lt", "gt", "lte", "gte"] as const;
export type Comparison = (typeof COMPARISONS)[number];

export type RuleExpression =
  | { kind: "and" | "or"; operands: RuleExpression[] }
  | { kind: "defined" | "not_defined"; attribute: string }
  | {
      kind: "compare";
      comparison: Comparison;
      attribute: string;
      value: string;
      /** Pacemaker's `type` of the comparison; absent: Pacemaker's default for the comparison. */
      valueType?: ValueType;
    };

export type RuleParse = { ok: true; rule: RuleExpression } | { ok: false; error: string };

/** What a rule sees of a node: its name (as `#uname`) and its attributes. */
export interface RuleNode {
  name: string;
  attributes: Readonly<Record<string, string>>;
}

const KEYWORDS = new Set<string>(["and", "or", "defined", "not_defined", ...COMPARISONS]);

class RuleSyntaxError extends Error {}

export function parseRule(text: string): RuleParse {
  try {
    const parser = new RuleParser(tokenize(text));
    const rule = parser.parseOr();
    parser.expectEnd();
    return { ok: true, rule };
  } catch (error) {
    if (error instanceof RuleSyntaxError) return { ok: false, error: `rule "${text}": ${error.message}` };
    throw error;
  }
}

/** Splits into words, parentheses and "double-quoted values" (so a value may contain spaces). */
function tokenize(text: string): string[] {
  const tokens: string[] = [];
  const pattern = /\s*(?:(\()|(\))|"([^"]*)"|([^\s()"]+))/y;
  const end = text.trimEnd().length;
  let index = 0;
  while (index < end) {
    pattern.lastIndex = index;
    const match = pattern.exec(text);
    if (!match) throw new RuleSyntaxError(`cannot read "${text.slice(index).trim()}"`);
    tokens.push(match[1] ?? match[2] ?? (match[3] !== undefined ? `"${match[3]}` : match[4]!));
    index = pattern.lastIndex;
  }
  return tokens;
}

/** Quoted tokens keep a leading `"` marker so that `"and"` is a value, never the keyword. */
function literal(token: string): string {
  return token.startsWith('"') ? token.slice(1) : token;
}

class RuleParser {
  private position = 0;
  constructor(private readonly tokens: string[]) {}

  parseOr(): RuleExpression {
    return this.parseJoined("or", () => this.parseAnd());
  }

  expectEnd(): void {
    const extra = this.tokens[this.position];
    if (extra !== undefined) throw new RuleSyntaxError(`unexpected "${literal(extra)}"`);
  }

  private parseAnd(): RuleExpression {
    return this.parseJoined("and", () => this.parseTerm());
  }

  private parseJoined(kind: "and" | "or", operand: () => RuleExpression): RuleExpression {
    const operands = [operand()];
    while (this.peek() === kind) {
      this.position++;
      operands.push(operand());
    }
    return operands.length === 1 ? operands[0]! : { kind, operands };
  }

  private parseTerm(): RuleExpression {
    const token = this.next("an expression");
    if (token === "(") {
      const inner = this.parseOr();
      if (this.next('")"') !== ")") throw new RuleSyntaxError('missing ")"');
      return inner;
    }
    if (token === "defined" || token === "not_defined") {
      return { kind: token, attribute: this.word("an attribute name") };
    }
    if (token === ")" || KEYWORDS.has(token)) throw new RuleSyntaxError(`unexpected "${token}"`);
    const written = this.next("a comparison (eq, ne, lt, gt, lte, gte)");
    // crm's typed form: `string:eq`, `integer:lt`, `number:gte`, `version:gt`.
    const [typeOrComparison, typedComparison] = literal(written).split(":", 2) as [string, string?];
    const comparison = typedComparison ?? typeOrComparison;
    const valueType = typedComparison === undefined ? undefined : typeOrComparison;
    if (written.startsWith('"') || !(COMPARISONS as readonly string[]).includes(comparison)) {
      throw new RuleSyntaxError(`"${literal(written)}" is not a comparison (eq, ne, lt, gt, lte, gte)`);
    }
    if (valueType !== undefined && !(VALUE_TYPES as readonly string[]).includes(valueType)) {
      throw new RuleSyntaxError(`"${valueType}" is not a value type (${VALUE_TYPES.join(", ")})`);
    }
    return {
      kind: "compare",
      comparison: comparison as Comparison,
      attribute: literal(token),
      value: this.word("a value"),
      ...(valueType !== undefined && { valueType: valueType as ValueType }),
    };
  }

  private word(what: string): string {
    const token = this.next(what);
    if (token === "(" || token === ")") throw new RuleSyntaxError(`expected ${what}, found "${token}"`);
    return literal(token);
  }

  private next(what: string): string {
    const token = this.tokens[this.position++];
    if (token === undefined) throw new RuleSyntaxError(`expected ${what} at the end`);
    return token;
  }

  private peek(): string | undefined {
    return this.tokens[this.position];
  }
}

/** The attribute's value on a node; `#uname` is the node's name, as in Pacemaker. */
function attributeOf(node: RuleNode, attribute: string): string | undefined {
  if (attribute === "#uname") return node.name;
  return Object.hasOwn(node.attributes, attribute) ? node.attributes[attribute] : undefined;
}

export function evaluateRule(rule: RuleExpression, node: RuleNode): boolean {
  switch (rule.kind) {
    case "and":
      return rule.operands.every((operand) => evaluateRule(operand, node));
    case "or":
      return rule.operands.some((operand) => evaluateRule(operand, node));
    case "defined":
      return attributeOf(node, rule.attribute) !== undefined;
    case "not_defined":
      return attributeOf(node, rule.attribute) === undefined;
    case "compare":
      return compare(attributeOf(node, rule.attribute), rule.comparison, rule.value, rule.valueType);
  }
}

/** Pacemaker's attribute expression: a missing attribute satisfies only `ne` (and `not_defined`). */
function compare(
  actual: string | undefined,
  comparison: Comparison,
  expected: string,
  valueType: ValueType | undefined,
): boolean {
  if (actual === undefined) return comparison === "ne";
  const order = compareValues(actual, expected, comparison, valueType);
  switch (comparison) {
    case "eq":
      return order === 0;
    case "ne":
      return order !== 0;
    case "lt":
      return order < 0;
    case "gt":
      return order > 0;
    case "lte":
      return order <= 0;
    case "gte":
      return order >= 0;
  }
}

export function formatRule(rule: RuleExpression): string {
  switch (rule.kind) {
    case "and":
    case "or":
      return rule.operands
        .map((operand) => (operand.kind === "or" ? `(${formatRule(operand)})` : formatRule(operand)))
        .join(` ${rule.kind} `);
    case "defined":
    case "not_defined":
      return `${rule.kind} ${rule.attribute}`;
    case "compare": {
      const comparison = rule.valueType ? `${rule.valueType}:${rule.comparison}` : rule.comparison;
      return `${rule.attribute} ${comparison} ${quoted(rule.value)}`;
    }
  }
}

/** A value as a rule writes it: in double quotes when it holds spaces, parentheses or quotes, or is empty. */
export function quoted(value: string): string {
  return /[\s()"]/.test(value) || value === "" ? `"${value}"` : value;
}
