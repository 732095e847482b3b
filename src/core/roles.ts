// Node roles, as the guide splits its servers: `compute` runs guests, `storage` runs Ceph OSDs, `monitor`
// runs a Ceph monitor and an etcd voter. A node without roles recorded (one from before roles existed) did
// everything, so it counts as having every role.
import { z } from "zod";
import { inputError } from "./errors.js";

export const NODE_ROLES = ["compute", "storage", "monitor"] as const;
export const nodeRoleSchema = z.enum(NODE_ROLES);
export type NodeRole = z.infer<typeof nodeRoleSchema>;

export const rolesSchema = z
  .array(nodeRoleSchema)
  .min(1, "a node needs at least one role")
  .refine((roles) => new Set(roles).size === roles.length, "a role is named twice");

export function rolesOf(node: { roles?: readonly NodeRole[] | undefined }): readonly NodeRole[] {
  return node.roles ?? NODE_ROLES;
}

export const hasRole = (node: { roles?: readonly NodeRole[] | undefined }, role: NodeRole): boolean =>
  rolesOf(node).includes(role);

/** "storage+monitor" → ["storage", "monitor"], in NODE_ROLES order; a clear error for anything else. */
export function parseRoles(text: string): NodeRole[] {
  const names = text.split("+").map((name) => name.trim());
  for (const name of names) {
    if (name === "") throw inputError(`roles "${text}": an empty role (write roles joined with '+')`);
    if (!(NODE_ROLES as readonly string[]).includes(name))
      throw inputError(`roles "${text}": unknown role "${name}" (roles are ${NODE_ROLES.join(", ")})`);
  }
  if (new Set(names).size !== names.length) throw inputError(`roles "${text}": a role is named twice`);
  return NODE_ROLES.filter((role) => names.includes(role));
}

/** `--roles` of a local cluster: one entry per node, comma-separated, e.g. "storage+monitor,compute". */
export function parseRolesList(text: string): NodeRole[][] {
  return text.split(",").map((entry) => parseRoles(entry));
}

export const formatRoles = (roles: readonly NodeRole[]): string => roles.join("+");

/**
 * What a cluster of nodes with these roles cannot do: run guests without a compute node, keep Ceph without a
 * monitor and a storage node, keep an etcd of `etcdVoters` members on fewer monitor nodes. Undefined when fine.
 */
export function layoutProblem(
  layout: readonly (readonly NodeRole[])[],
  needs: { ceph: boolean; etcdVoters: number },
): string | undefined {
  const count = (role: NodeRole) => layout.filter((roles) => roles.includes(role)).length;
  if (count("compute") === 0) return "no node has the compute role: guests could run nowhere";
  if (needs.ceph && count("monitor") === 0) return "Ceph needs a node with the monitor role";
  if (needs.ceph && count("storage") === 0) return "Ceph needs a node with the storage role (for its OSDs)";
  if (count("monitor") < needs.etcdVoters)
    return `${needs.etcdVoters} etcd members need ${needs.etcdVoters} nodes with the monitor role; ${count("monitor")} have it`;
  return undefined;
}
