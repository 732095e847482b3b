// Placement scores with Pacemaker's arithmetic: INFINITY is the finite number 1,000,000, sums saturate at
// ±INFINITY, and -INFINITY wins over everything (even +INFINITY), so a ban can never be outvoted.

export const INFINITY = 1_000_000;
export const MINUS_INFINITY = -INFINITY;

/** A score between -INFINITY and +INFINITY, both included. */
export type Score = number;

export type ScoreParse = { ok: true; score: Score } | { ok: false; error: string };

/** Words users may write for ±INFINITY (case does not matter). */
const INFINITE_WORDS = new Map<string, Score>([
  ["infinity", INFINITY],
  ["+infinity", INFINITY],
  ["inf", INFINITY],
  ["+inf", INFINITY],
  ["-infinity", MINUS_INFINITY],
  ["-inf", MINUS_INFINITY],
]);

const INTEGER = /^[+-]?\d+$/;

/**
 * Reads a score as users write it: an integer, "INFINITY", "+INFINITY", "-INFINITY" or "inf". Unlike
 * Pacemaker, which silently clamps, a finite number beyond ±1,000,000 is an error: such a number is almost
 * always a typo, and clamping would turn a preference into a mandatory rule without saying so.
 */
export function parseScore(input: string | number): ScoreParse {
  if (typeof input === "number") return checkRange(input, String(input));
  const text = input.trim();
  const infinite = INFINITE_WORDS.get(text.toLowerCase());
  if (infinite !== undefined) return { ok: true, score: infinite };
  if (!INTEGER.test(text)) {
    return { ok: false, error: `score "${input}" is not an integer, INFINITY or -INFINITY` };
  }
  return checkRange(Number(text), text);
}

function checkRange(value: number, text: string): ScoreParse {
  if (!Number.isSafeInteger(value)) {
    return { ok: false, error: `score ${text} is not an integer, INFINITY or -INFINITY` };
  }
  if (value > INFINITY || value < MINUS_INFINITY) {
    return {
      ok: false,
      error: `score ${text} is out of range: scores go from -INFINITY to INFINITY (±${INFINITY})`,
    };
  }
  // -0 would print as "0" but compare oddly in tests; normalise it.
  return { ok: true, score: value === 0 ? 0 : value };
}

/** Whether a score is a valid one (an integer within ±INFINITY). */
export function isScore(value: number): boolean {
  return Number.isSafeInteger(value) && value >= MINUS_INFINITY && value <= INFINITY;
}

/** Pacemaker's sum: -INFINITY absorbs everything, then +INFINITY, else the sum clamped to the range. */
export function addScores(a: Score, b: Score): Score {
  if (a <= MINUS_INFINITY || b <= MINUS_INFINITY) return MINUS_INFINITY;
  if (a >= INFINITY || b >= INFINITY) return INFINITY;
  return clampScore(a + b);
}

export function clampScore(value: number): Score {
  return Math.max(MINUS_INFINITY, Math.min(INFINITY, value));
}

/** Mandatory scores (±INFINITY) are rules; every other score is a preference. */
export function isMandatory(score: Score): boolean {
  return score >= INFINITY || score <= MINUS_INFINITY;
}

export function formatScore(score: Score): string {
  if (score >= INFINITY) return "INFINITY";
  if (score <= MINUS_INFINITY) return "-INFINITY";
  return String(score);
}
