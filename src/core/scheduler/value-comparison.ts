// How Pacemaker compares an attribute's value with a rule's value (its attribute expressions), so that a
// rule imported from Pacemaker holds on exactly the nodes where it held there:
// - `string` compares without regard to case (strcasecmp), and is the default type of eq and ne;
// - lt, lte, gt and gte default to `number` when either value has a ".", else `integer`;
// - `integer` and `number` read the leading number of each value (as strtoll and strtod do) and compare
//   as text, still without regard to case, when either has none;
// - `version` compares dot-separated numbers one by one (2.10 is above 2.9).

export const VALUE_TYPES = ["string", "integer", "number", "version"] as const;
export type ValueType = (typeof VALUE_TYPES)[number];

/** Negative, 0 or positive as `left` sorts before, with or after `right` under the comparison's type. */
export function compareValues(
  left: string,
  right: string,
  comparison: string,
  type: ValueType | undefined,
): number {
  const effective = type ?? defaultType(left, right, comparison);
  switch (effective) {
    case "string":
      return compareText(left, right);
    case "integer": {
      const a = leadingInteger(left);
      const b = leadingInteger(right);
      if (a === null || b === null) return compareText(left, right);
      return a < b ? -1 : a > b ? 1 : 0;
    }
    case "number": {
      const a = leadingNumber(left);
      const b = leadingNumber(right);
      if (a === null || b === null) return compareText(left, right);
      return a < b ? -1 : a > b ? 1 : 0;
    }
    case "version":
      return compareVersions(left, right);
  }
}

function defaultType(left: string, right: string, comparison: string): ValueType {
  if (comparison === "eq" || comparison === "ne") return "string";
  return left.includes(".") || right.includes(".") ? "number" : "integer";
}

/** strcasecmp: byte by byte after ASCII lower-casing. */
export function compareText(left: string, right: string): number {
  const a = asciiLower(left);
  const b = asciiLower(right);
  return a < b ? -1 : a > b ? 1 : 0;
}

const asciiLower = (text: string) => text.replace(/[A-Z]/g, (char) => char.toLowerCase());

const INTEGER_PREFIX = /^[\s]*([+-]?\d+)/;
const LONG_LONG_MAX = 2n ** 63n - 1n;
const LONG_LONG_MIN = -(2n ** 63n);

/** strtoll: the leading integer (clipped to 64 bits, as strtoll clips), or null when there is none. */
function leadingInteger(text: string): bigint | null {
  const match = INTEGER_PREFIX.exec(text);
  if (!match) return null;
  const value = BigInt(match[1]!);
  return value > LONG_LONG_MAX ? LONG_LONG_MAX : value < LONG_LONG_MIN ? LONG_LONG_MIN : value;
}

const NUMBER_PREFIX = /^\s*([+-]?(?:inf(?:inity)?|nan|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?))/i;

/** strtod: the leading decimal number (inf and nan included), or null when there is none. */
function leadingNumber(text: string): number | null {
  const match = NUMBER_PREFIX.exec(text);
  if (!match) return null;
  const written = match[1]!.toLowerCase();
  const sign = written.startsWith("-") ? -1 : 1;
  const unsigned = written.replace(/^[+-]/, "");
  if (unsigned.startsWith("inf")) return sign * Infinity;
  if (unsigned === "nan") return NaN;
  return Number(written);
}

/** Pacemaker's compare_version: each dot-separated part as a number, missing parts as 0. */
function compareVersions(left: string, right: string): number {
  const a = versionParts(left);
  const b = versionParts(right);
  for (let index = 0; index < Math.max(a.length, b.length); index++) {
    const difference = (a[index] ?? 0) - (b[index] ?? 0);
    if (difference !== 0) return difference < 0 ? -1 : 1;
  }
  return 0;
}

function versionParts(text: string): number[] {
  if (text === "") return [];
  return text.split(".").map((part) => {
    const match = /^\s*[+-]?\d+/.exec(part);
    return match ? Number(match[0]) : 0;
  });
}
