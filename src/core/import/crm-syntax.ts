// The lexical layer of the crm shell language: statements (backslash continuations joined, every token
// keeping its own line and column), a reader that walks one statement and stops it with a positioned problem,
// and the value syntaxes shared by several statements (scores, booleans).

export type Severity = "error" | "warning";

/** A finding about the input. Line and column are 1-based; `source` names the file if not the crm file. */
export interface Diagnostic {
  line: number;
  column: number;
  severity: Severity;
  message: string;
  source?: string;
}

export interface Located {
  line: number;
  column: number;
}

/** Pacemaker's INFINITY. Pacemaker clamps larger scores silently; an importer should say so instead. */
export const INFINITY_SCORE = 1_000_000;

export interface Token extends Located {
  text: string;
  /** Column just after the token, for "expected ... here" errors at the end of a statement. */
  endColumn: number;
  quoted: boolean;
}

export interface Statement {
  tokens: Token[];
  broken: boolean;
}

/** Splits crm text into statements, joining backslash continuations; every token keeps its own position. */
export function tokenizeCrm(text: string): { statements: Statement[]; diagnostics: Diagnostic[] } {
  const statements: Statement[] = [];
  const diagnostics: Diagnostic[] = [];
  let current: Statement = { tokens: [], broken: false };
  let continued = false;
  const lines = text.split(/\r?\n/);
  if (lines.length > 1 && lines[lines.length - 1] === "") lines.pop(); // the newline that ends the last line
  lines.forEach((lineText, index) => {
    const scan = scanLine(lineText, index + 1, !continued, diagnostics);
    current.tokens.push(...scan.tokens);
    current.broken ||= scan.broken;
    continued = scan.continues;
    if (!continued && current.tokens.length > 0) {
      statements.push(current);
      current = { tokens: [], broken: false };
    }
  });
  if (continued) {
    const line = lines.length;
    diagnostics.push({
      line,
      column: 1,
      severity: "warning",
      message: "the file ends inside a continuation",
    });
  }
  if (current.tokens.length > 0) statements.push(current);
  return { statements, diagnostics };
}

const isSpace = (char: string | undefined) => char === " " || char === "\t";
const restIsBlank = (text: string, from: number) => text.slice(from).trim() === "";

function scanLine(text: string, line: number, statementStart: boolean, diagnostics: Diagnostic[]) {
  const tokens: Token[] = [];
  let index = 0;
  while (index < text.length) {
    const char = text[index];
    if (isSpace(char) || char === "\r") {
      index++;
      continue;
    }
    // `#` opens a comment at the start of a statement or before a space; `#uname` in a rule is a word.
    const startsComment = statementStart && tokens.length === 0;
    if (char === "#" && (startsComment || isSpace(text[index + 1]) || index + 1 === text.length)) break;
    if (char === "\\" && restIsBlank(text, index + 1)) return { tokens, continues: true, broken: false };
    const word = scanWord(text, index, line);
    if ("error" in word) {
      diagnostics.push({ line, column: word.column, severity: "error", message: word.error });
      // The rest of a continued statement belongs to the broken one, not to a statement of its own.
      return { tokens, continues: /\\\s*$/.test(text), broken: true };
    }
    tokens.push(word.token);
    index = word.token.endColumn - 1;
    if (word.continues) return { tokens, continues: true, broken: false };
  }
  return { tokens, continues: false, broken: false };
}

type ScannedWord = { token: Token; continues: boolean } | { error: string; column: number };

function scanWord(text: string, start: number, line: number): ScannedWord {
  let index = start;
  let value = "";
  let quoted = false;
  let continues = false;
  while (index < text.length && !isSpace(text[index])) {
    const char = text[index]!;
    if (char === '"' || char === "'") {
      const close = closingQuote(text, index + 1, char);
      if (close < 0) return { error: `unterminated ${char} quote`, column: index + 1 };
      const inner = text.slice(index + 1, close);
      value += char === '"' ? inner.replace(/\\(.)/g, "$1") : inner;
      quoted = true;
      index = close + 1;
    } else if (char === "\\") {
      if (restIsBlank(text, index + 1)) {
        continues = true;
        break;
      }
      value += text[index + 1];
      index += 2;
    } else {
      value += char;
      index++;
    }
  }
  const token: Token = { text: value, line, column: start + 1, endColumn: index + 1, quoted };
  return { token, continues };
}

function closingQuote(text: string, from: number, quote: string): number {
  for (let index = from; index < text.length; index++) {
    if (quote === '"' && text[index] === "\\") index++;
    else if (text[index] === quote) return index;
  }
  return -1;
}

/** Stops parsing one statement; the statement is skipped and reported. */
export class CrmProblem extends Error {
  readonly at: Located;
  constructor(
    message: string,
    at: Located,
    readonly unsupported = false,
  ) {
    super(message);
    this.at = { line: at.line, column: at.column };
  }
}

/** Walks the tokens of one statement. */
export class StatementReader {
  private index = 1;
  constructor(readonly tokens: Token[]) {}

  get keyword(): Token {
    return this.tokens[0]!;
  }
  peek(): Token | undefined {
    return this.tokens[this.index];
  }
  done(): boolean {
    return this.index >= this.tokens.length;
  }
  next(what: string): Token {
    const token = this.tokens[this.index];
    if (!token) throw new CrmProblem(`expected ${what}`, this.endPosition());
    this.index++;
    return token;
  }
  endPosition(): Located {
    const last = this.tokens[this.tokens.length - 1]!;
    return { line: last.line, column: last.endColumn };
  }
  fail(message: string, at: Located = this.endPosition()): never {
    throw new CrmProblem(message, at);
  }
  unsupported(reason: string, at: Located): never {
    throw new CrmProblem(reason, at, true);
  }
}

/** Parses an integer score or INFINITY in Pacemaker's spellings; anything beyond ±INFINITY is an error. */
export function parseScore(text: string): number | { error: string } {
  const infinity = /^([+-]?)(inf|infinity)$/i.exec(text);
  if (infinity) return infinity[1] === "-" ? -INFINITY_SCORE : INFINITY_SCORE;
  if (!/^[+-]?\d+$/.test(text)) return { error: `score "${text}" is not an integer or INFINITY` };
  const score = Number(text);
  if (Math.abs(score) > INFINITY_SCORE) {
    return { error: `score ${text} is out of range (-INFINITY..INFINITY, INFINITY = ${INFINITY_SCORE})` };
  }
  return score === 0 ? 0 : score; // no -0
}

/** Pacemaker's booleans; null when the text is none of them. */
export function parseBoolean(text: string): boolean | null {
  const lower = text.toLowerCase();
  if (["true", "yes", "on", "1", "y"].includes(lower)) return true;
  if (["false", "no", "off", "0", "n"].includes(lower)) return false;
  return null;
}

const TIME_UNITS: Record<string, number> = {
  ms: 0.001,
  msec: 0.001,
  us: 1e-6,
  usec: 1e-6,
  s: 1,
  sec: 1,
  m: 60,
  min: 60,
  h: 3600,
  hr: 3600,
};

/** Pacemaker time values ("300", "300s", "5min", "1h", "30000ms", ISO 8601 "PT5M") in seconds. */
export function parseDuration(text: string): number | { error: string } {
  const plain = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const factor = plain ? own(TIME_UNITS, plain[2]!.toLowerCase() || "s") : undefined;
  if (plain && factor !== undefined) return Number(plain[1]) * factor;
  const iso = /^PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?$/i.exec(text.trim());
  if (iso && text.trim().length > 2)
    return Number(iso[1] ?? 0) * 3600 + Number(iso[2] ?? 0) * 60 + Number(iso[3] ?? 0);
  return { error: `"${text}" is not a time (a number of seconds, or with ms, s, min or h)` };
}

/** `table[key]` for the table's own keys only: input such as "constructor" must not reach Object.prototype. */
export function own<T>(table: Readonly<Record<string, T>>, key: string): T | undefined {
  return Object.hasOwn(table, key) ? table[key] : undefined;
}

// ---- Helpers shared by the statement parsers ----

export const ID_PATTERN = /^[A-Za-z_][A-Za-z0-9_.-]*$/;
export const NODE_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
export function readName(reader: StatementReader, what: string, pattern = ID_PATTERN): string {
  const token = reader.next(what);
  if (!pattern.test(token.text)) reader.fail(`"${token.text}" is not a valid ${what}`, token);
  return token.text;
}

export function splitAttribute(token: Token): [string, string] | undefined {
  const equals = token.text.indexOf("=");
  return equals > 0 ? [token.text.slice(0, equals), token.text.slice(equals + 1)] : undefined;
}

export const isKeyword = (token: Token, keywords: ReadonlySet<string>) =>
  !token.quoted && keywords.has(token.text);

export function readScore(token: Token, reader: StatementReader): number {
  if (!token.text.endsWith(":")) reader.fail(`expected "<score>:", found "${token.text}"`, token);
  const score = parseScore(token.text.slice(0, -1));
  if (typeof score !== "number") reader.fail(score.error, token);
  return score;
}

export const position = (reader: StatementReader): Located => ({
  line: reader.keyword.line,
  column: reader.keyword.column,
});
