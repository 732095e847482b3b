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

/**
 * Keep-alives go out every TTL/10 (500 ms for 5 s), and every TTL/20 while the last one sent is unanswered:
 * it failed, or etcd is electing a leader. The deadline leaves TTL − margin (3.5 s) after the last answered
 * send, and an etcd leader's death takes most of it: its followers answer nothing until they notice, after
 * an election timeout etcd randomises between one and two of its 1 s default, and have voted. What is left
 * must cover the wait for the next keep-alive on either side of the election, so both waits are short.
 */
export function keepAliveIntervalMs(ttlSeconds: number): number {
  return (ttlSeconds * 1000) / 10;
}

/**
 * Whether a keep-alive goes out on this tick of a clock that ticks twice per interval: every second tick, or
 * every tick while the last one sent is unanswered (see keepAliveIntervalMs).
 */
export function keepAliveDue(ticksSinceLastSend: number, lastAnswered: boolean): boolean {
  return ticksSinceLastSend >= (lastAnswered ? 2 : 1);
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
