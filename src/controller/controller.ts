// The controller: runs only on the elected havend. It turns the pure plan into compare-and-swap writes
// and records every decision as an event.
import { emptyVmMaps, type ClusterStore, type VmMaps } from "../adapters/etcd/cluster-store.js";
import { campaign, resign } from "../adapters/etcd/election.js";
import { runInformer } from "../adapters/etcd/informer.js";
import { planController, type ControllerAction } from "../core/controller-plan.js";
import type { NodeInfo } from "../core/model.js";
import { nodeInfoSchema } from "../core/model.js";
import { serialized, sleep } from "../lib/async.js";
import type { Logger } from "../lib/log.js";

export interface ControllerDeps {
  node: string;
  store: ClusterStore;
  lease: () => string;
  log: Logger;
}

const TICK_MS = 1000;

export class Controller {
  private readonly nodes = new Map<string, NodeInfo>();
  private vms: VmMaps = emptyVmMaps();
  /** Last reason reported per unplaceable VM, so a waiting VM is one event, not one per second. */
  private readonly unplaceable = new Map<string, string>();
  private synced = { nodes: false, vms: false };
  private readonly reconcile: () => void;

  constructor(private readonly deps: ControllerDeps) {
    this.reconcile = serialized(
      () => this.reconcileOnce(),
      (err) => deps.log.error("reconcile failed", { err }),
    );
  }

  /** Campaigns for leadership and leads while elected, until the signal aborts. */
  async run(signal: AbortSignal): Promise<void> {
    const { store, log } = this.deps;
    while (!signal.aborted) {
      const lease = this.deps.lease();
      try {
        await campaign(store.etcd, store.controllerKey, this.deps.node, lease, signal);
      } catch (err) {
        if (signal.aborted) break;
        log.warn("campaign failed", { err });
        await sleep(TICK_MS, signal);
        continue;
      }
      log.info("elected controller", { lease });
      await store
        .appendEvent({ type: "leader", node: this.deps.node, reason: "elected controller" })
        .catch(() => undefined);
      const term = new AbortController();
      const stop = () => term.abort();
      signal.addEventListener("abort", stop, { once: true });
      await Promise.all([this.lead(term.signal), this.watchLeadership(lease, term)]);
      signal.removeEventListener("abort", stop);
      log.info("no longer controller");
    }
    await resign(store.etcd, store.controllerKey, this.deps.lease()).catch(() => undefined);
  }

  /** Ends the term when our election key is gone (lease lost) or belongs to another lease. */
  private async watchLeadership(lease: string, term: AbortController): Promise<void> {
    while (!term.signal.aborted) {
      await sleep(TICK_MS, term.signal);
      const kv = await this.deps.store.etcd
        .get(this.deps.store.controllerKey)
        .catch(() => "unknown" as const);
      if (kv === "unknown") continue;
      if (!kv || kv.lease !== lease || lease !== this.deps.lease()) term.abort();
    }
  }

  private async lead(signal: AbortSignal): Promise<void> {
    const { store, log } = this.deps;
    this.synced = { nodes: false, vms: false };
    const onError = (err: unknown, retryInMs: number) => log.warn("watch failed", { err, retryInMs });
    const nodes = runInformer(
      store.etcd,
      store.nodesPrefix,
      {
        onSnapshot: (kvs) => {
          this.nodes.clear();
          for (const kv of kvs)
            this.nodes.set(
              kv.key.slice(store.nodesPrefix.length),
              nodeInfoSchema.parse(JSON.parse(kv.value)),
            );
          this.synced.nodes = true;
          this.reconcile();
        },
        onEvents: (events) => {
          for (const { type, kv } of events) {
            const name = kv.key.slice(store.nodesPrefix.length);
            if (type === "delete") this.nodes.delete(name);
            else this.nodes.set(name, nodeInfoSchema.parse(JSON.parse(kv.value)));
          }
          this.reconcile();
        },
        onError,
      },
      signal,
    );
    const vms = store.watchVms(
      signal,
      (maps, events) => {
        this.vms = maps;
        if (events === null) this.synced.vms = true;
        this.reconcile();
      },
      onError,
    );
    while (!signal.aborted) {
      await sleep(TICK_MS, signal);
      this.reconcile();
    }
    await Promise.all([nodes, vms]);
  }

  private async reconcileOnce(): Promise<void> {
    if (!this.synced.nodes || !this.synced.vms) return;
    const actions = planController({
      nodes: [...this.nodes.values()],
      ...this.vms,
    });
    for (const action of actions) await this.apply(action);
    for (const vm of this.unplaceable.keys()) {
      if (!actions.some((action) => action.type === "unplaceable" && action.vm === vm))
        this.unplaceable.delete(vm);
    }
  }

  private async apply(action: ControllerAction): Promise<void> {
    const { store, log } = this.deps;
    if (action.type === "unplaceable") {
      if (this.unplaceable.get(action.vm) === action.reason) return;
      this.unplaceable.set(action.vm, action.reason);
      log.warn("cannot place VM", { vm: action.vm, reason: action.reason });
      await store.appendEvent({ type: "unplaceable", vm: action.vm, reason: action.reason });
      return;
    }
    if (action.type === "release") {
      if (await store.swapPlacement(action.vm, null, action.expectedGeneration)) {
        this.vms.placements.delete(action.vm);
        await store.appendEvent({ type: "released", vm: action.vm, reason: action.reason });
      }
      return;
    }
    const placement = { ...action.placement, updatedAt: new Date().toISOString() };
    if (!(await store.swapPlacement(action.vm, placement, action.expectedGeneration))) return;
    this.vms.placements.set(action.vm, placement);
    const type =
      placement.state === "error" ? "error" : action.expectedGeneration === 0 ? "placed" : "restarting";
    log.info("placement", { vm: action.vm, node: placement.node, generation: placement.generation, type });
    await store.appendEvent({ type, vm: action.vm, node: placement.node, reason: action.event });
  }
}
