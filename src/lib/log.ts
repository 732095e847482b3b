// Structured logs: a constant message plus fields, one JSON line each, with a child logger per part.
export type Fields = Record<string, unknown>;

export interface Logger {
  info(message: string, fields?: Fields): void;
  warn(message: string, fields?: Fields): void;
  error(message: string, fields?: Fields): void;
  child(part: string): Logger;
}

export function createLogger(
  part: string,
  write: (line: string) => void = (line) => process.stderr.write(line),
): Logger {
  const emit =
    (level: string) =>
    (message: string, fields: Fields = {}) =>
      write(
        JSON.stringify({ time: new Date().toISOString(), level, part, message, ...serialize(fields) }) + "\n",
      );
  return {
    info: emit("info"),
    warn: emit("warn"),
    error: emit("error"),
    child: (child) => createLogger(`${part}.${child}`, write),
  };
}

export const silentLogger: Logger = {
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  child: () => silentLogger,
};

function serialize(fields: Fields): Fields {
  const out: Fields = {};
  for (const [key, value] of Object.entries(fields))
    out[key] = value instanceof Error ? value.message : value;
  return out;
}
