// The simulated programs' `serialized` reconcile (lib/async.ts): at most one pending run per loop; a run that
// failed on etcd holds the next one back by the client's request timeout, as a real failed request would.
import { isEtcdError } from "./etcd.js";
import type { World } from "./world.js";

export function simReconciler(world: World, node: string, run: () => void, blockMs: number): () => void {
  let pendingAt: number | undefined;
  let blockedUntil = 0;
  return () => {
    const at = Math.max(world.now(), blockedUntil);
    if (pendingAt !== undefined && pendingAt <= at) return;
    pendingAt = at;
    world.nodeTask(node, at - world.now(), () => {
      if (pendingAt !== at) return;
      pendingAt = undefined;
      try {
        run();
      } catch (err) {
        if (!isEtcdError(err)) throw err;
        blockedUntil = world.now() + blockMs;
      }
    });
  };
}
