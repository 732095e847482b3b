// Who fetch trusts and what it presents: Node's fetch trusts the system's CAs unless it is given a
// dispatcher, so every connection to a Haven endpoint (a node's API, an etcd member) goes through one that
// trusts the cluster CA alone and, where the server asks for one (etcd), presents the node's certificate.
import { readFileSync } from "node:fs";
import { Agent, type Dispatcher } from "undici";
import { z } from "zod";

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

/**
 * A dispatcher whose connections leave from `localAddress` (default: the kernel's choice of source address),
 * over TLS with `tls` when given; undefined when neither is asked for (fetch's own dispatcher then).
 */
export function clientDispatcher(options: {
  tls?: TlsIdentity;
  localAddress?: string;
}): Dispatcher | undefined {
  if (!options.tls && !options.localAddress) return undefined;
  // The source address is the client's setting, not the connector's (undici passes it to each connect).
  return new Agent({
    ...(options.tls && { connect: options.tls }),
    ...(options.localAddress !== undefined && { localAddress: options.localAddress }),
  });
}

/** The files of a TLS identity, as a cluster file or havend's configuration names them. */
export const tlsFilesSchema = z.object({
  ca: z.string().min(1),
  cert: z.string().min(1).optional(),
  key: z.string().min(1).optional(),
});
export type TlsFiles = z.infer<typeof tlsFilesSchema>;

export function readTlsFiles(files: Required<TlsFiles>): Required<TlsIdentity>;
export function readTlsFiles(files: TlsFiles): TlsIdentity;
export function readTlsFiles(files: TlsFiles): TlsIdentity {
  const read = (path: string) => readFileSync(path, "utf8");
  return {
    ca: read(files.ca),
    ...(files.cert !== undefined && { cert: read(files.cert) }),
    ...(files.key !== undefined && { key: read(files.key) }),
  };
}

/**
 * A dispatcher that checks no certificate: only for fetching what is verified by other means (a joining
 * server fetches the cluster CA and compares its fingerprint with the one its join token carries).
 */
export const uncheckedDispatcher = (): Dispatcher => new Agent({ connect: { rejectUnauthorized: false } });
