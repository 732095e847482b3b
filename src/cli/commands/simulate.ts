// haven simulate FILE: runs a scenario of the HA simulator (src/sim) and prints its event log. With a golden
// file next to it (FILE with .expected for .scenario) it compares and exits 1 on a difference; it also exits
// 1 when an invariant was violated. A bad scenario is an input error (exit 2) naming line and column.
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import type { Command } from "commander";
import { inputError, notFound } from "../../core/errors.js";
import { diffLines } from "../../sim/diff.js";
import { runScenario } from "../../sim/run.js";
import { parseScenario, ScenarioError, type Scenario } from "../../sim/scenario.js";
import type { CliContext } from "../context.js";
import { progress } from "../context.js";
import { printJson } from "../output.js";

interface SimulateOptions {
  json?: boolean;
  updateExpected?: boolean;
}

export function registerSimulate(program: Command, _ctx: CliContext): void {
  program
    .command("simulate <file>")
    .description(
      "run an HA simulator scenario (docs/simulator.md): Haven's own havend (node lease, agent, controller) on every node of a simulated cluster, printed as an event log and compared with FILE's .expected golden file when there is one",
    )
    .option("--json", "machine-readable output: events, log lines and invariant violations")
    .option("--update-expected", "write the log to the golden file instead of comparing")
    .action(async (file: string, options: SimulateOptions) => {
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
      const result = await runScenario(scenario);
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
    });
}
