// haven simulate FILE: runs a scenario of the HA simulator (src/sim) and prints its event log. With a golden
// file next to it (FILE with .expected for .scenario) it compares and exits 1 on a difference; it also exits
// 1 when an invariant was violated. A bad scenario is an input error (exit 2) naming line and column.
// haven simulate --random N [--seed S]: N random fault schedules, checked; a failing one prints as a
// scenario file; the last line counts the violations.
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import type { Command } from "commander";
import { inputError, notFound } from "../../core/errors.js";
import { diffLines } from "../../sim/diff.js";
import { RECOVERY_BOUND_MS, type RandomOutcome } from "../../sim/random.js";
import { runRandomSeeds } from "../../sim/random-pool.js";
import { runScenario } from "../../sim/run.js";
import { parseScenario, ScenarioError, type Scenario } from "../../sim/scenario.js";
import type { CliContext } from "../context.js";
import { progress } from "../context.js";
import { printJson } from "../output.js";
import { intOption } from "../parse.js";

interface SimulateOptions {
  json?: boolean;
  log?: boolean;
  updateExpected?: boolean;
  random?: number;
  seed?: number;
}

export function registerSimulate(program: Command, _ctx: CliContext): void {
  program
    .command("simulate [file]")
    .description(
      "run an HA simulator scenario (docs/simulator.md): Haven's own havend (node lease, agent, controller) on every node of a simulated cluster, printed as an event log and compared with FILE's .expected golden file when there is one; or, with --random N, N random fault schedules checked for safety and recovery",
    )
    .option("--json", "machine-readable output: events, log lines and invariant violations")
    .option("--update-expected", "write the log to the golden file instead of comparing")
    .option("--log", "also print the programs' own log lines (havend's, with the simulated time) on stderr")
    .option(
      "--random <n>",
      `run N random fault schedules instead of FILE; each is checked for the invariants and for every started guest running again within ${RECOVERY_BOUND_MS / 1000} s after the faults stop; a failing one is printed as a scenario file`,
      intOption("--random"),
    )
    .option(
      "--seed <s>",
      "with --random: the first seed (default 1); seeds S, S+1, … make the schedules",
      intOption("--seed"),
    )
    .action(async (file: string | undefined, options: SimulateOptions) => {
      if (options.random !== undefined) return simulateRandom(file, options);
      if (file === undefined) throw inputError("give a scenario FILE, or --random N");
      await simulateFile(file, options);
    });
}

async function simulateFile(file: string, options: SimulateOptions): Promise<void> {
  const source = await readFile(file, "utf8").catch((err: unknown) => {
    const message = `cannot read ${file}: ${(err as Error).message}`;
    throw (err as NodeJS.ErrnoException).code === "ENOENT" ? notFound(message) : inputError(message);
  });
  let scenario: Scenario;
  try {
    scenario = parseScenario(source);
  } catch (err) {
    if (err instanceof ScenarioError) throw inputError(`${file}:${err.message}`);
    throw err;
  }
  const result = await runScenario(scenario, {
    programLog: options.log ? (line) => process.stderr.write(line) : undefined,
  });
  const log = result.lines.join("\n") + "\n";
  if (options.json)
    printJson({
      file,
      events: result.events.map(({ at, time, type, vm, node, reason }) => ({
        at: at / 1000,
        time,
        type,
        vm,
        node,
        reason,
      })),
      log: result.lines,
      violations: result.violations.map((v) => ({ ...v, at: v.at / 1000 })),
    });
  else process.stdout.write(log);
  let failed = false;
  for (const violation of result.violations) {
    progress(
      `haven: invariant "${violation.invariant}" violated at ${violation.at / 1000} s: ${violation.message}`,
    );
    failed = true;
  }
  const expectedFile = file.endsWith(".scenario")
    ? file.replace(/\.scenario$/, ".expected")
    : `${file}.expected`;
  if (options.updateExpected) {
    await writeFile(expectedFile, log);
    progress(`wrote ${expectedFile}`);
  } else if (existsSync(expectedFile)) {
    const expected = (await readFile(expectedFile, "utf8")).replace(/\n$/, "").split("\n");
    const diff = diffLines(expected, result.lines);
    if (diff.length > 0) {
      progress(`haven: the log differs from ${expectedFile} (- expected, + actual):`);
      for (const line of diff) progress(line);
      failed = true;
    } else progress(`matches ${expectedFile}`);
  }
  if (failed) process.exitCode = 1;
}

/** Runs seeds S…S+N−1; prints each failing schedule (with its violations as comments) and a summary line. */
async function simulateRandom(file: string | undefined, options: SimulateOptions): Promise<void> {
  if (file !== undefined) throw inputError("give either a scenario FILE or --random N, not both");
  const count = options.random!;
  const first = options.seed ?? 1;
  if (count < 1) throw inputError("--random needs at least 1 schedule");
  let failing = 0;
  let violations = 0;
  let run = 0;
  const reports: RandomOutcome[] = [];
  await runRandomSeeds(first, count, (outcome) => {
    if (++run % 100 === 0) progress(`${run} of ${count} schedules run`);
    if (outcome.violations.length === 0) return;
    failing++;
    violations += outcome.violations.length;
    if (options.json) return void reports.push(outcome);
    const why = outcome.violations.map(
      (v) => `#   ${(v.at / 1000).toFixed(3)} s ${v.invariant}: ${v.message}`,
    );
    process.stdout.write(`# seed ${outcome.seed} failed:\n${why.join("\n")}\n${outcome.source}\n`);
  });
  const last = first + count - 1;
  const summary = `${count} random schedules (seeds ${first}${count > 1 ? `–${last}` : ""}): ${failing} failed, ${violations} violations`;
  if (options.json) printJson({ seeds: { first, last }, failing, violations, failures: reports });
  else process.stdout.write(`${summary}\n`);
  if (violations > 0) process.exitCode = 1;
}
