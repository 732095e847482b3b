// What the agent does for the guests it runs besides starting and stopping them: asking their guest agents
// what they run and which addresses they have, and carrying out users' actions (reboot, reset, disk growth).
// Both work off the agent's reconcile loop without slowing it: a guest whose agent does not answer costs a
// timeout in the background, never a stalled loop.
import type { ClusterStore } from "../adapters/etcd/cluster-store.js";
import type { Hypervisor } from "../adapters/qemu/port.js";
import type { GuestInfo } from "../core/hardware.js";
import type { VmAction } from "../core/model.js";
import type { Clock } from "../lib/clock.js";
import type { Logger } from "../lib/log.js";

/** How often a running guest's agent is asked again. */
const GUEST_INFO_INTERVAL_MS = 15_000;

export class GuestInfoPoller {
  private readonly known = new Map<string, { at: number; info?: GuestInfo }>();
  private readonly asking = new Set<string>();

  constructor(
    private readonly hypervisor: Hypervisor,
    private readonly clock: Clock,
    /** Called when what a guest's agent says has changed (the status is then written again). */
    private readonly changed: () => void,
  ) {}

  /** Asks the agents of `vms` whose answer is older than the interval; returns at once. */
  refresh(vms: Iterable<string>): void {
    const now = this.clock.now();
    for (const vm of vms) {
      const last = this.known.get(vm);
      if (this.asking.has(vm) || (last && now - last.at < GUEST_INFO_INTERVAL_MS)) continue;
      this.asking.add(vm);
      void this.hypervisor
        .guestInfo(vm)
        .catch(() => undefined)
        .then((info) => {
          this.asking.delete(vm);
          const before = JSON.stringify(this.known.get(vm)?.info);
          this.known.set(vm, { at: this.clock.now(), ...(info && { info }) });
          if (JSON.stringify(info) !== before) this.changed();
        });
    }
  }

  get(vm: string): GuestInfo | undefined {
    return this.known.get(vm)?.info;
  }

  forget(vm: string): void {
    this.known.delete(vm);
  }
}

export interface ActionContext {
  node: string;
  store: ClusterStore;
  hypervisor: Hypervisor;
  log: Logger;
  event: (type: string, vm: string, reason: string) => void;
}

/** Carries out each action once, on the guest generation it was meant for, and then removes its record. */
export class GuestActions {
  private readonly done = new Set<string>();

  constructor(private readonly ctx: ActionContext) {}

  run(actions: ReadonlyMap<string, VmAction>, runningGeneration: (vm: string) => number | undefined): void {
    for (const [vm, action] of actions) {
      if (this.done.has(action.id) || runningGeneration(vm) !== action.generation) continue;
      this.done.add(action.id);
      void this.carryOut(vm, action);
    }
  }

  private async carryOut(vm: string, action: VmAction): Promise<void> {
    const { hypervisor, store, log, event } = this.ctx;
    const tag = `(action ${action.id})`;
    try {
      if (action.type === "reboot") await hypervisor.reboot(vm);
      else if (action.type === "reset") await hypervisor.reset(vm);
      else await hypervisor.resizeDisk(vm, action.disk ?? 0, action.sizeBytes ?? 0);
      const done = {
        reboot: ["rebooted", "the guest agent is rebooting the guest"],
        reset: ["reset", "hard reset (QMP system_reset)"],
        "resize-disk": [
          "disk-resized",
          `disk ${action.disk} grown to ${action.sizeBytes} bytes; the guest was told`,
        ],
      }[action.type];
      event(done[0]!, vm, `${done[1]} ${tag}`);
    } catch (err) {
      log.warn("guest action failed", { vm, action: action.type, err });
      event("action-failed", vm, `${action.type} failed ${tag}: ${(err as Error).message}`);
    }
    await store.deleteAction(vm, action.id).catch(() => undefined);
  }
}
