// Scores one guest on every node, given what the round has placed so far. The hot path keeps plain
// numbers; with `traced` it also records each contribution, which `explain` and the reasons use.
import type { VmIndex } from "./prepare.js";
import { fits, freeMemory, type Round } from "./round.js";
import { addScores, formatScore, INFINITY, isMandatory, MINUS_INFINITY, type Score } from "./scores.js";
import type { ColocationSetConstraint, Contribution, SchedVm, VmRuntime } from "./types.js";

export interface Scored {
  scores: Score[];
  /** Per node, only when traced. */
  contributions: Contribution[][] | null;
}

/** A preference (finite colocation score) that may be left out if it would leave the guest nowhere. */
interface Preference {
  source: string;
  score: Score;
  nodes: number[];
  amounts: Score[];
  detail: (node: number, amount: Score) => string;
}

type Note = (node: number, source: string, score: Score, detail: () => string, ignored?: boolean) => void;

export interface ScoreOptions {
  /** Record every contribution (for explanations and reasons). */
  traced: boolean;
  /** May take room held by pending guests of lower priority (see freeRoom). */
  displace: boolean;
}

export function scoreVm(
  round: Round,
  vm: SchedVm,
  runtime: VmRuntime,
  current: number,
  options: ScoreOptions,
): Scored {
  const { traced } = options;
  const nodeCount = round.prepared.nodes.length;
  const scores = new Array<Score>(nodeCount).fill(0);
  const contributions = traced ? Array.from({ length: nodeCount }, (): Contribution[] => []) : null;
  const note: Note = (node, source, score, detail, ignored = false) => {
    if (!ignored) scores[node] = addScores(scores[node]!, score);
    if (contributions) {
      contributions[node]!.push({ source, score, detail: detail(), ...(ignored ? { ignored } : {}) });
    }
  };
  const index = round.prepared.index.get(vm.name)!;
  applyNodeConditions(round, vm, options.displace, note);
  applyLocations(index, note);
  if (current >= 0 && vm.stickiness !== 0) note(current, "stickiness", vm.stickiness, () => "runs here now");
  applyFailures(round, vm, runtime, note);
  const preferences = applyColocations(round, index, note);
  applyPreferences(preferences, scores, note);
  return { scores, contributions };
}

function applyNodeConditions(round: Round, vm: SchedVm, displace: boolean, note: Note): void {
  const { nodes } = round.prepared;
  const lacking = () =>
    `not enough free capacity for ${vm.vcpus} vCPUs and ${vm.memoryMb} MB` +
    (displace ? " even without lower-priority guests" : "");
  for (let node = 0; node < nodes.length; node++) {
    const { online, standby } = nodes[node]!;
    if (!online) {
      note(node, "offline", MINUS_INFINITY, () => "offline");
    } else if (standby) {
      note(node, "standby", MINUS_INFINITY, () => "in standby");
    } else if (!fits(round, node, vm, displace)) {
      note(node, "capacity", MINUS_INFINITY, lacking);
    }
  }
}

function applyLocations(index: VmIndex, note: Note): void {
  for (const { constraint, node } of index.locations) {
    note(
      node,
      constraint.id,
      constraint.score,
      () => `location ${constraint.id} (${formatScore(constraint.score)})`,
    );
  }
  for (const { constraint, matches } of index.rules) {
    const detail = () =>
      `rule "${constraint.rule}" of ${constraint.id} holds (${formatScore(constraint.score)})`;
    for (let node = 0; node < matches.length; node++) {
      if (matches[node] !== 0) note(node, constraint.id, constraint.score, detail);
    }
  }
}

/** Pacemaker's migration-threshold: enough recent failures on a node ban the guest from it. */
function applyFailures(round: Round, vm: SchedVm, runtime: VmRuntime, note: Note): void {
  if (vm.migrationThreshold <= 0) return;
  for (const failure of runtime.failures) {
    const node = round.prepared.nodeIndex.get(failure.node);
    const expired =
      vm.failureTimeoutS > 0 && round.nowMs - failure.lastFailureMs >= vm.failureTimeoutS * 1000;
    if (node === undefined || expired || failure.count < vm.migrationThreshold) continue;
    note(
      node,
      "migration-threshold",
      MINUS_INFINITY,
      () => `${failure.count} failures reached migration-threshold ${vm.migrationThreshold}`,
    );
  }
}

/**
 * Colocations with placed partners: mandatory ones apply at once, finite ones become preferences.
 * Partners still pending (running, turn not come yet) count where they run, as preferences even when
 * mandatory, because they may yet move: the guest avoids (or seeks) them unless that leaves it nowhere.
 */
function applyColocations(round: Round, index: VmIndex, note: Note): Preference[] {
  const preferences: Preference[] = [];
  const nodes = round.prepared.nodes;
  for (const { constraint, partner } of index.colocations) {
    const { id, score } = constraint;
    const where = round.placed.get(partner);
    if (where === undefined) {
      const pendingAt = round.pending.get(partner);
      if (pendingAt !== undefined) {
        preferences.push(pairPreference(id, score, pendingAt, `${partner} runs here, yet to be placed`));
      }
    } else if (score >= INFINITY) {
      const here = () => `must run with ${partner} (${id}), which runs here`;
      const elsewhere = () => `must run with ${partner} (${id}), which runs on ${nodes[where]!.name}`;
      for (let node = 0; node < nodes.length; node++) {
        note(node, id, node === where ? INFINITY : MINUS_INFINITY, node === where ? here : elsewhere);
      }
    } else if (score <= MINUS_INFINITY) {
      note(where, id, MINUS_INFINITY, () => `must not run with ${partner} (${id}), which runs here`);
    } else {
      preferences.push(pairPreference(id, score, where, `${partner} runs here`));
    }
  }
  for (const { constraint, set } of index.sets) applySet(round, constraint, set, note, preferences);
  return preferences;
}

function pairPreference(id: string, score: Score, node: number, what: string): Preference {
  return {
    source: id,
    score,
    nodes: [node],
    amounts: [score],
    detail: (_node, amount) => `${what} (${id}, ${formatScore(amount)})`,
  };
}

/** A set acts like pairwise colocations with each member placed or pending, counted per node. */
function applySet(
  round: Round,
  constraint: ColocationSetConstraint,
  set: number,
  note: Note,
  preferences: Preference[],
): void {
  const { id, score } = constraint;
  const placed = round.setPlaced[set]!;
  const pending = round.setPending[set]!;
  const together = score >= INFINITY && placed.some((members) => members > 0);
  const here = () => `members of set ${id} run here`;
  const elsewhere = () => `must run with the members of set ${id}, which run elsewhere`;
  const apart = () => `members of set ${id} run here (-INFINITY)`;
  // Mandatory sets leave only pending members as preferences; finite ones count every member.
  const counted = (node: number) => {
    if (!isMandatory(score)) return placed[node]! + pending[node]!;
    return placed[node]! > 0 || together ? 0 : pending[node]!;
  };
  const nodes: number[] = [];
  const amounts: Score[] = [];
  for (let node = 0; node < placed.length; node++) {
    if (together) {
      note(node, id, placed[node]! > 0 ? INFINITY : MINUS_INFINITY, placed[node]! > 0 ? here : elsewhere);
    } else if (score <= MINUS_INFINITY && placed[node]! > 0) {
      note(node, id, MINUS_INFINITY, apart);
    }
    const members = counted(node);
    if (members === 0) continue;
    nodes.push(node);
    amounts.push(addScores(0, score * members));
  }
  if (nodes.length === 0) return;
  const detail = (node: number, amount: Score) =>
    `${counted(node)} member(s) of set ${id} here, ${pending[node]} of them yet to be placed (${formatScore(amount)})`;
  preferences.push({ source: id, score, nodes, amounts, detail });
}

/**
 * Preferences in order of strength (then id). As in Pacemaker, a preference that would leave no node
 * with a non-negative score is left out: "should not run together" must not become "cannot run".
 */
function applyPreferences(preferences: Preference[], scores: Score[], note: Note): void {
  if (preferences.length === 0) return;
  preferences.sort(
    (a, b) =>
      Math.abs(b.score) - Math.abs(a.score) || (a.source < b.source ? -1 : a.source > b.source ? 1 : 0),
  );
  let eligible = scores.reduce((count, score) => (score >= 0 ? count + 1 : count), 0);
  for (const preference of preferences) {
    let lost = 0;
    preference.nodes.forEach((node, position) => {
      if (scores[node]! >= 0 && addScores(scores[node]!, preference.amounts[position]!) < 0) lost++;
    });
    const ignored = eligible > 0 && lost >= eligible;
    if (!ignored) eligible -= lost;
    preference.nodes.forEach((node, position) => {
      const amount = preference.amounts[position]!;
      note(node, preference.source, amount, () => preference.detail(node, amount), ignored);
    });
  }
}

/** The highest eligible score; ties go to the current node, then the most free memory, then the name. */
export function bestNode(round: Round, scores: readonly Score[], current: number): number {
  let best = -1;
  for (let node = 0; node < scores.length; node++) {
    const score = scores[node]!;
    if (score < 0) continue;
    if (
      best < 0 ||
      score > scores[best]! ||
      (score === scores[best]! && betterTie(round, node, best, current))
    ) {
      best = node;
    }
  }
  return best;
}

function betterTie(round: Round, node: number, best: number, current: number): boolean {
  if (best === current) return false;
  if (node === current) return true;
  // Nodes are visited in name order, so on equal free memory the earlier name is kept.
  return freeMemory(round, node) > freeMemory(round, best);
}
