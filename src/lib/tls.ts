// Who fetch trusts and what it presents: Node's fetch trusts the system's CAs unless it is given a
// dispatcher, so every connection to a Haven endpoint (a node's API, an etcd member) goes through one that
// trusts the cluster CA alone and, where the server asks for one (etcd), presents the node's certificate.
import { Agent, type Dispatcher } from "undici";

export type { Dispatcher };

export interface TlsIdentity {
  /** PEM of the only CA trusted for the server's certificate. */
  ca: string;
  /** PEM certificate and key presented to servers that require a client certificate. */
  cert?: string;
  key?: string;
}

export function tlsDispatcher(identity: TlsIdentity): Dispatcher {
  return new Agent({ connect: identity });
}
