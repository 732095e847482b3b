// Real guests on fakes: what `vm create` and `vm set` accept and refuse (disks, network cards, firmware,
// cloud-init), what they leave behind when they refuse (nothing), and the QEMU launch a spec becomes.
import assert from "node:assert/strict";
import { beforeEach, describe, test } from "node:test";
import { ClusterStore } from "../../src/adapters/etcd/cluster-store.js";
import { FakeEtcd } from "../../src/adapters/etcd/fake.js";
import { FakeStorage } from "../../src/adapters/storage/fake.js";
import { guestLaunch } from "../../src/agent/guest-launch.js";
import { HavenService } from "../../src/api/service.js";
import { seedFiles, type SeedFiles } from "../../src/core/cloud-init.js";
import { allocateMac, ownedImages, tapName } from "../../src/core/hardware.js";
import { nodeInfo, serviceOptions, vmSpec } from "./fixtures.js";

const MB = 1024 * 1024;
const metaData = (seed: SeedFiles) => JSON.parse(seed["meta-data"]) as Record<string, string>;

describe("vm create and vm set with real hardware", () => {
  let store: ClusterStore;
  let storage: FakeStorage;
  let service: HavenService;
  let seeds: Map<string, SeedFiles>;

  beforeEach(async () => {
    const etcd = new FakeEtcd({ now: () => Date.now() });
    store = new ClusterStore(etcd, "/test/");
    storage = new FakeStorage();
    seeds = new Map();
    service = new HavenService(store, storage, serviceOptions(seeds));
    await store.putNode(nodeInfo("n1", { bridges: ["br-lab"] }), await etcd.grantLease(60));
  });

  const base = { canary: false, start: false } as const;
  const images = async () => (await storage.list()).map((image) => image.name).sort();

  test("a guest booting from a clone of a golden image, with a card and cloud-init", async () => {
    await storage.create("debian", 8 * MB);
    await storage.createSnapshot("debian", "golden");
    const view = await service.createVm({
      ...base,
      name: "web",
      clone: { image: "debian", snapshot: "golden" },
      diskSizeMb: 16,
      blankDisks: [{ sizeMb: 4, bus: "virtio-scsi" }],
      nics: [{ bridge: "br-lab", model: "virtio" }],
      cloudInit: { sshKeys: ["ssh-ed25519 AAAA key"], hostname: "web1" },
    });
    const spec = (await service.showVm("web")).spec;
    assert.equal(spec.kernel, undefined);
    assert.equal(spec.firmware, "bios");
    assert.deepEqual([spec.cpu, spec.machine], ["Westmere-v1", "pc-q35-7.2"]);
    assert.deepEqual(spec.disks, [{ image: "web-disk0" }, { image: "web-disk1", bus: "virtio-scsi" }]);
    assert.equal((await storage.info("web-disk0")).sizeBytes, 16 * MB);
    assert.match(view.nics[0]!.mac, /^52:54:00(:[0-9a-f]{2}){3}$/);
    const seed = seeds.get("web-seed")!;
    assert.match(seed["user-data"], /^#cloud-config\n/);
    assert.deepEqual(JSON.parse(seed["user-data"].slice("#cloud-config\n".length)), {
      hostname: "web1",
      ssh_authorized_keys: ["ssh-ed25519 AAAA key"],
    });
    assert.deepEqual(JSON.parse(seed["network-config"]!), {
      version: 2,
      ethernets: { nic0: { match: { macaddress: view.nics[0]!.mac }, dhcp4: true } },
    });
  });

  test("bad hardware is refused with one clear line, and nothing is created", async () => {
    await storage.create("taken", 64 * MB);
    await service.createVm({ ...base, name: "owner", disks: [{ image: "taken" }], nics: [] });
    const before = await images();
    const refusals: Array<[Record<string, unknown>, RegExp]> = [
      [{ nics: [{ bridge: "nosuch" }] }, /no online node has bridge nosuch/],
      [{ disks: [{ image: "missing" }] }, /disk missing does not exist/],
      [{ disks: [{ image: "taken" }] }, /disk taken is attached to VM owner/],
      [{ diskSizeMb: 64, disks: [{ image: "taken" }] }, /attached to VM owner/],
      [{ cdrom: { image: "no-iso" } }, /disk no-iso does not exist/],
      [{ firmware: "uefi", diskSizeMb: 64 }, /--firmware uefi needs UEFI firmware.*apt install ovmf/],
      [{ cpu: "Pentium-9000", diskSizeMb: 64 }, /QEMU has no CPU model Pentium-9000/],
      [{ cpu: "host", diskSizeMb: 64 }, /--cpu host needs KVM/],
      [{ machine: "pc-q35-1.0", diskSizeMb: 64 }, /QEMU has no machine type pc-q35-1\.0/],
      [{}, /a VM needs something to boot/],
    ];
    for (const [extra, message] of refusals)
      await assert.rejects(
        service.createVm({ ...base, name: "bad", ...extra }),
        { message },
        String(message),
      );
    assert.deepEqual(await images(), before, "no disk, clone or seed was left behind");
    assert.equal((await store.listSpecs()).length, 1);
  });

  test("MACs are unique in the cluster; a malformed or multicast one is refused", async () => {
    const nic = { bridge: "br-lab", mac: "52:54:00:aa:bb:cc" };
    await service.createVm({ ...base, name: "a", diskSizeMb: 8, nics: [nic] });
    await assert.rejects(service.createVm({ ...base, name: "b", diskSizeMb: 8, nics: [nic] }), {
      code: "CONFLICT",
      message: /MAC 52:54:00:aa:bb:cc is taken by VM a/,
    });
    await assert.rejects(
      service.createVm({
        ...base,
        name: "c",
        diskSizeMb: 8,
        nics: [
          { ...nic, mac: "52:54:00:AA:BB:CD" },
          { ...nic, mac: "52:54:00:aa:bb:cd" },
        ],
      }),
      { message: /taken by another card of this VM/ },
    );
    assert.throws(
      () => allocateMac(new Set(), () => new Uint8Array([1, 2])),
      /could not find/,
      "short random",
    );
    const taken = new Set(["52:54:00:01:02:03"]);
    let calls = 0;
    const mac = allocateMac(taken, () =>
      calls++ === 0 ? new Uint8Array([1, 2, 3]) : new Uint8Array([4, 5, 6]),
    );
    assert.equal(mac, "52:54:00:04:05:06", "a taken MAC is drawn again");
  });

  test("vm set changes a stopped VM's hardware and rebuilds its seed; a started one is refused", async () => {
    await storage.create("extra", 8 * MB);
    await service.createVm({ ...base, name: "v", diskSizeMb: 8, cloudInit: { sshKeys: [] } });
    const firstSeed = seeds.get("v-seed");
    const changed = await service.updateVm("v", {
      memoryMb: 1024,
      disks: [{ image: "v-disk0" }, { image: "extra" }],
      nics: [{ bridge: "br-lab", model: "e1000" }],
      cloudInit: { sshKeys: ["ssh-rsa K"], user: "admin" },
    });
    assert.equal(changed.spec.memoryMb, 1024);
    assert.deepEqual(
      changed.spec.disks.map((d) => d.image),
      ["v-disk0", "extra"],
    );
    assert.equal(changed.spec.nics?.[0]?.model, "e1000");
    assert.notDeepEqual(seeds.get("v-seed"), firstSeed, "the seed follows the change");
    assert.notEqual(
      metaData(seeds.get("v-seed")!)["instance-id"],
      metaData(firstSeed!)["instance-id"],
      "a new instance-id makes cloud-init apply it",
    );
    await service.setDesiredState("v", "started");
    await assert.rejects(service.updateVm("v", { vcpus: 2 }), {
      code: "CONFLICT",
      message: /must be stopped/,
    });
    const policy = await service.updateVm("v", { priority: 5 });
    assert.equal(policy.spec.priority, 5, "policy changes need no stop");
  });

  test("deleting a VM deletes what it owns (its disks and its seed, not a shared CD-ROM), and nothing while a disk is open", async () => {
    await storage.create("installer", 8 * MB);
    await service.createVm({
      ...base,
      name: "gone",
      diskSizeMb: 8,
      cdrom: { image: "installer" },
      cloudInit: { sshKeys: [] },
    });
    await storage.create("gone-seed", MB); // the fake writeSeed records files only
    storage.watching.set("gone-disk0", ["198.18.0.9:0/1"]);
    await assert.rejects(service.deleteVm("gone"), /disk gone-disk0 is still open by 198\.18\.0\.9:0\/1/);
    assert.equal((await service.showVm("gone")).name, "gone", "a refused delete keeps the VM");
    storage.watching.delete("gone-disk0");
    await service.deleteVm("gone");
    assert.deepEqual(await images(), ["installer"]);
  });
});

describe("the QEMU launch of a spec", () => {
  const source = (image: string, pool?: string) => ({
    driver: "file" as const,
    filename: `/${pool ?? "rbd"}/${image}`,
  });

  test("firmware boot from the first disk, cards on generation-tagged taps, CD-ROM and seed", () => {
    const spec = vmSpec("web", {
      kernel: undefined,
      firmware: "uefi",
      cpu: "Westmere-v1",
      machine: "pc-q35-7.2",
      disks: [{ image: "web-disk0" }, { image: "data", pool: "fast", bus: "virtio-scsi" }],
      cdrom: { image: "iso" },
      nics: [{ bridge: "br0", mac: "52:54:00:00:00:01", model: "virtio", vlan: 7 }],
      cloudInit: { sshKeys: [] },
    });
    const launch = guestLaunch(spec, 3, { accel: "tcg", source });
    assert.equal(launch.kernel, undefined);
    assert.deepEqual(launch.firmware, { type: "uefi", vars: source("web-efivars") });
    assert.deepEqual(launch.disks, [
      { image: "web-disk0", source: source("web-disk0") },
      { image: "data", source: source("data", "fast"), bus: "virtio-scsi" },
    ]);
    assert.deepEqual(
      launch.cdroms?.map((c) => c.image),
      ["iso"],
    );
    assert.deepEqual(launch.seed, { image: "web-seed", source: source("web-seed") });
    assert.deepEqual(launch.nics, [
      { tap: tapName("web", 3, 0), bridge: "br0", mac: "52:54:00:00:00:01", model: "virtio", vlan: 7 },
    ]);
    assert.notEqual(tapName("web", 3, 0), tapName("web", 4, 0), "a migration's target gets its own tap");
    assert.ok(
      tapName("a-very-long-vm-name-of-sixty-three-characters-is-allowed-by-haven", 255, 15).length <= 15,
    );
    assert.deepEqual(ownedImages(spec), [
      { image: "web-disk0" },
      { image: "data", pool: "fast" },
      { image: "web-efivars" },
      { image: "web-seed" },
    ]);
  });

  test("cloud-init: a user of its own, or the keys for the image's default user", () => {
    const nic = { bridge: "br0", mac: "52:54:00:00:00:01", model: "virtio" as const };
    const own = seedFiles("v", { user: "ops", sshKeys: ["k1"], hostname: "h" }, [nic]);
    const userData = JSON.parse(own["user-data"].replace("#cloud-config\n", "")) as { users: unknown[] };
    assert.deepEqual(userData.users[1], {
      name: "ops",
      sudo: "ALL=(ALL) NOPASSWD:ALL",
      shell: "/bin/bash",
      lock_passwd: true,
      ssh_authorized_keys: ["k1"],
    });
    assert.equal(metaData(own)["local-hostname"], "h");
    const none = seedFiles("v", { sshKeys: [], userData: "#cloud-config\nruncmd: [true]\n" }, []);
    assert.equal(none["user-data"], "#cloud-config\nruncmd: [true]\n");
    assert.equal(none["network-config"], undefined, "no card, no network-config");
    assert.deepEqual(seedFiles("v", { sshKeys: ["k"] }, [nic]), seedFiles("v", { sshKeys: ["k"] }, [nic]));
  });
});
