// Sizes as administrators type them: megabytes by default, with M, G or T suffixes (the seed's habit).
const FACTORS: Record<string, number> = { "": 1, M: 1, G: 1024, T: 1024 * 1024 };

/** Parses "1024", "512M", "2G" or "1T" into megabytes; returns an error message for anything else. */
export function parseSizeMb(text: string): number | { error: string } {
  const match = /^\s*(-?\d+(?:\.\d+)?)\s*([MGT]?)(?:i?B)?\s*$/i.exec(text);
  if (!match) return { error: `size "${text}" is not a number of megabytes (suffixes M, G, T allowed)` };
  const value = Number(match[1]) * FACTORS[match[2]!.toUpperCase()]!;
  if (!Number.isInteger(value)) return { error: `size "${text}" is not a whole number of megabytes` };
  if (value <= 0) return { error: `size "${text}" must be greater than zero` };
  return value;
}
