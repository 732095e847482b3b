// Model records for unit tests: a node, a VM spec, a placement and a status with plain defaults, each
// changed by the fields a test gives; a create-VM request and a whole havend on fakes.
import assert from "node:assert/strict";
import { HavenError } from "../../src/core/errors.js";
import type { QemuCapabilities } from "../../src/adapters/qemu/capabilities.js";
import type { ImportOptions } from "../../src/api/import-service.js";
import type { SeedFiles } from "../../src/core/cloud-init.js";
import type { NodeInfo, Placement, VmSpec, VmStatus } from "../../src/core/model.js";
import type { ClusterStore } from "../../src/adapters/etcd/cluster-store.js";
import { FakeFenceRunner } from "../../src/adapters/fence/fake.js";
import { FakeHostNetwork } from "../../src/adapters/network/fake.js";
import { FakeHypervisor } from "../../src/adapters/qemu/fake-hypervisor.js";
import { FakeStorage } from "../../src/adapters/storage/fake.js";
import type { CreateVmInput } from "../../src/api/service.js";
import { Havend } from "../../src/havend/havend.js";
import { systemClock } from "../../src/lib/clock.js";
import { silentLogger } from "../../src/lib/log.js";

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

/** A QEMU that offers q35 and i440fx 7.2, Westmere, qemu64 and host, and UEFI only when asked. */
export const fakeCapabilities =
  (extra: Partial<QemuCapabilities> = {}) =>
  (): Promise<QemuCapabilities> =>
    Promise.resolve({
      machines: new Set(["pc-q35-7.2", "pc-i440fx-7.2"]),
      aliases: new Map([
        ["q35", "pc-q35-7.2"],
        ["pc", "pc-i440fx-7.2"],
      ]),
      cpuModels: new Set(["Westmere-v1", "qemu64", "host"]),
      uefi: false,
      ...extra,
    });

/** Random bytes that count up, so MACs chosen in a test are predictable. */
export function countingRandom(): (bytes: number) => Uint8Array {
  let next = 0;
  return (bytes) => Uint8Array.from({ length: bytes }, () => next++ % 256);
}

/** ImportService options for unit tests: the default pool `pool`, the fake QEMU above. */
export const importOptions = (pool: string | null, extra: Partial<ImportOptions> = {}): ImportOptions => ({
  pool,
  capabilities: fakeCapabilities(),
  random: countingRandom(),
  ...extra,
});

/** HavenService options for unit tests: QEMU offers q35 7.2, Westmere and host; seeds land in `seeds`. */
export function serviceOptions(seeds = new Map<string, SeedFiles>()) {
  return {
    name: "test",
    guestDir: "/nonexistent",
    capabilities: fakeCapabilities(),
    writeSeed: (_storage: unknown, image: string, files: SeedFiles) => {
      seeds.set(image, files);
      return Promise.resolve();
    },
  };
}

/** A request for a started HA VM on the test's own "kernel" (any file does for a fake hypervisor). */
export const startedVmRequest = (name: string, extra: Partial<CreateVmInput> = {}): CreateVmInput => ({
  name,
  canary: false,
  ha: true,
  restartLimit: 1,
  relocateLimit: 0,
  failureTimeoutSeconds: 0,
  priority: 0,
  stickiness: 0,
  allowMigrate: true,
  kernel: process.execPath,
  start: true,
  ...extra,
});

/** A whole havend (lease, agent, controller candidate) on fakes, with its lease file in memory. */
export function havendOnFakes(options: {
  info: NodeInfo;
  store: ClusterStore;
  hypervisor?: FakeHypervisor;
  migrationHost?: string;
  onRemoved?: () => void;
}): Havend {
  let leaseId = "";
  return new Havend({
    info: options.info,
    leaseTtlSeconds: 5,
    clock: systemClock,
    store: options.store,
    hypervisor: options.hypervisor ?? new FakeHypervisor(),
    storage: new FakeStorage(),
    fenceAgents: new FakeFenceRunner(),
    network: new FakeHostNetwork(),
    leaseFile: {
      read: () => Promise.resolve(leaseId),
      write: (id) => Promise.resolve(void (leaseId = id)),
    },
    accel: "tcg",
    migration: { host: options.migrationHost ?? "127.0.0.1", tlsDir: "/tls" },
    ...(options.onRemoved && { onRemoved: options.onRemoved }),
    log: silentLogger,
  });
}

/** The message of the HavenError with `code` that `promise` rejects with; fails the test otherwise. */
export async function refusal(promise: Promise<unknown>, code: string): Promise<string> {
  const err = await promise.then(
    () => assert.fail(`expected a refusal (${code})`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof HavenError, String(err));
  assert.equal(err.code, code, err.message);
  return err.message;
}
