// Shell-outs to Ceph's tools: argv arrays (never a shell), `--format json` where the tool speaks it,
// a timeout on every call, and errors that name the command and quote what the tool said.
import { run, type ExecOptions } from "../../lib/command.js";

/** How a Ceph client identifies itself: the cluster's ceph.conf, a keyring and a cephx id. */
export interface CephIdentity {
  conf: string;
  keyring: string;
  /** cephx user without the "client." prefix, e.g. "admin" or "haven-node1". */
  id: string;
}

/** Runs `tool` with the identity's conf/keyring/id prepended; resolves with stdout. */
export function cephExec(
  tool: "ceph" | "rbd",
  identity: CephIdentity,
  args: string[],
  options: ExecOptions = {},
): Promise<string> {
  const argv = ["--conf", identity.conf, "--keyring", identity.keyring, "--id", identity.id, ...args];
  return run(tool, argv, options);
}
