// Shell-outs to Ceph's tools: argv arrays (never a shell), `--format json` where the tool speaks it,
// a timeout on every call, and errors that name the command and quote what the tool said.
import { spawn } from "node:child_process";

/** How a Ceph client identifies itself: the cluster's ceph.conf, a keyring and a cephx id. */
export interface CephIdentity {
  conf: string;
  keyring: string;
  /** cephx user without the "client." prefix, e.g. "admin" or "haven-node1". */
  id: string;
}

export class CephCommandError extends Error {
  constructor(
    readonly command: string,
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(
      `${command} failed${exitCode === null ? " (timed out)" : ` (exit ${exitCode})`}: ${lastLines(stderr)}`,
    );
    this.name = "CephCommandError";
  }
}

export interface ExecOptions {
  timeoutMs?: number;
  /** Bytes written to the tool's stdin. */
  input?: string;
  /** Called with each chunk of stderr (progress output of `rbd import`). */
  onStderr?: (chunk: string) => void;
  /** Called with each chunk of stdout (progress output of `qemu-img convert -p`). */
  onStdout?: (chunk: string) => void;
}

const DEFAULT_TIMEOUT_MS = 30_000;

/** Runs `tool` with the identity's conf/keyring/id prepended; resolves with stdout. */
export function cephExec(
  tool: "ceph" | "rbd",
  identity: CephIdentity,
  args: string[],
  options: ExecOptions = {},
): Promise<string> {
  const argv = ["--conf", identity.conf, "--keyring", identity.keyring, "--id", identity.id, ...args];
  return run(tool, argv, options);
}

/** Runs any program with an argv array; resolves with stdout, rejects with CephCommandError. */
export function run(program: string, argv: string[], options: ExecOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, argv, { stdio: ["pipe", "pipe", "pipe"] });
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
      reject(new CephCommandError(`${program} ${argv.join(" ")}`, -1, err.message));
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(stdout);
      else
        reject(new CephCommandError(`${program} ${argv.slice(-6).join(" ")}`, signal ? null : code, stderr));
    });
    // A tool that exits before reading its stdin closes the pipe; its exit status says what went wrong.
    child.stdin.on("error", () => undefined);
    child.stdin.end(options.input ?? "");
  });
}

function lastLines(text: string): string {
  return text.trim().split("\n").slice(-3).join(" | ") || "no error output";
}
