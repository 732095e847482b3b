// Option parsers: turn bad values into one clear line naming the option, before anything is sent.
import { InvalidArgumentError } from "commander";
import { inputError } from "../core/errors.js";
import { parseScore } from "../core/scheduler/scores.js";
import { parseDurationSeconds, parseSizeMb } from "../core/units.js";

export const intOption = (name: string) => (value: string) => {
  if (!/^-?\d+$/.test(value.trim()))
    throw new InvalidArgumentError(`${name} must be a whole number, got "${value}"`);
  return Number(value);
};

export const sizeOption = (name: string) => (value: string) => {
  const size = parseSizeMb(value);
  if (typeof size !== "number") throw new InvalidArgumentError(`${name}: ${size.error}`);
  return size;
};

export const durationOption = (name: string) => (value: string) => {
  const seconds = parseDurationSeconds(value);
  if (typeof seconds !== "number") throw new InvalidArgumentError(`${name}: ${seconds.error}`);
  return seconds;
};

/** A placement score as the scheduler reads it: a whole number within ±1,000,000, INFINITY or -INFINITY. */
export const scoreOption = (name: string) => (value: string) => {
  const score = parseScore(value);
  if (!score.ok) throw new InvalidArgumentError(`${name}: ${score.error}`);
  return score.score;
};

/** --accel of the commands that make nodes: probe KVM (auto), or force it or TCG. */
export function accelSetting(value: string): "auto" | "kvm" | "tcg" {
  if (value !== "auto" && value !== "kvm" && value !== "tcg")
    throw inputError("--accel must be auto, kvm or tcg");
  return value;
}

/** --lease-ttl of the commands that make clusters, in seconds. */
export function leaseTtlSetting(seconds: number): number {
  if (seconds < 2 || seconds > 300) throw inputError("--lease-ttl must be 2-300 seconds");
  return seconds;
}
