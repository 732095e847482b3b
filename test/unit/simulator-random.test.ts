// Random fault schedules (src/sim/random.ts): a seed always makes the same schedule and the same run, a few
// hundred seeds find no violation (HAVEN_SIM_SEEDS=N runs another number; `haven simulate --random N` more),
// and the recovery check does report a guest that does not run again.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { randomScenario, runRandomSeed, notRecovered, type RandomOutcome } from "../../src/sim/random.js";
import { runRandomSeeds } from "../../src/sim/random-pool.js";
import { simulate } from "../../src/sim/run.js";
import { parseScenario } from "../../src/sim/scenario.js";

const SEEDS = Number(process.env.HAVEN_SIM_SEEDS ?? 300);

describe("random fault schedules", () => {
  test("a seed makes the same schedule and the same run every time", async () => {
    assert.equal(randomScenario(42).source, randomScenario(42).source);
    assert.notEqual(randomScenario(42).source, randomScenario(43).source);
    const source = randomScenario(42).source;
    assert.doesNotThrow(() => parseScenario(source));
    assert.deepEqual((await simulate(source)).lines, (await simulate(source)).lines);
  });

  test("the recovery check reports a started guest that does not run again", async () => {
    const source = [
      "cluster nodes=2",
      "vm web",
      "vm db",
      "at 0s start web",
      "at 0s start db",
      "at 0s storage-fence fail",
      "at 5s power-off node1",
      "run until 40s",
    ].join("\n");
    const scenario = parseScenario(source);
    const { world } = await simulate(source);
    assert.deepEqual(notRecovered(world, scenario), [
      "db is unknown on node1, generation 1 60 s after the faults stopped",
    ]);
  });

  test(`${SEEDS} random schedules: no invariant violated, every started guest running again`, async () => {
    const failures: RandomOutcome[] = [];
    await runRandomSeeds(1, SEEDS, (outcome) => {
      if (outcome.violations.length > 0) failures.push(outcome);
    });
    const report = failures.map(
      (f) =>
        `seed ${f.seed}:\n${f.violations.map((v) => `  ${v.at / 1000} s ${v.invariant}: ${v.message}`).join("\n")}\n${f.source}`,
    );
    assert.deepEqual(report, []);
  });

  test("one seed runs the same in a worker and here", async () => {
    const here = await runRandomSeed(5);
    let there: RandomOutcome | undefined;
    await runRandomSeeds(5, 1, (outcome) => (there = outcome));
    assert.deepEqual(there, here);
  });
});
