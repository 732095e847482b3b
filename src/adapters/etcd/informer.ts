// Watch discipline (design brief): list at revision R, watch from R+1, relist when the watch's start was
// compacted away, back off (capped, exponential) on any other failure. Like Kubernetes' reflector, a broken
// watch resumes after the last revision it delivered instead of relisting, so a flapping connection does not
// make every consumer rebuild its state.
import { sleep as defaultSleep } from "../../lib/async.js";
import { CompactedError, type EtcdClient, type KeyValue, type WatchEvent } from "./port.js";

export interface InformerHandlers {
  /** The full state under the prefix at `revision`; replaces whatever the consumer knew before. */
  onSnapshot(kvs: KeyValue[], revision: number): void;
  /** Changes after the last snapshot, in revision order. */
  onEvents(events: WatchEvent[], revision: number): void;
  /** A list or watch failed; the informer tries again after `retryInMs`. */
  onError?(err: unknown, retryInMs: number): void;
}

export interface InformerOptions {
  maxBackoffMs?: number;
  initialBackoffMs?: number;
  /** Resolves after `ms` or as soon as the signal aborts (tests pass a fake). */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

/** Keeps `handlers` in sync with the keys under `prefix` until `signal` aborts. */
export async function runInformer(
  client: EtcdClient,
  prefix: string,
  handlers: InformerHandlers,
  signal: AbortSignal,
  options: InformerOptions = {},
): Promise<void> {
  const initialBackoffMs = options.initialBackoffMs ?? 100;
  const maxBackoffMs = options.maxBackoffMs ?? 5000;
  const sleep = options.sleep ?? defaultSleep;
  let backoffMs = initialBackoffMs;
  /** Where the next watch starts; undefined until a snapshot was delivered (or after compaction). */
  let nextRevision: number | undefined;

  const onEvents = (events: WatchEvent[], revision: number) => {
    handlers.onEvents(events, revision);
    backoffMs = initialBackoffMs; // the watch works again
    // Resume after the last delivered event, not the batch's header revision: etcd stamps catch-up batches
    // with its current revision, which may be ahead of the events in them.
    for (const event of events) nextRevision = Math.max(nextRevision ?? 0, event.kv.modRevision + 1);
  };

  while (!signal.aborted) {
    try {
      if (nextRevision === undefined) {
        const { kvs, revision } = await client.list(prefix);
        if (signal.aborted) return;
        handlers.onSnapshot(kvs, revision);
        nextRevision = revision + 1;
        backoffMs = initialBackoffMs;
      }
      await client.watch(prefix, nextRevision, { onEvents }, signal);
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof CompactedError) {
        // Events between our revision and the compaction are gone: only a fresh list is correct.
        nextRevision = undefined;
        continue;
      }
      handlers.onError?.(err, backoffMs);
      await sleep(backoffMs, signal);
      backoffMs = Math.min(backoffMs * 2, maxBackoffMs);
    }
  }
}
