// The words of scenario files: tokens with their columns, durations, key=value options, and the error that
// names the line and column of the offending word. The statements are parsed in scenario.ts.
import { parseScore } from "../core/scheduler/scores.js";

export class ScenarioError extends Error {
  constructor(
    readonly line: number,
    readonly column: number,
    readonly reason: string,
  ) {
    super(`${line}:${column}: ${reason}`);
    this.name = "ScenarioError";
  }
}

export interface Token {
  text: string;
  column: number;
}

export class Options {
  constructor(
    private readonly byKey: Map<string, Token>,
    private readonly line: number,
  ) {}

  token(key: string): Token | undefined {
    return this.byKey.get(key);
  }

  int(key: string, fallback: number, min: number, max: number): number {
    const token = this.byKey.get(key);
    if (!token) return fallback;
    const value = valueToken(token);
    if (!/^-?\d+$/.test(value.text))
      throw new ScenarioError(this.line, value.column, `${key} must be a whole number, got '${value.text}'`);
    const n = Number(value.text);
    if (n < min || n > max)
      throw new ScenarioError(this.line, value.column, `${key} must be between ${min} and ${max}, got ${n}`);
    return n;
  }

  /** A placement score: a whole number within ±1,000,000, INFINITY or -INFINITY (parseScore). */
  score(key: string, fallback: number): number {
    const token = this.byKey.get(key);
    if (!token) return fallback;
    const value = valueToken(token);
    const parsed = parseScore(value.text);
    if (!parsed.ok) throw new ScenarioError(this.line, value.column, `${key}: ${parsed.error}`);
    return parsed.score;
  }

  duration(key: string, fallbackMs: number): number {
    const token = this.byKey.get(key);
    return token ? duration(valueToken(token), this.line) : fallbackMs;
  }

  onOff(key: string, fallback: boolean): boolean {
    return this.choice(key, ["on", "off"], fallback ? "on" : "off") === "on";
  }

  choice(key: string, choices: string[], fallback: string): string {
    const token = this.byKey.get(key);
    if (!token) return fallback;
    const value = valueToken(token);
    if (!choices.includes(value.text))
      throw new ScenarioError(
        this.line,
        value.column,
        `${key} must be ${choices.join(" or ")}, got '${value.text}'`,
      );
    return value.text;
  }
}

export const isOption = (token: Token) => /^[a-z-]+=/.test(token.text);

/** The value part of a key=value token, with its own column. */
export function valueToken(token: Token): Token {
  const eq = token.text.indexOf("=");
  return { text: token.text.slice(eq + 1), column: token.column + eq + 1 };
}

/** `10s`, `1.5s`, `500ms`, `2m`, `1h`; a bare number is seconds. Returns ms. */
export function duration(token: Token, line: number): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|min|h)?$/.exec(token.text);
  if (!match)
    throw new ScenarioError(line, token.column, `'${token.text}' is not a duration (like 10s, 500ms, 2m)`);
  const factor = { ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000 }[match[2] ?? "s"]!;
  return Math.round(Number(match[1]) * factor);
}

/** Splits a line into words, keeping "quoted text" (and key="quoted text") together; `#` starts a comment. */
export function tokenize(text: string, line: number): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === "#") break;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    const column = i + 1;
    let word = "";
    while (i < text.length && !/\s/.test(text[i]!) && text[i] !== "#") {
      if (text[i] === '"') {
        const end = text.indexOf('"', i + 1);
        if (end < 0) throw new ScenarioError(line, i + 1, "unterminated quote");
        word += text.slice(i + 1, end);
        i = end + 1;
      } else word += text[i++];
    }
    tokens.push({ text: word, column });
  }
  return tokens;
}

/** `12.300s`, as the log writes times. */
export function formatTime(ms: number): string {
  return `${(ms / 1000).toFixed(3)}s`;
}
