// Running programs inside a network namespace: `ip netns exec NS …` sets the namespace (and remounts /sys so
// the program sees that namespace's interfaces), then executes the program in place, so its pid is the one
// spawned. A program given no namespace runs where the caller runs.
import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { run } from "./command.js";

/** The argv that runs `argv` inside `namespace` (unchanged when there is none). */
export const inNamespace = (namespace: string | undefined, argv: string[]): string[] =>
  namespace === undefined ? argv : ["ip", "netns", "exec", namespace, ...argv];

/** Spawns `argv` inside `namespace` (where the caller runs when there is none). */
export function spawnInNamespace(
  namespace: string | undefined,
  argv: string[],
  options: SpawnOptions = {},
): ChildProcess {
  const [program, ...args] = inNamespace(namespace, argv);
  return spawn(program!, args, options);
}

/** Runs `argv` inside `namespace` with this process's stdio; resolves with its exit code. */
export function execInNamespace(namespace: string, argv: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawnInNamespace(namespace, argv, { stdio: "inherit" });
    child.on("error", reject);
    child.on("close", (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

/** Runs `argv` inside `namespace` and resolves with its output (see lib/command's run). */
export function runInNamespace(namespace: string, argv: string[], input?: string): Promise<string> {
  const [program, ...args] = inNamespace(namespace, argv);
  return run(program!, args, input === undefined ? {} : { input });
}

/** The network namespaces there are (`ip netns list`). */
export async function namespaces(): Promise<string[]> {
  const listing = await run("ip", ["netns", "list"]);
  return listing
    .split("\n")
    .map((line) => line.split(" ")[0]!)
    .filter(Boolean);
}

/** Whether the interface `name` exists, in `namespace` or here. */
export function linkExists(name: string, namespace?: string): Promise<boolean> {
  const where = namespace === undefined ? [] : ["-n", namespace];
  return run("ip", [...where, "link", "show", "dev", name]).then(
    () => true,
    () => false,
  );
}
