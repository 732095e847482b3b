// Joining servers to the cluster (`haven node add` and `haven join`): one-time tokens kept as hashed grants
// in etcd, and the exchange that turns a token and a certificate request into a node certificate and the
// settings every node shares. Only a node holding the cluster CA's key can do this; the token names it.
// And removing them (`haven node remove`): a running node moves its guests away and stops, then the
// cluster forgets what it kept for it.
import { createHash, timingSafeEqual, X509Certificate } from "node:crypto";
import type { ClusterStore } from "../adapters/etcd/cluster-store.js";
import { ConstraintStore } from "../adapters/etcd/constraint-store.js";
import { voterUrls, type EtcdMember, type EtcdMembership } from "../adapters/etcd/port.js";
import { conflict, inputError, notFound, unavailable } from "../core/errors.js";
import {
  encodeJoinToken,
  etcdGrowth,
  etcdShrink,
  fingerprintOf,
  type JoinEtcdMember,
  type JoinGrant,
  type JoinRequest,
  type JoinResponse,
  type JoinSettings,
} from "../core/join.js";
import { nodeNameSchema } from "../core/model.js";
import { rolesOf, type NodeRole } from "../core/roles.js";
import { isoNow, type Clock } from "../lib/clock.js";

export const DEFAULT_JOIN_TTL_SECONDS = 3600;
const MAX_JOIN_TTL_SECONDS = 7 * 24 * 3600;
const MIN_JOIN_TTL_SECONDS = 60;
/**
 * etcd refuses a membership change for a while after the last one: until its leader has heard from a quorum
 * for 5 s ("unhealthy cluster"), and a promotion until the learner has caught up. They are tried again for up
 * to this long, once a second.
 */
const MEMBERSHIP_RETRY_MS = 30_000;

/** What a node holding the cluster CA's key offers. */
export interface JoinAuthority {
  /** The cluster CA certificate (PEM). */
  caCertificate: string;
  /** This node's API (https), where joining servers are sent. */
  api: string;
  /** A certificate for `node` at `address` for the key of `csr`. */
  sign(node: string, address: string, csr: string): Promise<string>;
  /** What the joining `node` is told besides its certificate. */
  settingsFor(node: string): Promise<JoinSettings>;
}

export interface JoinTokenView {
  node: string;
  token: string;
  expiresAt: string;
}

export interface NodeRemovalView {
  node: string;
  /** `leaving`: the node is moving its guests away and will stop; `removed`: the cluster forgot it. */
  state: "leaving" | "removed";
  /** The guests still placed on the node. */
  guests: string[];
}

export interface JoinServiceOptions {
  /** Deletes a removed node's own storage user (Ceph); absent where nodes have none. */
  removeStorageUser?: (node: string) => Promise<void>;
  /** The cluster's own etcd, which grows and shrinks with its monitors; absent where it is not Haven's. */
  etcd?: EtcdMembership;
  /**
   * Whether monitor and storage nodes run Ceph daemons that Haven set up (a local cluster's Ceph), which it
   * cannot move off a node yet.
   */
  cephFollowsRoles?: boolean;
}

export class JoinService {
  constructor(
    private readonly store: ClusterStore,
    private readonly clock: Clock,
    private readonly random: (bytes: number) => Buffer,
    /** Absent on nodes without the CA key. */
    private readonly authority: JoinAuthority | undefined,
    private readonly thisNode: string,
    private readonly options: JoinServiceOptions = {},
  ) {}

  private get etcd(): EtcdMembership | undefined {
    return this.options.etcd;
  }

  caCertificate(): { certificate: string } {
    return { certificate: this.requireAuthority().caCertificate };
  }

  /** A new one-time token for `node`; earlier tokens for the same node stop working. */
  async issueToken(node: string, ttlSeconds = DEFAULT_JOIN_TTL_SECONDS): Promise<JoinTokenView> {
    const authority = this.requireAuthority();
    if (!nodeNameSchema.safeParse(node).success)
      throw inputError(`invalid node name: ${JSON.stringify(node)}`);
    if (
      !Number.isInteger(ttlSeconds) ||
      ttlSeconds < MIN_JOIN_TTL_SECONDS ||
      ttlSeconds > MAX_JOIN_TTL_SECONDS
    )
      throw inputError(
        `a join token lives from ${MIN_JOIN_TTL_SECONDS} s to ${MAX_JOIN_TTL_SECONDS / 86400} days`,
      );
    await this.refuseLiveNode(node);
    for (const { id, grant } of await this.store.listJoinGrants())
      if (grant.node === node) await this.store.deleteJoinGrant(id);
    const id = this.random(8).toString("hex");
    const secret = this.random(32).toString("hex");
    const expiresAt = new Date(this.clock.now() + ttlSeconds * 1000).toISOString();
    await this.store.putJoinGrant(
      id,
      { node, secretSha256: secretHash(secret), expiresAt, issuedBy: this.thisNode },
      ttlSeconds,
    );
    const ca = fingerprintOf(new X509Certificate(authority.caCertificate).fingerprint256);
    await this.store.appendEvent({
      type: "join-token",
      node,
      reason: `a join token for ${node} was made on ${this.thisNode}, valid until ${expiresAt}`,
    });
    return { node, token: encodeJoinToken({ node, api: authority.api, ca, id, secret }), expiresAt };
  }

  /** Signs the joining server's certificate and tells it the cluster's settings; the token is used up. */
  async join(request: JoinRequest): Promise<JoinResponse> {
    const authority = this.requireAuthority();
    if (request.roles.includes("storage"))
      throw inputError(
        `a joining server cannot have the storage role yet (asked: ${request.roles.join("+")}): ` +
          `OSDs are set up by 'haven cluster up' on a local cluster`,
      );
    const stored = await this.store.getJoinGrant(request.id);
    if (!stored)
      throw notFound(
        "unknown join token: it was used, replaced or expired; make a new one with 'haven node add'",
      );
    const problem = grantProblem(stored.value, request.secret, this.clock.now());
    if (problem) throw inputError(problem);
    const node = stored.value.node;
    await this.refuseLiveNode(node);
    const promoteJoiner = request.roles.includes("monitor") ? await this.prepareEtcd(request) : undefined;
    const certificate = await authority.sign(node, request.address, request.csr).catch((err: Error) => {
      throw inputError(`cannot sign the certificate request: ${err.message}`);
    });
    const settings = await authority.settingsFor(node);
    if (!(await this.store.takeJoinGrant(request.id, stored.modRevision)))
      throw conflict("the join token was used by another server at the same moment");
    const etcdMember =
      promoteJoiner === undefined ? undefined : await this.addEtcdLearner(node, request, promoteJoiner);
    if (this.etcd) settings.etcd = voterUrls(await this.etcd.members());
    await this.store.setRemovedNode(node, null);
    await this.store.appendEvent({
      type: "node-joined",
      node,
      reason: `${node} joined from ${request.address} with roles ${request.roles.join("+")}`,
    });
    return {
      ...settings,
      node,
      certificate,
      caCertificate: authority.caCertificate,
      ...(etcdMember && { etcdMember }),
    };
  }

  /**
   * Readies etcd for the joining monitor (see etcdGrowth): refuses when it cannot take one, and promotes the
   * learner the previous monitor left. Before the token is taken, so a refusal leaves it usable. Returns
   * whether the joining member is to vote.
   */
  private async prepareEtcd(request: JoinRequest): Promise<boolean> {
    if (!this.etcd)
      throw inputError("this cluster's etcd is not run by Haven: join this server without the monitor role");
    if (!request.etcd)
      throw inputError("a server with the monitor role must say its etcd client and peer ports");
    const members = await this.etcd.members();
    const plan = etcdGrowth(members);
    if (typeof plan === "string") throw conflict(plan);
    const learner = members.find((m) => m.learner);
    if (plan.promoteLearner && learner)
      await this.retryMembership(() => this.etcd!.promote(learner.id)).catch((err: Error) => {
        throw unavailable(
          `etcd would not promote its learner ${describeMember(learner)} (${err.message}): start its server, ` +
            `or remove it with 'etcdctl member remove ${learner.id}'`,
        );
      });
    return plan.promoteJoiner;
  }

  private async retryMembership<T>(change: () => Promise<T>): Promise<T> {
    const deadline = this.clock.now() + MEMBERSHIP_RETRY_MS;
    for (;;) {
      try {
        return await change();
      } catch (err) {
        if (this.clock.now() >= deadline) throw err;
        await this.clock.sleep(1000);
      }
    }
  }

  /** Adds the joining monitor's member as a learner; its server starts it from the member list returned. */
  private async addEtcdLearner(
    node: string,
    request: JoinRequest,
    promote: boolean,
  ): Promise<JoinEtcdMember> {
    const etcd = this.etcd!;
    const members = await etcd.members();
    const scheme = new URL(members[0]!.peerUrls[0]!).protocol;
    const host = request.address.includes(":") ? `[${request.address}]` : request.address;
    const peerUrl = `${scheme}//${host}:${request.etcd!.peerPort}`;
    // An add whose answer was lost may have happened: the member list says, and it is not added twice.
    const added = await this.retryMembership(
      async () =>
        (await etcd.members()).find((m) => m.peerUrls.includes(peerUrl)) ?? etcd.addLearner([peerUrl]),
    );
    const name = `etcd-${node}`;
    const initialCluster = [...members.filter((m) => m.id !== added.id), { ...added, name }]
      .map((m) => `${m.name || describeMember(m)}=${m.peerUrls[0]}`)
      .join(",");
    return { id: added.id, name, initialCluster, promote };
  }

  /**
   * Removes a node in two calls. While it is online: it is marked removed, and its havend moves its guests
   * away and stops (`leaving`). Once it is offline with no guest placed on it: what the cluster kept for it
   * (maintenance, freeze, fence agent, node attributes, its Ceph user) is deleted (`removed`); the mark stays,
   * so its havend does not register again until the name joins anew, and its etcd member is removed (see
   * etcdShrink). `force` removes a node that is offline without having been marked, a server that is gone for
   * good. Nodes that run Ceph monitors or OSDs are refused: their daemons cannot be moved yet.
   */
  async removeNode(node: string, force: boolean): Promise<NodeRemovalView> {
    if (!nodeNameSchema.safeParse(node).success)
      throw inputError(`invalid node name: ${JSON.stringify(node)}`);
    const online = (await this.store.listNodes()).find((info) => info.name === node);
    const marked = await this.store.getRemovedNode(node);
    const guests = await this.guestsPlacedOn(node);
    if (online) {
      const refusal = this.daemonsThatStay(rolesOf(online)) ?? (await this.leavingEtcdMember(node));
      if (typeof refusal === "string") throw conflict(`node ${node} cannot be removed: ${refusal}`);
      if (!marked) {
        await this.store.setRemovedNode(node, { since: isoNow(this.clock), by: this.thisNode });
        await this.store.appendEvent({
          type: "node-leaving",
          node,
          reason: `removal asked on ${this.thisNode}: ${node} moves its guests away and stops`,
        });
      }
      return { node, state: "leaving", guests };
    }
    if (!marked && !force)
      throw notFound(
        `node ${node} is not online: a node is removed while it runs (it moves its guests away and stops); ` +
          "--force forgets a server that is gone for good",
      );
    if (guests.length > 0)
      throw conflict(
        `guests are still placed on ${node} (${guests.join(", ")}): wait until they have moved or HA has recovered them`,
      );
    const shrink = await this.leavingEtcdMember(node);
    if (typeof shrink === "string") throw conflict(`node ${node} cannot be removed: ${shrink}`);
    await this.forget(node);
    if (shrink) await this.removeEtcdMember(shrink);
    if (!marked) await this.store.setRemovedNode(node, { since: isoNow(this.clock), by: this.thisNode });
    await this.store.appendEvent({
      type: "node-removed",
      node,
      reason: `removed on ${this.thisNode}${marked ? "" : " (forced: the node was offline)"}`,
    });
    return { node, state: "removed", guests };
  }

  private async guestsPlacedOn(node: string): Promise<string[]> {
    const { placements } = await this.store.snapshotVms();
    return [...placements].filter(([, placement]) => placement.node === node).map(([vm]) => vm);
  }

  /** Deletes what the cluster keeps for a node beyond its lease. */
  private async forget(node: string): Promise<void> {
    await this.store.setMaintenance(node, null);
    await this.store.setFrozen(node, null);
    await this.store.deleteFenceAgent(node);
    await ConstraintStore.of(this.store).deleteNodeAttributes(node);
    await this.options.removeStorageUser?.(node);
  }

  /** Why a node with these roles runs daemons that cannot leave it, or undefined when there are none. */
  private daemonsThatStay(roles: readonly NodeRole[]): string | undefined {
    if (roles.includes("storage")) return "Haven cannot yet move OSDs (the storage role) off a node";
    if (!roles.includes("monitor")) return undefined;
    if (this.options.cephFollowsRoles)
      return "Haven cannot yet move Ceph monitors (the monitor role) off a node";
    if (!this.etcd) return "this cluster's etcd is not Haven's, so Haven does not remove its members";
    return undefined;
  }

  /**
   * The node's etcd member (Haven names it etcd-NODE) and the learner that takes its vote, or undefined when
   * it has none; a string says why it cannot go.
   */
  private async leavingEtcdMember(
    node: string,
  ): Promise<{ member: EtcdMember; promoteLearner: string | undefined } | string | undefined> {
    if (!this.etcd) return undefined;
    const members = await this.etcd.members();
    const member = members.find((m) => m.name === `etcd-${node}`);
    if (!member) return undefined;
    const plan = etcdShrink(members, member.id);
    return typeof plan === "string" ? plan : { member, promoteLearner: plan.promoteLearner };
  }

  private async removeEtcdMember(plan: { member: EtcdMember; promoteLearner: string | undefined }) {
    const etcd = this.etcd!;
    const { member, promoteLearner } = plan;
    if (promoteLearner) await this.retryMembership(() => etcd.promote(promoteLearner));
    // A remove whose answer was lost may have happened: the member list says.
    await this.retryMembership(async () => {
      if ((await etcd.members()).some((m) => m.id === member.id)) await etcd.remove(member.id);
    });
    await this.store.appendEvent({
      type: "etcd-member-removed",
      node: member.name.replace(/^etcd-/, ""),
      reason: `etcd member ${describeMember(member)} removed${promoteLearner ? ` (learner ${promoteLearner} votes in its place)` : ""}`,
    });
  }

  private requireAuthority(): JoinAuthority {
    if (!this.authority)
      throw conflict(
        `node ${this.thisNode} holds no cluster CA key and cannot let servers join: ask the node that created the cluster`,
      );
    return this.authority;
  }

  private async refuseLiveNode(node: string): Promise<void> {
    if ((await this.store.listNodes()).some((info) => info.name === node))
      throw conflict(`node ${node} is online already: a joining server needs a name of its own`);
  }
}

const describeMember = (m: EtcdMember) => m.name || m.peerUrls[0] || m.id;

const secretHash = (secret: string): string => createHash("sha256").update(secret).digest("hex");

/** Why `secret` does not open `grant` at `now`, or undefined when it does. */
function grantProblem(grant: JoinGrant, secret: string, now: number): string | undefined {
  const given = Buffer.from(secretHash(secret), "hex");
  const expected = Buffer.from(grant.secretSha256, "hex");
  if (given.length !== expected.length || !timingSafeEqual(given, expected))
    return "the join token's secret is wrong";
  if (Date.parse(grant.expiresAt) <= now) return `the join token expired at ${grant.expiresAt}`;
  return undefined;
}
