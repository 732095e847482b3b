// Leader election on one key held under the candidate's lease: whoever creates the key leads until it resigns
// or its lease expires (etcd then deletes the key, and the waiting candidates race to create it again).
import { systemClock, type Clock } from "../../lib/clock.js";
import type { EtcdClient, WatchEvent } from "./port.js";

/** How long a candidate waits before trying again even if its watch reported nothing (a watch may break). */
const POLL_MS = 1000;

/**
 * Resolves once this candidate holds `key` (with `value`, under `leaseId`). Rejects with an AbortError when
 * `signal` aborts first, and with etcd's error when a transaction fails.
 */
export async function campaign(
  client: EtcdClient,
  key: string,
  value: string,
  leaseId: string,
  signal: AbortSignal,
  clock: Clock = systemClock,
): Promise<void> {
  for (;;) {
    if (signal.aborted) throw abortError();
    const result = await client.txn(
      [{ key, target: "create", result: "equal", value: 0 }],
      [{ type: "put", key, value, lease: leaseId }],
      [{ type: "get", key }],
    );
    if (result.succeeded) return;
    const holder = result.responses[0]?.[0];
    if (!holder) continue; // deleted between compare and get: try again at once
    if (holder.lease === leaseId) {
      // Ours already, e.g. an agent restarted and kept its lease. Refresh the value if it changed, but only
      // while the key is still ours.
      if (holder.value === value) return;
      await client.txn(
        [{ key, target: "lease", result: "equal", value: leaseId }],
        [{ type: "put", key, value, lease: leaseId }],
      );
      continue;
    }
    await waitForDelete(client, key, result.revision + 1, signal, clock);
  }
}

/** Gives up leadership: deletes `key` only if it is still held under `leaseId`. Returns whether it did. */
export async function resign(client: EtcdClient, key: string, leaseId: string): Promise<boolean> {
  const result = await client.txn(
    [{ key, target: "lease", result: "equal", value: leaseId }],
    [{ type: "delete", key }],
  );
  return result.succeeded;
}

/** The current leader's value, or undefined when nobody leads. */
export async function leader(client: EtcdClient, key: string): Promise<string | undefined> {
  return (await client.get(key))?.value;
}

/** Waits until `key` is deleted at or after `fromRevision`, POLL_MS passes on `clock`, or `signal` aborts. */
async function waitForDelete(
  client: EtcdClient,
  key: string,
  fromRevision: number,
  signal: AbortSignal,
  clock: Clock,
): Promise<void> {
  const wake = new AbortController();
  const stop = AbortSignal.any([signal, wake.signal]);
  void clock.sleep(POLL_MS, stop).then(() => wake.abort());
  // The watch matches a prefix, so it also sees longer keys; only the exact key matters.
  const onEvents = (events: WatchEvent[]) => {
    if (events.some((e) => e.type === "delete" && e.kv.key === key)) wake.abort();
  };
  try {
    await client.watch(key, fromRevision, { onEvents }, stop);
  } catch {
    // A broken watch is no reason to fail the campaign: the next transaction tells the truth. Wait out the
    // poll interval so that an unreachable etcd does not turn this into a busy loop.
    await new Promise<void>((resolve) => {
      if (stop.aborted) resolve();
      else stop.addEventListener("abort", () => resolve(), { once: true });
    });
  } finally {
    wake.abort(); // ends the poll timer
  }
}

function abortError(): Error {
  return new DOMException("campaign aborted", "AbortError");
}
