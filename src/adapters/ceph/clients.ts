// Haven's per-node cephx users (client.haven-<node>): each node's QEMUs open the disks as their node, so
// that fencing a node can be told from fencing another and a node never needs the admin key for guest I/O.
import { nodeCephId } from "../storage/config.js";
import { cephExec, type CephIdentity } from "./exec.js";

/** What a node's user may do: RBD I/O on the pool, blocklisting for exclusive-lock takeover, no admin. */
const nodeClientCaps = (pool: string) => [
  "mon",
  "profile rbd",
  "osd",
  `profile rbd pool=${pool}`,
  "mgr",
  `profile rbd pool=${pool}`,
];

/** The keyring of `node`'s user, created if it does not exist yet (get-or-create: idempotent). */
export function nodeClientKeyring(
  admin: CephIdentity,
  node: string,
  pool: string,
  timeoutMs = 30_000,
): Promise<string> {
  return cephExec(
    "ceph",
    admin,
    ["auth", "get-or-create", `client.${nodeCephId(node)}`, ...nodeClientCaps(pool)],
    {
      timeoutMs,
    },
  );
}

/** Deletes `node`'s user, whose key then opens nothing; a user that does not exist is not an error. */
export async function deleteNodeClient(admin: CephIdentity, node: string, timeoutMs = 30_000): Promise<void> {
  await cephExec("ceph", admin, ["auth", "rm", `client.${nodeCephId(node)}`], { timeoutMs }).catch(
    (err: Error) => {
      if (!/does not exist|ENOENT/.test(err.message)) throw err;
    },
  );
}
