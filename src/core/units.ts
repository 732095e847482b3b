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

const SECONDS: Record<string, number> = {
  "": 1,
  ms: 0.001,
  s: 1,
  sec: 1,
  m: 60,
  min: 60,
  h: 3600,
  hr: 3600,
  d: 86400,
};

/** Parses durations as Pacemaker writes them ("300", "300s", "5min", "1h", "30000ms") into whole seconds. */
export function parseDurationSeconds(text: string): number | { error: string } {
  const match = /^\s*(\d+)\s*([a-z]*)\s*$/i.exec(text);
  const factor = match ? SECONDS[match[2]!.toLowerCase()] : undefined;
  if (!match || factor === undefined)
    return { error: `duration "${text}" is not a number of seconds (suffixes ms, s, min, h, d allowed)` };
  return Math.ceil(Number(match[1]) * factor);
}
