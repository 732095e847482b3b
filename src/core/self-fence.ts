// Invariant 2 of the design brief, "run only with a lease": an agent may run guests only until
//   deadline = (when the last successful keep-alive was sent) + TTL − safety margin.
// Counting from the *send* time is what makes it safe: etcd received that keep-alive later, so its copy of the
// lease expires later still. After the deadline the agent kills its guests before etcd can declare the node
// dead and let another node start them.

/** Default margin: enough for SIGKILL of every local QEMU plus timer slack, well inside a 5 s TTL. */
export const DEFAULT_SELF_FENCE_MARGIN_MS = 1500;

export function selfFenceDeadline(lastRenewSentAtMs: number, ttlSeconds: number, marginMs: number): number {
  if (lastRenewSentAtMs <= 0) return 0; // never renewed: no right to run anything
  return lastRenewSentAtMs + ttlSeconds * 1000 - marginMs;
}

/** Keep-alives go out often enough that several may fail before the deadline: TTL/5 (1 s for 5 s). */
export function keepAliveIntervalMs(ttlSeconds: number): number {
  return (ttlSeconds * 1000) / 5;
}

export function mayRunGuests(nowMs: number, deadlineMs: number): boolean {
  return nowMs < deadlineMs;
}

/**
 * The hardware (or softdog) watchdog is fed only while the node may run what it runs: with a valid lease, or
 * with no guest left. A hung agent stops feeding it, and so does one whose guests outlive the lease (a kill
 * that did not work); either way the watchdog resets the machine.
 */
export function mayFeedWatchdog(leaseValid: boolean, runningGuests: number): boolean {
  return leaseValid || runningGuests === 0;
}
