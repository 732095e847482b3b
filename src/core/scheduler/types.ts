// The scheduler's inputs and outputs. Configuration (what users asked for: guests, their policies and
// constraints) is kept apart from state (what the cluster observes: nodes, where guests run, failures),
// so the same configuration can be scheduled against any state, as Pacemaker's crm_simulate does.
import { z } from "zod";
import { nameSchema, nodeNameSchema, vmNameSchema } from "../model.js";
import { parseRule } from "./rules.js";
import { INFINITY, parseScore, type Score } from "./scores.js";

export interface SchedNode {
  name: string;
  /** The node holds a valid lease: its agent runs and may run guests. */
  online: boolean;
  /** Maintenance: the node keeps running but takes no guests; its guests leave (Pacemaker's standby). */
  standby: boolean;
  /** Free-form labels such as `hw=vm`, matched by location rules. */
  attributes: Readonly<Record<string, string>>;
  capacity: { vcpus: number; memoryMb: number };
}

/** One guest's resources and placement policy: the configuration side. */
export interface SchedVm {
  name: string;
  /** Pacemaker's target-role: whether the guest should run at all. */
  state: "started" | "stopped";
  vcpus: number;
  memoryMb: number;
  /** Move by live migration (Pacemaker's allow-migrate); otherwise stop here and start there. */
  allowMigrate: boolean;
  /** Added to the score of the node the guest runs on, so it stays unless something outweighs it. As in
   * Pacemaker, a stickiness below 1 has no effect. */
  stickiness: Score;
  /** Higher priorities are placed first and so win contested capacity (then by name, as Pacemaker goes
   * by the order of the configuration). */
  priority: number;
  /** Failures on one node after which that node is banned for the guest; 0 turns the ban off. */
  migrationThreshold: number;
  /** Seconds after the last failure on a node when that node's failures are forgotten; 0 = never. */
  failureTimeoutS: number;
}

/** Failures of a guest on one node (for migration-threshold), with the time of the latest one. */
export interface VmFailures {
  node: string;
  count: number;
  lastFailureMs: number;
}

/** One guest's observed state. */
export interface VmRuntime {
  /** The node the guest is placed on (running or meant to run), or null. */
  node: string | null;
  /** Whether the guest's QEMU is running on `node` right now. */
  running: boolean;
  failures: readonly VmFailures[];
}

/**
 * Pacemaker's placement-strategy: `default` ignores capacity and spreads guests by count; `utilization`
 * keeps guests off nodes without room for them; `balanced` does that and prefers the node with more room
 * left; `minimal` does that and breaks ties by node name only, filling nodes one by one.
 */
export const PLACEMENT_STRATEGIES = ["default", "utilization", "balanced", "minimal"] as const;
export type PlacementStrategy = (typeof PLACEMENT_STRATEGIES)[number];
/** Haven's default: balanced, so that no plan puts a guest on a node without room for it. */
export const DEFAULT_PLACEMENT_STRATEGY: PlacementStrategy = "balanced";

export interface SchedConfig {
  vms: readonly SchedVm[];
  /** Applied in this order where several add up on one node (Pacemaker: the order in the CIB). */
  constraints: readonly Constraint[];
  /** Absent: DEFAULT_PLACEMENT_STRATEGY. */
  placementStrategy?: PlacementStrategy;
  /**
   * Haven's two departures from Pacemaker for running guests (docs/placement.md), each on unless turned off:
   * a running guest stays on its node when no node scores higher (`ties`), and keeps its room against guests
   * of its priority or lower placed before it (`room`). Both off, the scheduler answers as Pacemaker would.
   */
  runningGuests?: { ties?: boolean; room?: boolean };
}

export interface SchedState {
  nodes: readonly SchedNode[];
  /** Observed guests by name; a guest missing here is neither placed nor running. */
  vms: ReadonlyMap<string, VmRuntime>;
  /** Current time (ms since the epoch), only used to expire failures. */
  nowMs: number;
}

// ---- constraints ---------------------------------------------------------------------------------

/** A score as users write it (number, "INFINITY", "-INFINITY", "inf"), read into a number. */
export const scoreSchema = z.union([z.number(), z.string()]).transform((input, context): Score => {
  const parsed = parseScore(input);
  if (parsed.ok) return parsed.score;
  context.addIssue({ code: "custom", message: parsed.error });
  return z.NEVER;
});

export const ruleSchema = z.string().superRefine((text, context) => {
  const parsed = parseRule(text);
  if (!parsed.ok) context.addIssue({ code: "custom", message: parsed.error });
});

const constraintIdSchema = nameSchema("constraint");

export const locationSchema = z.object({
  type: z.literal("location"),
  id: constraintIdSchema,
  vm: vmNameSchema,
  node: nodeNameSchema,
  score: scoreSchema,
});

/** Adds `score` on every node where the rule over its attributes holds. */
export const locationRuleSchema = z.object({
  type: z.literal("location-rule"),
  id: constraintIdSchema,
  vm: vmNameSchema,
  rule: ruleSchema,
  score: scoreSchema,
});

/**
 * `vm` is placed relative to `withVm` (Pacemaker's rsc / with-rsc): a positive score pulls it to the
 * node of `withVm`, a negative one pushes it away (anti-affinity). ±INFINITY makes it mandatory; with
 * +INFINITY, `vm` cannot run while `withVm` does not.
 */
export const colocationSchema = z.object({
  type: z.literal("colocation"),
  id: constraintIdSchema,
  vm: vmNameSchema,
  withVm: vmNameSchema,
  score: scoreSchema,
});

/**
 * Pacemaker's sequential colocation set: with a positive score each member is placed relative to the one
 * before it (a chain, as crm's `colocation ID SCORE: A B C`); with a negative score each member keeps away
 * from every member before it, so the set spreads over nodes.
 */
export const colocationSetSchema = z.object({
  type: z.literal("colocation-set"),
  id: constraintIdSchema,
  vms: z.array(vmNameSchema).min(2, "a colocation set needs at least two VMs"),
  score: scoreSchema,
});

/**
 * `then` starts after `first` is running. Mandatory (Pacemaker's default kind): `then` does not run
 * while `first` cannot. Optional: only the start order when both start together.
 */
export const orderSchema = z.object({
  type: z.literal("order"),
  id: constraintIdSchema,
  first: vmNameSchema,
  then: vmNameSchema,
  kind: z.enum(["mandatory", "optional"]).default("mandatory"),
});

export const constraintSchema = z.discriminatedUnion("type", [
  locationSchema,
  locationRuleSchema,
  colocationSchema,
  colocationSetSchema,
  orderSchema,
]);

export type LocationConstraint = z.output<typeof locationSchema>;
export type LocationRuleConstraint = z.output<typeof locationRuleSchema>;
export type ColocationConstraint = z.output<typeof colocationSchema>;
export type ColocationSetConstraint = z.output<typeof colocationSetSchema>;
export type OrderConstraint = z.output<typeof orderSchema>;
export type Constraint = z.output<typeof constraintSchema>;
/** A constraint as users write it (scores may be text such as "-INFINITY"). */
export type ConstraintInput = z.input<typeof constraintSchema>;

/** The per-guest placement policy with Pacemaker's defaults, for embedding in a VM's spec. */
export const placementPolicySchema = z.object({
  allowMigrate: z.boolean().default(true),
  stickiness: scoreSchema.default(0),
  priority: z.number().int().min(-INFINITY).max(INFINITY).default(0),
  migrationThreshold: z.number().int().min(0).max(INFINITY).default(INFINITY),
  failureTimeoutS: z.number().int().min(0).default(0),
});
export type PlacementPolicy = z.output<typeof placementPolicySchema>;

// ---- plan ----------------------------------------------------------------------------------------

export type PlanActionType = "start" | "stop" | "migrate" | "move" | "keep";

export interface PlanAction {
  type: PlanActionType;
  vm: string;
  /** stop, migrate, move: where it runs now; start: the failed or previous node, if any. */
  from?: string;
  /** start, migrate, move, keep: where it runs after the plan. */
  to?: string;
  reason: string;
  /** Guests (from order constraints) that must be running before this one starts. */
  after?: string[];
}

export interface Unplaceable {
  vm: string;
  reason: string;
}

/** Bad input found while scheduling; the constraint named (if any) was ignored. */
export interface Problem {
  constraint: string | null;
  message: string;
}

export interface Plan {
  actions: PlanAction[];
  unplaceable: Unplaceable[];
  problems: Problem[];
}

// ---- explanation ---------------------------------------------------------------------------------

/** One reason a node's score is what it is: a constraint id or a built-in source. */
export interface Contribution {
  /** Constraint id, or one of: offline, standby, capacity, stickiness, migration-threshold. */
  source: string;
  score: Score;
  detail: string;
  /** A preference left out because it would have left the guest nowhere to run (as Pacemaker does). */
  ignored?: boolean;
}

export interface NodeScore {
  node: string;
  total: Score;
  /** Whether the guest may run there (total >= 0, as in Pacemaker). */
  eligible: boolean;
  /** Room offered to the guest at its turn: capacity minus guests placed before it and room that
   * running guests still to be placed hold (lower priorities excepted when it displaced them). */
  free: { vcpus: number; memoryMb: number };
  contributions: Contribution[];
}

export interface Explanation {
  vm: string;
  /** The node chosen, or null. */
  chosen: string | null;
  /** One line: what happens to the guest and why. */
  verdict: string;
  action: PlanAction | null;
  /** Nodes in name order; empty when the guest was not scored (stopped, or blocked by a dependency). */
  nodes: NodeScore[];
  /** Reasons that apply to the guest as a whole (an order or colocation dependency that will not run). */
  blockers: string[];
}
