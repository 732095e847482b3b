// A stack of undo steps for multi-step operations: create disk → write spec; on failure undo in reverse.
export class Rollback {
  private steps: Array<() => Promise<unknown>> = [];

  push(undo: () => Promise<unknown>): void {
    this.steps.push(undo);
  }

  /** The operation succeeded: nothing to undo. */
  clear(): void {
    this.steps = [];
  }

  /** Undo every step in reverse order; keep going when one undo fails, and return the failures. */
  async run(): Promise<unknown[]> {
    const failures: unknown[] = [];
    for (const undo of this.steps.reverse()) {
      await undo().catch((err: unknown) => failures.push(err));
    }
    this.steps = [];
    return failures;
  }
}
