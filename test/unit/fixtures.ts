// Model records for unit tests: a node, a VM spec, a placement and a status with plain defaults, each
// changed by the fields a test gives.
import type { SeedFiles } from "../../src/core/cloud-init.js";
import type { NodeInfo, Placement, VmSpec, VmStatus } from "../../src/core/model.js";

export const nodeInfo = (name: string, extra: Partial<NodeInfo> = {}): NodeInfo => ({
  name,
  api: "http://127.0.0.1:1",
  capacity: { vcpus: 4, memoryMb: 1024 },
  attributes: {},
  accel: "tcg",
  accelReason: "test",
  storage: { ok: true, summary: "test" },
  startedAt: "t0",
  version: "0",
  ...extra,
});

export const vmSpec = (name: string, extra: Partial<VmSpec> = {}): VmSpec => ({
  name,
  state: "started",
  memoryMb: 256,
  vcpus: 1,
  kernel: "/k",
  disks: [],
  canary: false,
  ha: true,
  restartLimit: 2,
  relocateLimit: 1,
  failureTimeoutSeconds: 0,
  priority: 0,
  stickiness: 0,
  allowMigrate: true,
  stopGraceSeconds: 0,
  createdAt: "t0",
  ...extra,
});

export const placementOn = (node: string, extra: Partial<Placement> = {}): Placement => ({
  node,
  generation: 1,
  restarts: 0,
  relocations: 0,
  state: "active",
  reason: "",
  updatedAt: "t0",
  ...extra,
});

export const statusOn = (node: string, state: VmStatus["state"], generation = 1): VmStatus => ({
  node,
  generation,
  state,
  updatedAt: "t0",
});

/** HavenService options for unit tests: QEMU offers q35 7.2, Westmere and host; seeds land in `seeds`. */
export function serviceOptions(seeds = new Map<string, SeedFiles>()) {
  return {
    name: "test",
    guestDir: "/nonexistent",
    capabilities: () =>
      Promise.resolve({
        machines: new Set(["pc-q35-7.2", "pc-i440fx-7.2"]),
        aliases: new Map([
          ["q35", "pc-q35-7.2"],
          ["pc", "pc-i440fx-7.2"],
        ]),
        cpuModels: new Set(["Westmere-v1", "qemu64", "host"]),
        uefi: false,
      }),
    writeSeed: (_storage: unknown, image: string, files: SeedFiles) => {
      seeds.set(image, files);
      return Promise.resolve();
    },
  };
}
