// The simulator's clock: a discrete event queue in simulated milliseconds. Tasks run in (time, insertion)
// order, and after each one every promise continuation it caused runs too (the shipped programs are async)
// before the next task or the clock moves on. So a run is a pure function of the scenario: no wall clock,
// no randomness, and nothing of the programs runs between two tasks.

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

  /**
   * Runs every task due up to and including `end`, each followed by the promise continuations it caused and
   * then `afterEach`; then the clock is `end`.
   */
  async runUntil(end: number, afterEach: () => void): Promise<void> {
    for (;;) {
      const next = this.heap[0];
      if (!next || next.time > end) break;
      this.pop();
      this.now = next.time;
      next.run();
      await settled();
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

/**
 * Resolves once every pending promise continuation has run: setImmediate callbacks run only after the
 * microtask queue is empty. The simulated programs do no real I/O, so nothing else is waiting.
 */
function settled(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function before(a: Task, b: Task): boolean {
  return a.time < b.time || (a.time === b.time && a.seq < b.seq);
}
