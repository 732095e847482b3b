// Random schedules on every core: seeds are independent, so they run in worker threads, a few at a time each,
// and come back in seed order. Each seed's run is the same wherever it runs.
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import type { RandomOutcome } from "./random.js";

/** Runs seeds `first`…`first + count − 1`; `onOutcome` gets them in seed order. */
export async function runRandomSeeds(
  first: number,
  count: number,
  onOutcome: (outcome: RandomOutcome) => void,
  workers = Math.min(availableParallelism(), count),
): Promise<void> {
  const done = new Map<number, RandomOutcome>();
  let next = first;
  let reported = first;
  const flush = () => {
    while (done.has(reported)) {
      onOutcome(done.get(reported)!);
      done.delete(reported++);
    }
  };
  const runWorker = () =>
    new Promise<void>((resolve, reject) => {
      const worker = new Worker(new URL("./random-worker.js", import.meta.url));
      const give = () => {
        if (next < first + count) worker.postMessage(next++);
        else void worker.terminate().then(() => resolve());
      };
      worker.on("message", (outcome: RandomOutcome) => {
        done.set(outcome.seed, outcome);
        flush();
        give();
      });
      worker.on("error", reject);
      give();
    });
  await Promise.all(Array.from({ length: Math.max(1, workers) }, runWorker));
}
