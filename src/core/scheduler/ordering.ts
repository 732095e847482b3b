// Graph helpers for the scheduler: cycles among order constraints, and the order in which guests are
// placed. Both are iterative so that a chain of 10,000 guests cannot overflow the stack.

/**
 * Strongly connected components with more than one member, or a member that points at itself: the
 * cycles of the graph. Tarjan's algorithm, written iteratively.
 */
export function findCycles(vertices: readonly string[], edges: ReadonlyMap<string, readonly string[]>) {
  const index = new Map<string, number>();
  const lowLink = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  let counter = 0;

  for (const root of vertices) {
    if (index.has(root)) continue;
    const work: Array<{ vertex: string; next: number }> = [{ vertex: root, next: 0 }];
    index.set(root, counter);
    lowLink.set(root, counter++);
    stack.push(root);
    onStack.add(root);
    while (work.length > 0) {
      const frame = work[work.length - 1]!;
      const targets = edges.get(frame.vertex) ?? [];
      if (frame.next < targets.length) {
        const target = targets[frame.next++]!;
        if (!index.has(target)) {
          index.set(target, counter);
          lowLink.set(target, counter++);
          stack.push(target);
          onStack.add(target);
          work.push({ vertex: target, next: 0 });
        } else if (onStack.has(target)) {
          lowLink.set(frame.vertex, Math.min(lowLink.get(frame.vertex)!, index.get(target)!));
        }
        continue;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent)
        lowLink.set(parent.vertex, Math.min(lowLink.get(parent.vertex)!, lowLink.get(frame.vertex)!));
      if (lowLink.get(frame.vertex) !== index.get(frame.vertex)) continue;
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== frame.vertex);
      const selfLoop = component.length === 1 && targets.includes(frame.vertex);
      if (component.length > 1 || selfLoop) cycles.push(component.sort());
    }
  }
  return cycles;
}

/**
 * Every vertex after the vertices it depends on (depth first, dependencies in the given order), and
 * otherwise in the given order. Dependencies inside a cycle are skipped where the cycle closes.
 */
export function dependenciesFirst(
  vertices: readonly string[],
  dependencies: (vertex: string) => readonly string[],
): string[] {
  const result: string[] = [];
  const state = new Map<string, "visiting" | "done">();
  for (const root of vertices) {
    if (state.has(root)) continue;
    state.set(root, "visiting");
    const work: Array<{ vertex: string; deps: readonly string[]; next: number }> = [
      { vertex: root, deps: dependencies(root), next: 0 },
    ];
    while (work.length > 0) {
      const frame = work[work.length - 1]!;
      if (frame.next < frame.deps.length) {
        const dep = frame.deps[frame.next++]!;
        if (state.has(dep)) continue;
        state.set(dep, "visiting");
        work.push({ vertex: dep, deps: dependencies(dep), next: 0 });
        continue;
      }
      work.pop();
      state.set(frame.vertex, "done");
      result.push(frame.vertex);
    }
  }
  return result;
}
