// Haven's placement against Pacemaker's own scheduler: random configurations (test/pacemaker/scenario.ts)
// imported through `haven import crm` and `haven import cib` and planned by Haven's scheduler, and as a CIB
// run through Pacemaker 2.1.5's crm_simulate (Debian's pacemaker-cli-utils, which the setup installs).
// Agreement is up to tie-breaks (test/pacemaker/compare.ts); the table by feature is printed.
// `npm run test:pacemaker -- --count N [--seed S] [--verbose]` runs more of them.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  agreement,
  compared,
  DEFAULT_SEED,
  formatSummary,
  runDifferential,
} from "../pacemaker/differential.js";
import { SUITE_TIMEOUT } from "./harness.js";

/** Enough configurations to see every feature combined with the others, within a few minutes. */
const COUNT = 200;

test(
  `Haven places as Pacemaker does in at least 98 % of ${COUNT} random configurations`,
  SUITE_TIMEOUT,
  async () => {
    const summary = await runDifferential(DEFAULT_SEED, COUNT);
    console.log(formatSummary(summary));
    assert.deepEqual(summary.importsDiffer, [], "import crm and import cib give the same plan");
    assert.ok(compared(summary) >= COUNT * 0.9, "few configurations are refused by the import");
    assert.ok(
      agreement(summary) >= 0.98,
      `agreement ${(100 * agreement(summary)).toFixed(1)} % is below 98 %:\n${formatSummary(summary, true)}`,
    );
  },
);
