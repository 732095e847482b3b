// Time as the programs see it. havend takes the system clock; the simulator gives each simulated node a
// clock of its own on simulated time, so that the shipped agent and controller run there unchanged.
import { sleep } from "./async.js";

export interface Clock {
  /** Milliseconds since the epoch (what Date.now() returns on the system clock). */
  now(): number;
  /** Resolves after `ms`, or early (without throwing) when the signal aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const systemClock: Clock = { now: () => Date.now(), sleep };

/** The clock's time as an ISO string, as etcd keys and events carry it. */
export const isoNow = (clock: Clock): string => new Date(clock.now()).toISOString();
