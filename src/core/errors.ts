// The few semantic errors Haven speaks, each with a stable code, mapped to HTTP status and CLI exit code in
// this one place. User errors print one line; anything else is a bug and keeps its stack.

export type ErrorCode = "INPUT" | "NOT_FOUND" | "CONFLICT" | "UNAVAILABLE";

export class HavenError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "HavenError";
  }
}

export const inputError = (message: string) => new HavenError("INPUT", message);
export const notFound = (message: string) => new HavenError("NOT_FOUND", message);
export const conflict = (message: string) => new HavenError("CONFLICT", message);
export const unavailable = (message: string, cause?: unknown) =>
  new HavenError("UNAVAILABLE", message, { cause });

const httpStatusByCode: Record<ErrorCode, number> = {
  INPUT: 400,
  NOT_FOUND: 404,
  CONFLICT: 409,
  UNAVAILABLE: 503,
};

const exitCodeByCode: Record<ErrorCode, number> = {
  INPUT: 2,
  NOT_FOUND: 3,
  CONFLICT: 4,
  UNAVAILABLE: 5,
};

export const httpStatusOf = (code: ErrorCode): number => httpStatusByCode[code];
export const exitCodeOf = (code: ErrorCode): number => exitCodeByCode[code];

export function errorCodeFromHttpStatus(status: number): ErrorCode | undefined {
  return (Object.keys(httpStatusByCode) as ErrorCode[]).find((code) => httpStatusByCode[code] === status);
}
