// The differential test's runner: random scenarios (scenario.ts) through Pacemaker's crm_simulate and through
// Haven's import (crm and CIB) and scheduler, compared up to tie-breaks (compare.ts), with the agreement by
// feature. `npm run test:pacemaker -- --count N [--seed S] [--verbose]` runs it on its own; the suite runs
// a fixed seed (test/integration/pacemaker-differential.test.ts).
import { pathToFileURL } from "node:url";
import { cibOf } from "./cib.js";
import { compare } from "./compare.js";
import { schedule } from "../../src/core/scheduler/scheduler.js";
import { crmSimulate, hasCrmSimulate, scratch, type PacemakerAnswer } from "./crm-simulate.js";
import { havenAnswer } from "./haven-side.js";
import { configOf, stateOf } from "./render.js";
import { generateScenario, type Scenario } from "./scenario.js";

export const DEFAULT_SEED = 20250615;

export interface Summary {
  seed: number;
  count: number;
  /** Scenarios Haven's import refuses (contradictory mandatory constraints), with the first reason. */
  refused: Array<{ name: string; reason: string }>;
  agreed: number;
  /** Agreeing scenarios in which some guest was placed on another node of equal score. */
  withTies: number;
  /**
   * Scenarios whose only difference comes from a tie Haven breaks its own way: a running guest stays on its
   * node when another node merely scores as high (docs/placement.md). With that rule off, Haven places every
   * guest as Pacemaker does. Counted as agreeing: the difference is a tie-break and what follows from it.
   */
  byStayingOnTies: Array<{ name: string; differences: string[] }>;
  /**
   * Scenarios that differ because Haven keeps a running guest's room against guests of its priority or lower
   * placed before it, where Pacemaker moves or stops the running guest. Not counted as agreeing.
   */
  byKeepingRoom: Array<{ name: string; differences: string[] }>;
  disagreed: Array<{ name: string; cause: string; differences: string[]; features: string[] }>;
  /** Scenarios whose crm and CIB imports gave different plans: a fault in Haven's import. */
  importsDiffer: string[];
  byFeature: Map<string, { compared: number; agreed: number }>;
}

export async function runDifferential(seed: number, count: number): Promise<Summary> {
  if (!hasCrmSimulate())
    throw new Error("crm_simulate is missing: the setup installs it (Debian's pacemaker-cli-utils)");
  const summary: Summary = {
    seed,
    count,
    refused: [],
    agreed: 0,
    withTies: 0,
    byStayingOnTies: [],
    byKeepingRoom: [],
    disagreed: [],
    importsDiffer: [],
    byFeature: new Map(),
  };
  const files = scratch();
  try {
    for (let index = 0; index < count; index++) {
      const scenario = generateScenario(seed, index);
      const fromCrm = await havenAnswer(scenario, "crm");
      const fromCib = await havenAnswer(scenario, "cib");
      if (JSON.stringify(summaryOf(fromCrm)) !== JSON.stringify(summaryOf(fromCib))) {
        summary.importsDiffer.push(scenario.name);
      }
      if ("refused" in fromCrm) {
        const reason = fromCrm.refused.split("\n").find((line) => line.includes(": error: ")) ?? "";
        summary.refused.push({ name: scenario.name, reason: reason.replace(/^.*?: error: /, "") });
        continue;
      }
      const file = files.file(`${index}.xml`);
      const pacemaker = crmSimulate(cibOf(configOf(scenario), stateOf(scenario)), file, scenario.name);
      let verdict = compare(scenario, pacemaker, fromCrm);
      if (!verdict.agree) {
        // Does the difference come only from one of Haven's rules for running guests?
        const agreesWith = async (runningGuests: { ties?: boolean; room?: boolean }) => {
          const answer = await havenAnswer(scenario, "crm", { runningGuests });
          return !("refused" in answer) && compare(scenario, pacemaker, answer).agree;
        };
        const entry = { name: scenario.name, differences: verdict.differences };
        if (await agreesWith({ ties: false })) {
          summary.byStayingOnTies.push(entry);
          verdict = { ...verdict, agree: true };
        } else if (await agreesWith({ ties: false, room: false })) {
          summary.byKeepingRoom.push(entry);
          verdict = { ...verdict, cause: "Haven keeps the room of a running guest (docs/placement.md)" };
        } else if (knowingDownNodes(scenario, pacemaker)) {
          verdict = { ...verdict, cause: "Haven does not know the capacity of nodes that are down" };
        }
      }
      for (const feature of featuresOf(scenario)) {
        const row = summary.byFeature.get(feature) ?? { compared: 0, agreed: 0 };
        row.compared++;
        if (verdict.agree) row.agreed++;
        summary.byFeature.set(feature, row);
      }
      if (!verdict.agree) {
        const { cause, differences } = verdict;
        summary.disagreed.push({
          name: scenario.name,
          cause: cause!,
          differences,
          features: featuresOf(scenario),
        });
      } else {
        summary.agreed++;
        if (verdict.ties.length > 0) summary.withTies++;
      }
    }
  } finally {
    files.done();
  }
  return summary;
}

/**
 * Whether the scheduler, given what Haven cannot know after an import — the capacity of the nodes that are
 * down — places every guest as Pacemaker does (with Haven's rules for running guests off).
 */
function knowingDownNodes(scenario: Scenario, pacemaker: PacemakerAnswer): boolean {
  const config = { ...configOf(scenario), runningGuests: { ties: false, room: false } };
  const plan = schedule(config, stateOf(scenario));
  const placement = new Map<string, string | null>(scenario.vms.map((vm) => [vm.name, null]));
  for (const action of plan.actions)
    if (action.type !== "stop" && action.to) placement.set(action.vm, action.to);
  return compare(scenario, pacemaker, { placement, scores: () => new Map() }).agree;
}

/** The scenario's features, and "no colocations" for one without any, to compare with those that have some. */
function featuresOf(scenario: Scenario): string[] {
  const features = [...scenario.features];
  if (!features.some((feature) => feature.includes("colocation"))) features.push("no colocations");
  return features;
}

const summaryOf = (answer: Awaited<ReturnType<typeof havenAnswer>>) =>
  "refused" in answer ? "refused" : [...answer.placement];

export const compared = (summary: Summary) => summary.agreed + summary.disagreed.length;
export const agreement = (summary: Summary) => summary.agreed / Math.max(1, compared(summary));

const percent = (part: number, whole: number) => `${((100 * part) / Math.max(1, whole)).toFixed(1)} %`;

/** The agreement table: overall, then by feature (a scenario counts once for each feature it has). */
export function formatSummary(summary: Summary, verbose = false): string {
  const lines: string[] = [];
  const total = compared(summary);
  lines.push(
    `Haven vs Pacemaker (crm_simulate), seed ${summary.seed}: ${summary.count} random configurations, ` +
      `${summary.refused.length} refused by Haven's import, ${total} compared`,
  );
  const rows: string[][] = [
    ["all configurations", String(total), String(summary.agreed), percent(summary.agreed, total)],
    ...[...summary.byFeature]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([feature, row]) => [
        feature,
        String(row.compared),
        String(row.agreed),
        percent(row.agreed, row.compared),
      ]),
  ];
  const header = ["feature", "configurations", "agree", "agreement"];
  const widths = header.map((cell, column) =>
    Math.max(cell.length, ...rows.map((row) => row[column]!.length)),
  );
  const line = (row: string[]) =>
    row
      .map((cell, column) => (column === 0 ? cell.padEnd(widths[0]!) : cell.padStart(widths[column]!)))
      .join("  ");
  lines.push(line(header), widths.map((width) => "-".repeat(width)).join("  "), ...rows.map(line));
  lines.push(
    `${summary.withTies} agreeing configurations place some guest on another node of equal score (a tie-break); ` +
      `${summary.byStayingOnTies.length} more differ only where a running guest stays on a node that scores as ` +
      "high as the best one, and what follows from it (Haven's tie-break, docs/placement.md)",
  );
  if (summary.importsDiffer.length > 0)
    lines.push(`crm and CIB imports gave different plans: ${summary.importsDiffer.join(", ")}`);
  const causes = new Map<string, number>();
  for (const { cause } of summary.disagreed) {
    const kind = cause.replace(/ of \S+ differ:.*/, " differ");
    causes.set(kind, (causes.get(kind) ?? 0) + 1);
  }
  if (causes.size > 0) {
    lines.push("disagreements by cause:");
    for (const [cause, count] of causes) lines.push(`  ${count}  ${cause}`);
  }
  const refusals = new Map<string, number>();
  for (const { reason } of summary.refused) {
    // "contradiction: vm3 is banned from every node (by c002-loc)" → "contradiction: … is banned from every node"
    const kind = reason.replace(/ \((by|at) [^)]*\)/g, "").replace(/\b(vm|c|n)\d+[\w-]*/g, "…");
    refusals.set(kind, (refusals.get(kind) ?? 0) + 1);
  }
  if (refusals.size > 0) {
    lines.push("refused by Haven's import:");
    for (const [reason, count] of refusals) lines.push(`  ${count}  ${reason}`);
  }
  if (verbose)
    for (const { name, differences } of summary.byStayingOnTies)
      lines.push(`${name} (a running guest stays on a tie): ${differences.join("; ")}`);
  const shown = verbose ? summary.disagreed : summary.disagreed.slice(0, 10);
  for (const { name, cause, differences } of shown)
    lines.push(`${name}: ${differences.join("; ")} — ${cause}`);
  return lines.join("\n");
}

function argument(name: string): string | undefined {
  const position = process.argv.indexOf(name);
  return position < 0 ? undefined : process.argv[position + 1];
}

async function main(): Promise<void> {
  const count = Number(argument("--count") ?? 300);
  const seed = Number(argument("--seed") ?? DEFAULT_SEED);
  const summary = await runDifferential(seed, count);
  console.log(formatSummary(summary, process.argv.includes("--verbose")));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) await main();
