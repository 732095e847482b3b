// A worker thread of random-pool.ts: runs the seeds it is given, one at a time, and sends back each outcome.
import { parentPort } from "node:worker_threads";
import { runRandomSeed } from "./random.js";

parentPort?.on("message", (seed: number) => {
  void runRandomSeed(seed).then((outcome) => parentPort?.postMessage(outcome));
});
