// The simulator's clock: a discrete event queue in simulated milliseconds. Tasks run in (time, insertion)
// order, so a run is a pure function of the scenario: no wall clock, no randomness.

interface Task {
  time: number;
  seq: number;
  run: () => void;
}

/** A scenario whose tasks never settle (a retry loop at one instant) stops here instead of hanging. */
const MAX_TASKS = 5_000_000;

export class Scheduler {
  /** Simulated time in ms since the scenario began. */
  now = 0;
  private readonly heap: Task[] = [];
  private seq = 0;
  private executed = 0;

  /** Runs `run` at `time` (never earlier than now). */
  at(time: number, run: () => void): void {
    this.push({ time: Math.max(time, this.now), seq: this.seq++, run });
  }

  after(delayMs: number, run: () => void): void {
    this.at(this.now + delayMs, run);
  }

  /** Runs every task due up to and including `end`, calling `afterEach` after each; then the clock is `end`. */
  runUntil(end: number, afterEach: () => void): void {
    for (;;) {
      const next = this.heap[0];
      if (!next || next.time > end) break;
      this.pop();
      this.now = next.time;
      next.run();
      afterEach();
      if (++this.executed > MAX_TASKS)
        throw new Error(`simulation did not settle: more than ${MAX_TASKS} tasks by t=${this.now} ms`);
    }
    this.now = end;
  }

  private push(task: Task): void {
    const heap = this.heap;
    heap.push(task);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(heap[i]!, heap[parent]!)) break;
      [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
      i = parent;
    }
  }

  private pop(): void {
    const heap = this.heap;
    const last = heap.pop()!;
    if (heap.length === 0) return;
    heap[0] = last;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      const right = left + 1;
      let smallest = i;
      if (left < heap.length && before(heap[left]!, heap[smallest]!)) smallest = left;
      if (right < heap.length && before(heap[right]!, heap[smallest]!)) smallest = right;
      if (smallest === i) return;
      [heap[i], heap[smallest]] = [heap[smallest]!, heap[i]!];
      i = smallest;
    }
  }
}

function before(a: Task, b: Task): boolean {
  return a.time < b.time || (a.time === b.time && a.seq < b.seq);
}
