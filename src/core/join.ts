// Joining a server to a cluster: the one-time token `haven node add` prints and `haven join` takes, and the
// grant the cluster keeps for it. The token carries what the new server needs to trust the cluster before it
// has any credentials (the API address of a node that can sign certificates, and the SHA-256 fingerprint of
// the cluster CA), plus a grant id and a random secret. etcd keeps only the secret's hash.
import { z } from "zod";
import { inputError } from "./errors.js";
import { nodeNameSchema } from "./names.js";
import { rolesSchema } from "./roles.js";

const TOKEN_PREFIX = "haven-join-1.";
const portSchema = z.number().int().min(1).max(65535);
/** etcd's voters: 3 survive one failure, 5 two; more only slow every write down. */
export const MAX_ETCD_VOTERS = 5;

export const joinTokenSchema = z.object({
  /** The node the token was made for. */
  node: nodeNameSchema,
  /** https URL of the API that signs the joining server's certificate. */
  api: z.url(),
  /** SHA-256 of the cluster CA certificate (DER), lower-case hex without separators. */
  ca: z.string().regex(/^[0-9a-f]{64}$/),
  id: z.string().regex(/^[0-9a-f]{16}$/),
  secret: z.string().regex(/^[0-9a-f]{64}$/),
});
export type JoinToken = z.infer<typeof joinTokenSchema>;

/** What etcd keeps for a token until it is used or expires. */
export const joinGrantSchema = z.object({
  node: nodeNameSchema,
  secretSha256: z.string(),
  expiresAt: z.string(),
  issuedBy: z.string(),
});
export type JoinGrant = z.infer<typeof joinGrantSchema>;

export const encodeJoinToken = (token: JoinToken): string =>
  TOKEN_PREFIX + Buffer.from(JSON.stringify(token)).toString("base64url");

export function decodeJoinToken(text: string): JoinToken {
  const trimmed = text.trim();
  if (!trimmed.startsWith(TOKEN_PREFIX))
    throw inputError(
      `not a Haven join token (it starts with ${TOKEN_PREFIX}; make one with 'haven node add NAME')`,
    );
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(trimmed.slice(TOKEN_PREFIX.length), "base64url").toString("utf8"));
  } catch {
    throw inputError("the join token is damaged (copy it again, whole)");
  }
  const parsed = joinTokenSchema.safeParse(raw);
  if (!parsed.success) throw inputError("the join token is damaged (copy it again, whole)");
  return parsed.data;
}

/** SHA-256 of a certificate's DER bytes in the token's spelling, from Node's colon-separated upper-case form. */
export const fingerprintOf = (fingerprint256: string): string =>
  fingerprint256.replaceAll(":", "").toLowerCase();

/** What a joining server sends with the token's id and secret: where it is, what it does, and its key's CSR. */
export const joinRequestSchema = z.object({
  id: z.string().min(1),
  secret: z.string().min(1),
  address: z.union([z.ipv4(), z.ipv6()]),
  roles: rolesSchema,
  csr: z.string().includes("BEGIN CERTIFICATE REQUEST"),
  /** A server with the monitor role runs an etcd member on these ports of its address. */
  etcd: z.object({ clientPort: portSchema, peerPort: portSchema }).optional(),
});
export type JoinRequest = z.infer<typeof joinRequestSchema>;

/** The cluster's storage as a joining server sets it up: Ceph's files are handed over as their contents. */
export const joinStorageSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("dir"), path: z.string().min(1) }),
  z.object({
    type: z.literal("rbd"),
    pool: z.string().min(1),
    adminId: z.string().min(1),
    conf: z.string().min(1),
    adminKeyring: z.string().min(1),
    /** The keyring of the node's own cephx identity (client.haven-<node>), so fencing can tell it apart. */
    nodeKeyring: z.string().min(1),
  }),
]);
export type JoinStorage = z.infer<typeof joinStorageSchema>;

/** What every node of a cluster shares, handed to a joining server. */
export const joinSettingsSchema = z.object({
  cluster: z.string().min(1),
  prefix: z.string().min(1),
  etcd: z.array(z.url()).min(1),
  /**
   * How the node reaches etcd: "node" with its own certificate (etcd trusts the cluster CA), null over plain
   * HTTP, or with the PEM contents of an identity the cluster's etcd was given.
   */
  etcdTls: z.union([
    z.literal("node"),
    z.null(),
    z.object({ ca: z.string().optional(), cert: z.string().optional(), key: z.string().optional() }),
  ]),
  leaseTtlSeconds: z.number().int().min(2),
  apiToken: z.string().min(1),
  storage: joinStorageSchema,
});
export type JoinSettings = z.infer<typeof joinSettingsSchema>;

/** The etcd member a joining monitor starts: it was added as a learner; `promote` says whether it votes. */
export const joinEtcdMemberSchema = z.object({
  id: z.string().min(1),
  name: z.string().min(1),
  /** etcd's --initial-cluster: every member, this one included, as name=peerURL. */
  initialCluster: z.string().min(1),
  promote: z.boolean(),
});
export type JoinEtcdMember = z.infer<typeof joinEtcdMemberSchema>;

export const joinResponseSchema = joinSettingsSchema.extend({
  node: nodeNameSchema,
  certificate: z.string().min(1),
  caCertificate: z.string().min(1),
  etcdMember: joinEtcdMemberSchema.optional(),
});

/**
 * How etcd grows when a monitor joins. A new member starts as a learner, which replicates without voting, so
 * that one whose server never starts costs no quorum; etcd 3.4 takes one learner at a time. A learner left by
 * the previous monitor is promoted first, and the new one votes when that makes the voters an odd number up to
 * five (an even number survives no more failures than one fewer). A string says why it cannot join as monitor.
 */
export function etcdGrowth(
  members: Array<{ learner: boolean }>,
): { promoteLearner: boolean; promoteJoiner: boolean } | string {
  const learners = members.filter((m) => m.learner).length;
  const voters = members.length - learners;
  if (learners > 0 && voters >= MAX_ETCD_VOTERS)
    return `etcd has ${voters} voting members and a learner already: join this server without the monitor role`;
  const after = voters + (learners > 0 ? 1 : 0) + 1;
  return { promoteLearner: learners > 0, promoteJoiner: after % 2 === 1 && after <= MAX_ETCD_VOTERS };
}
export type JoinResponse = z.infer<typeof joinResponseSchema>;

/**
 * How etcd shrinks when a monitor's server is removed: its member goes. A voter's place is first taken by the
 * learner a previous monitor left, if there is one, so that as many members vote as before. The last voter
 * cannot go. A string says why the member cannot be removed.
 */
export function etcdShrink(
  members: Array<{ id: string; learner: boolean }>,
  leaving: string,
): { promoteLearner: string | undefined } | string {
  const member = members.find((m) => m.id === leaving);
  if (!member) return { promoteLearner: undefined };
  if (member.learner) return { promoteLearner: undefined };
  const voters = members.filter((m) => !m.learner).length;
  const learner = members.find((m) => m.learner);
  if (voters === 1 && !learner)
    return "its etcd member is the cluster's last voting member: the cluster would have no etcd left";
  return { promoteLearner: learner?.id };
}
