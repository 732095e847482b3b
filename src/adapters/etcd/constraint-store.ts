// Placement constraints and node attributes imported from a Pacemaker configuration, kept in etcd under
// `<prefix>config/constraints/<id>` and `<prefix>config/node-attributes/<node>`. They are recorded for the
// controller's placement (core/placement-rules.ts), which reads them through its watch of config/.
import { z } from "zod";
import { formatScore } from "../../core/scheduler/scores.js";
import { PLACEMENT_STRATEGIES } from "../../core/scheduler/types.js";
import type { ClusterStore } from "./cluster-store.js";
import type { EtcdClient, KeyValue } from "./port.js";

/** Where a constraint came from: the crm file and line of an import; absent when added with `haven constraint`. */
const origin = {
  source: z.object({ file: z.string(), line: z.number().int() }).optional(),
  importedAt: z.string(),
};

/** An imported constraint in the scheduler's shapes (core/import/translate-constraints.ts), with its origin. */
export const storedConstraintSchema = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("location"),
    id: z.string(),
    vm: z.string(),
    node: z.string(),
    score: z.number(),
    ...origin,
  }),
  z.object({
    type: z.literal("location-rule"),
    id: z.string(),
    vm: z.string(),
    rule: z.string(),
    score: z.number(),
    ...origin,
  }),
  z.object({
    type: z.literal("colocation"),
    id: z.string(),
    vm: z.string(),
    withVm: z.string(),
    score: z.number(),
    ...origin,
  }),
  z.object({
    type: z.literal("colocation-set"),
    id: z.string(),
    vms: z.array(z.string()),
    score: z.number(),
    ...origin,
  }),
  z.object({
    type: z.literal("order"),
    id: z.string(),
    first: z.string(),
    then: z.string(),
    kind: z.enum(["mandatory", "optional"]),
    ...origin,
  }),
]);
export type StoredConstraint = z.infer<typeof storedConstraintSchema>;

/** The cluster's placement-strategy (Pacemaker's property of that name), with where it was set. */
export const storedPlacementStrategySchema = z.object({
  strategy: z.enum(PLACEMENT_STRATEGIES),
  ...origin,
});
export type StoredPlacementStrategy = z.infer<typeof storedPlacementStrategySchema>;

export const storedNodeAttributesSchema = z.object({
  node: z.string(),
  attributes: z.record(z.string(), z.string()),
  ...origin,
});
export type StoredNodeAttributes = z.infer<typeof storedNodeAttributesSchema>;

/** One line for events and listings: `web on node2: -INFINITY`, `web with db: -1000`, `web where hw ne vm: 100`. */
export function describeConstraint(c: StoredConstraint): string {
  if (c.type === "location") return `${c.vm} on ${c.node}: ${formatScore(c.score)}`;
  if (c.type === "location-rule") return `${c.vm} where ${c.rule}: ${formatScore(c.score)}`;
  if (c.type === "colocation") return `${c.vm} with ${c.withVm}: ${formatScore(c.score)}`;
  if (c.type === "colocation-set") return `set ${c.vms.join(" ")}: ${formatScore(c.score)}`;
  return `${c.first} then ${c.then} (${c.kind})`;
}

export class ConstraintStore {
  constructor(
    readonly etcd: EtcdClient,
    readonly prefix: string,
  ) {}

  static of(store: ClusterStore): ConstraintStore {
    return new ConstraintStore(store.etcd, store.prefix);
  }

  get constraintsPrefix(): string {
    return `${this.prefix}config/constraints/`;
  }
  get nodeAttributesPrefix(): string {
    return `${this.prefix}config/node-attributes/`;
  }
  get placementStrategyKey(): string {
    return `${this.prefix}config/placement-strategy`;
  }
  constraintKey = (id: string) => `${this.constraintsPrefix}${id}`;
  nodeAttributesKey = (node: string) => `${this.nodeAttributesPrefix}${node}`;

  async getConstraint(id: string): Promise<StoredConstraint | undefined> {
    const kv = await this.etcd.get(this.constraintKey(id));
    return kv ? decode(storedConstraintSchema, kv) : undefined;
  }

  async listConstraints(): Promise<StoredConstraint[]> {
    const { kvs } = await this.etcd.list(this.constraintsPrefix);
    return kvs.map((kv) => decode(storedConstraintSchema, kv));
  }

  async putConstraint(constraint: StoredConstraint): Promise<void> {
    await this.etcd.put(this.constraintKey(constraint.id), JSON.stringify(constraint));
  }

  async deleteConstraint(id: string): Promise<void> {
    await this.etcd.delete(this.constraintKey(id));
  }

  async getPlacementStrategy(): Promise<StoredPlacementStrategy | undefined> {
    const kv = await this.etcd.get(this.placementStrategyKey);
    return kv ? decode(storedPlacementStrategySchema, kv) : undefined;
  }

  async putPlacementStrategy(value: StoredPlacementStrategy): Promise<void> {
    await this.etcd.put(this.placementStrategyKey, JSON.stringify(value));
  }

  async deletePlacementStrategy(): Promise<void> {
    await this.etcd.delete(this.placementStrategyKey);
  }

  async getNodeAttributes(node: string): Promise<StoredNodeAttributes | undefined> {
    const kv = await this.etcd.get(this.nodeAttributesKey(node));
    return kv ? decode(storedNodeAttributesSchema, kv) : undefined;
  }

  async listNodeAttributes(): Promise<StoredNodeAttributes[]> {
    const { kvs } = await this.etcd.list(this.nodeAttributesPrefix);
    return kvs.map((kv) => decode(storedNodeAttributesSchema, kv));
  }

  async putNodeAttributes(value: StoredNodeAttributes): Promise<void> {
    await this.etcd.put(this.nodeAttributesKey(value.node), JSON.stringify(value));
  }

  async deleteNodeAttributes(node: string): Promise<void> {
    await this.etcd.delete(this.nodeAttributesKey(node));
  }
}

function decode<T>(schema: z.ZodType<T>, kv: KeyValue): T {
  const parsed = schema.safeParse(JSON.parse(kv.value));
  if (!parsed.success) throw new Error(`malformed value at ${kv.key}: ${parsed.error.message}`);
  return parsed.data;
}
