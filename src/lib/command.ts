// Runs programs with an argv array (never a shell) and a timeout; errors name the command and quote the
// last lines the program wrote to stderr.
import { spawn } from "node:child_process";

export class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(
      `${command} failed${exitCode === null ? " (timed out)" : ` (exit ${exitCode})`}: ${lastLines(stderr)}`,
    );
    this.name = "CommandError";
  }
}

export interface ExecOptions {
  timeoutMs?: number;
  /** Working directory of the program. */
  cwd?: string;
  /** Bytes written to the tool's stdin. */
  input?: string;
  /** Called with each chunk of stderr (progress output of `rbd import`). */
  onStderr?: (chunk: string) => void;
  /** Called with each chunk of stdout (progress output of `qemu-img convert -p`). */
  onStdout?: (chunk: string) => void;
}

const DEFAULT_TIMEOUT_MS = 30_000;

/** Runs any program with an argv array; resolves with stdout, rejects with CommandError. */
export function run(program: string, argv: string[], options: ExecOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, argv, { stdio: ["pipe", "pipe", "pipe"], cwd: options.cwd });
    let stdout = "";
    let stderr = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      options.onStdout?.(chunk.toString());
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
      options.onStderr?.(chunk.toString());
    });
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(new CommandError(`${program} ${argv.join(" ")}`, -1, err.message));
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(stdout);
      else reject(new CommandError(`${program} ${argv.slice(-6).join(" ")}`, signal ? null : code, stderr));
    });
    // A tool that exits before reading its stdin closes the pipe; its exit status says what went wrong.
    child.stdin.on("error", () => undefined);
    child.stdin.end(options.input ?? "");
  });
}

function lastLines(text: string): string {
  return text.trim().split("\n").slice(-3).join(" | ") || "no error output";
}
