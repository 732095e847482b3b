// Option parsers: turn bad values into one clear line naming the option, before anything is sent.
import { InvalidArgumentError } from "commander";
import { parseSizeMb } from "../core/units.js";

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
