// The import service on fakes (etcd, storage): a crm configuration and its libvirt domains become VMs on
// existing RBD images, all or nothing; every finding carries file:line:column.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, test } from "node:test";
import { ClusterStore } from "../../src/adapters/etcd/cluster-store.js";
import { ConstraintStore } from "../../src/adapters/etcd/constraint-store.js";
import { FakeEtcd } from "../../src/adapters/etcd/fake.js";
import { FakeStorage } from "../../src/adapters/storage/fake.js";
import { ImportService, type ImportOptions, type ImportResult } from "../../src/api/import-service.js";
import { importCibRequest, importCrmRequest, importLibvirtRequest } from "../../src/api/requests.js";
import { notFound } from "../../src/core/errors.js";
import { fakeCapabilities, importOptions, nodeInfo, refusal } from "./fixtures.js";

const KERNEL = process.execPath; // any readable file will do as a kernel for fakes
// The test runner starts in the repository root; dist/ does not hold fixtures.
const fixture = (name: string) => readFileSync(join(process.cwd(), "test/fixtures/import", name), "utf8");
const MB = 1024 * 1024;

const domain = (name: string, image = `${name}-disk`, extra = "") =>
  `<domain type='kvm'>\n  <name>${name}</name>\n  <memory unit='MiB'>256</memory>\n  <vcpu>2</vcpu>\n` +
  `  <os><type>hvm</type><kernel>${KERNEL}</kernel><cmdline>console=ttyS0</cmdline></os>\n${extra}` +
  `  <devices>\n    <disk type='network' device='disk'>\n      <source protocol='rbd' name='${image}'/>\n` +
  `      <target dev='vda' bus='virtio'/>\n    </disk>\n  </devices>\n</domain>\n`;

// Line numbers matter: the tests below name them.
const SEED = [
  "node vmhost1 attributes hw=vm", // 1
  "node vmhost2 attributes hw=vm", // 2
  "primitive guest1 ocf:heartbeat:VirtualDomain \\", // 3
  "  params config=/etc/libvirt/guest1.xml \\", // 4
  "  meta allow-migrate=true priority=10 failure-timeout=5min resource-stickiness=INFINITY \\", // 5
  "  op start timeout=120s op stop timeout=90s", // 6
  "primitive guest2 ocf:heartbeat:VirtualDomain \\", // 7
  "  params config=/etc/libvirt/guest2.xml meta target-role=Stopped", // 8
  "location l-guest1 guest1 100: vmhost1", // 9
  "colocation c-apart -inf: guest1 guest2", // 10
  "order o-first Optional: guest1 guest2", // 11
  "rsc_defaults migration-threshold=3 resource-stickiness=100", // 12
  "",
].join("\n");

const DOMAINS = {
  "/etc/libvirt/guest1.xml": domain("guest1", "rbd/guest1-disk"),
  "/etc/libvirt/guest2.xml": domain("guest2", "rbd/guest2-disk"),
};

describe("import service on fakes", () => {
  let etcd: FakeEtcd;
  let store: ClusterStore;
  let storage: FakeStorage;
  let imports: ImportService;

  beforeEach(async () => {
    etcd = new FakeEtcd({ now: () => Date.now() });
    store = new ClusterStore(etcd, "/test/");
    storage = new FakeStorage();
    imports = new ImportService(store, storage, importOptions("rbd"));
    await storage.create("guest1-disk", 8 * MB);
    await storage.create("guest2-disk", 8 * MB);
  });
  afterEach(() => etcd.close());

  const crm = (overrides: Record<string, unknown> = {}) =>
    imports.importCrm(
      importCrmRequest.parse({ crm: SEED, file: "seed.crm", domains: DOMAINS, dryRun: false, ...overrides }),
    );
  const keys = async () => (await etcd.list("/test/")).kvs.map((kv) => kv.key);

  test("a dry run returns the plan and writes nothing", async () => {
    const result = await crm({ dryRun: true });
    assert.equal(result.dryRun, true);
    assert.deepEqual(
      result.vms.map((vm) => [vm.name, vm.spec.state, vm.disks, vm.spec.stickiness]),
      [
        ["guest1", "started", ["rbd/guest1-disk"], 1_000_000],
        ["guest2", "stopped", ["rbd/guest2-disk"], 100],
      ],
    );
    assert.deepEqual(
      result.constraints.map((c) => c.id),
      ["l-guest1", "c-apart", "o-first"],
    );
    assert.match(result.notes.join(" "), /placement applies location rules/);
    assert.deepEqual(await keys(), []);
  });

  test("success creates the VMs with the mapped policy, the constraints and node attributes", async () => {
    const result = await crm();
    const guest1 = (await store.getSpec("guest1"))!.value;
    assert.equal(guest1.state, "started");
    assert.equal(guest1.memoryMb, 256);
    assert.equal(guest1.vcpus, 2);
    assert.equal(guest1.kernel, KERNEL);
    assert.equal(guest1.append, "console=ttyS0");
    assert.deepEqual(guest1.disks, [{ image: "guest1-disk" }]);
    assert.equal(guest1.allowMigrate, true);
    assert.equal(guest1.priority, 10);
    assert.equal(guest1.stickiness, 1_000_000, "resource-stickiness=INFINITY");
    assert.equal(guest1.failureTimeoutSeconds, 300);
    assert.equal(
      guest1.restartLimit,
      2,
      "migration-threshold 3: two restarts in place, the third failure moves it",
    );
    assert.equal(guest1.stopGraceSeconds, 90);
    assert.equal(guest1.ha, true);
    const guest2 = (await store.getSpec("guest2"))!.value;
    assert.equal(guest2.state, "stopped");
    assert.equal(guest2.allowMigrate, false, "Pacemaker's default: no live migration");
    assert.equal(guest2.failureTimeoutSeconds, 0, "Pacemaker's default: failures never expire");
    assert.equal(guest2.stickiness, 100, "from rsc_defaults");
    assert.ok(!result.report.some((line) => /stickiness/.test(line.message)), "stickiness is honoured");
    const constraints = ConstraintStore.of(store);
    const stored = await constraints.listConstraints();
    assert.deepEqual(stored.map((c) => c.id).sort(), ["c-apart", "l-guest1", "o-first"]);
    const location = stored.find((c) => c.id === "l-guest1");
    assert.deepEqual(location && { ...location, importedAt: "" }, {
      type: "location",
      id: "l-guest1",
      vm: "guest1",
      node: "vmhost1",
      score: 100,
      source: { file: "seed.crm", line: 9 },
      importedAt: "",
    });
    assert.deepEqual(
      (await constraints.listNodeAttributes()).map((n) => [n.node, n.attributes]),
      [
        ["vmhost1", { hw: "vm" }],
        ["vmhost2", { hw: "vm" }],
      ],
    );
    assert.deepEqual(result.constraints.length, 3);
    const events = await store.listEvents();
    assert.ok(events.some((e) => e.type === "created" && e.vm === "guest1" && /seed\.crm:3/.test(e.reason)));
    assert.ok(events.some((e) => e.type === "constraints-imported"));
  });

  test("the placement-strategy property becomes the cluster's, from its line, replacing what was set", async () => {
    const constraints = ConstraintStore.of(store);
    await constraints.putPlacementStrategy({ strategy: "minimal", importedAt: "earlier" });
    const result = await crm({ crm: `${SEED}property placement-strategy=utilization\n` });
    assert.equal(result.placementStrategy?.strategy, "utilization");
    const stored = await constraints.getPlacementStrategy();
    assert.deepEqual(stored && [stored.strategy, stored.source], [
      "utilization",
      { file: "seed.crm", line: 13 },
    ]);
    assert.ok(
      result.report.some((line) =>
        /placement-strategy utilization replaces minimal \(set by a user\)/.test(line.message),
      ),
    );
    const config = new Map((await etcd.list("/test/config/")).kvs.map((kv) => [kv.key, kv.value]));
    assert.equal(store.parseConfig(config).rules.placementStrategy, "utilization");
    assert.ok((await store.listEvents()).some((e) => e.type === "placement-strategy-changed"));
  });

  test("import cib: the same mapping from CIB XML, with the CIB's lines", async () => {
    const cib = [
      "<cib><configuration>", // 1
      "<crm_config/><nodes/><resources>", // 2
      '<primitive id="guest1" class="ocf" provider="heartbeat" type="VirtualDomain">', // 3
      '<instance_attributes id="ia"><nvpair id="c" name="config" value="/etc/libvirt/guest1.xml"/></instance_attributes>',
      '<meta_attributes id="ma"><nvpair id="p" name="priority" value="10"/></meta_attributes>',
      "</primitive></resources><constraints>",
      '<rsc_location id="l-guest1" rsc="guest1" node="vmhost1" score="100"/>', // 7
      "</constraints></configuration></cib>",
    ].join("\n");
    const result = await imports.importCib(
      importCibRequest.parse({ cib, file: "seed.xml", domains: DOMAINS, dryRun: false }),
    );
    assert.deepEqual(
      result.vms.map((vm) => [vm.name, vm.file, vm.line, vm.spec.priority]),
      [["guest1", "seed.xml", 3, 10]],
    );
    const stored = await ConstraintStore.of(store).getConstraint("l-guest1");
    assert.deepEqual(stored?.source, { file: "seed.xml", line: 7 });
  });

  test("warnings carry the file, line and column; libvirt findings name the domain file", async () => {
    const guest1 = DOMAINS["/etc/libvirt/guest1.xml"].replace(
      "  <devices>",
      "  <devices>\n    <interface type='bridge'/>",
    );
    const result = await crm({ domains: { ...DOMAINS, "/etc/libvirt/guest1.xml": guest1 } });
    const start = result.report.find((line) => /op start timeout=120s/.test(line.message));
    assert.deepEqual(start && [start.file, start.line, start.column, start.severity], [
      "seed.crm",
      3,
      1,
      "warning",
    ]);
    const iface = result.report.find((line) => /interface/.test(line.message));
    assert.deepEqual(iface && [iface.file, iface.line, iface.severity], [
      "/etc/libvirt/guest1.xml",
      7,
      "warning",
    ]);
    assert.ok(iface!.column > 1);
    assert.ok(result.report.every((line) => line.severity === "warning"));
    // The crm file's findings come first, in line order.
    const crmLines = result.report.filter((line) => line.file === "seed.crm").map((line) => line.line);
    assert.deepEqual(
      crmLines,
      [...crmLines].sort((a, b) => a - b),
    );
    assert.equal(result.report.findIndex((line) => line.file !== "seed.crm") > 0, true);
  });

  test("errors refuse the import with the whole report, one line each, and create nothing", async () => {
    const broken = SEED.replace(
      "location l-guest1 guest1 100: vmhost1",
      'location l-guest1 guest1 "100: vmhost1',
    );
    const message = await refusal(crm({ crm: broken }), "INPUT");
    assert.match(message, /^import of seed\.crm refused: 1 error, nothing was imported$/m);
    assert.match(message, /^seed\.crm:9:\d+: error: .+$/m);
    assert.match(message, /^seed\.crm:3:1: warning: guest1: op start timeout/m);
    assert.deepEqual(await keys(), []);
  });

  test("a missing RBD image is named, and the other VM is not created either", async () => {
    await storage.delete("guest2-disk");
    const message = await refusal(crm(), "INPUT");
    assert.match(message, /^seed\.crm:7:1: error: guest2: RBD image rbd\/guest2-disk does not exist$/m);
    assert.deepEqual(await keys(), []);
  });

  test("a missing image in another pool and a missing kernel file are errors", async () => {
    const domains = {
      "/etc/libvirt/guest1.xml": domain("guest1", "vms/guest1-disk"),
      "/etc/libvirt/guest2.xml": domain("guest2", "rbd/guest2-disk").replace(
        /<kernel>.*<\/kernel>/,
        "<kernel>/nonexistent/vmlinuz</kernel>",
      ),
    };
    const message = await refusal(crm({ domains }), "INPUT");
    assert.match(message, /^seed\.crm:3:1: error: guest1: RBD image vms\/guest1-disk does not exist$/m);
    assert.match(message, /guest2: kernel file \/nonexistent\/vmlinuz does not exist/);
    assert.deepEqual(await keys(), []);
  });

  test("an unreadable libvirt file is reported on the line of the primitive that names it", async () => {
    const unreadable = { "/etc/libvirt/guest2.xml": "/etc/libvirt/guest2.xml: no such file" };
    const { "/etc/libvirt/guest1.xml": guest1 } = DOMAINS;
    const message = await refusal(
      crm({ domains: { "/etc/libvirt/guest1.xml": guest1 }, unreadable }),
      "INPUT",
    );
    assert.match(
      message,
      /^seed\.crm:7:1: error: guest2: cannot read \/etc\/libvirt\/guest2\.xml: .*no such file$/m,
    );
  });

  test("an existing VM name is a conflict naming it; nothing is created", async () => {
    await crm({ crm: SEED.split("\n").slice(0, 6).join("\n") }); // guest1 only
    const before = await keys();
    const message = await refusal(crm(), "CONFLICT");
    assert.match(message, /VM guest1 already exists; nothing was imported/);
    assert.deepEqual(await keys(), before);
    assert.equal(await store.getSpec("guest2"), undefined);
  });

  test("an image that is already another VM's disk is refused (one writer per disk)", async () => {
    await crm({ crm: SEED.split("\n").slice(0, 6).join("\n") }); // guest1 on guest1-disk
    const message = await refusal(
      imports.importLibvirt(
        importLibvirtRequest.parse({
          name: "copy",
          xml: domain("copy", "rbd/guest1-disk"),
          file: "copy.xml",
        }),
      ),
      "INPUT",
    );
    assert.match(message, /copy\.xml:1:1: error: copy: disk guest1-disk is already a disk of VM guest1/);
  });

  test("a failure midway rolls back what was written", async () => {
    const createSpec = store.createSpec.bind(store);
    let calls = 0;
    store.createSpec = async (spec) => {
      if (++calls === 2) throw new Error("etcd went away");
      return createSpec(spec);
    };
    await assert.rejects(crm(), /etcd went away/);
    assert.deepEqual(await keys(), []);
  });

  test("vm create --from-libvirt: one domain with Haven's defaults, dry run or for real", async () => {
    const request = (extra: Record<string, unknown>) =>
      importLibvirtRequest.parse({
        name: "web",
        xml: domain("guest1", "rbd/guest1-disk"),
        file: "g.xml",
        ...extra,
      });
    const dry: ImportResult = await imports.importLibvirt(request({ dryRun: true }));
    assert.equal(dry.vms[0]?.spec.state, "stopped");
    assert.deepEqual(await keys(), []);
    assert.ok(dry.report.some((line) => line.file === "g.xml" && /named "guest1"/.test(line.message)));
    await imports.importLibvirt(request({ start: true }));
    const spec = (await store.getSpec("web"))!.value;
    assert.deepEqual(
      [spec.state, spec.allowMigrate, spec.restartLimit, spec.failureTimeoutSeconds, spec.stopGraceSeconds],
      ["started", true, 3, 600, 30],
    );
    assert.equal(spec.stickiness, 0, "Haven's default, as Pacemaker's");
    assert.deepEqual(spec.disks, [{ image: "guest1-disk" }]);
  });

  test("a cluster whose storage is not RBD refuses RBD disks", async () => {
    const onDir = new ImportService(store, storage, importOptions(null));
    const message = await refusal(
      onDir.importLibvirt(
        importLibvirtRequest.parse({ name: "web", xml: domain("web", "rbd/guest1-disk"), file: "g.xml" }),
      ),
      "INPUT",
    );
    assert.match(message, /this cluster's storage is dir; import needs a cluster on Ceph RBD/);
  });

  describe("guests that boot from their disk, with cards, CPU and machine", () => {
    const pools = new Map<string, FakeStorage>();
    const withPools = (extra: Partial<ImportOptions> = {}) =>
      new ImportService(
        store,
        storage,
        importOptions("rbd", {
          storageForPool: (pool) => {
            const backend = pools.get(pool);
            return backend
              ? Promise.resolve(backend)
              : Promise.reject(notFound(`pool ${pool} does not exist`));
          },
          ...extra,
        }),
      );
    const libvirt = (xml: string, service = withPools(), name = "web") =>
      service.importLibvirt(importLibvirtRequest.parse({ name, xml, file: "web.xml", start: true }));
    const devices = (inner: string, os = "<os><type machine='q35'>hvm</type><boot dev='hd'/></os>") =>
      `<domain type='kvm'><name>web</name><memory unit='MiB'>512</memory><vcpu>1</vcpu>${os}<devices>${inner}</devices></domain>`;
    const rbd = (name: string, bus = "virtio", device = "disk") =>
      `<disk type='network' device='${device}'><source protocol='rbd' name='${name}'/><target dev='x' bus='${bus}'/></disk>`;
    const card = (inner = "<mac address='52:54:00:00:00:42'/><model type='virtio'/>") =>
      `<interface type='bridge'><source bridge='br0'/>${inner}</interface>`;

    beforeEach(async () => {
      pools.clear();
      const data = new FakeStorage();
      await data.create("web-data", 8 * MB);
      pools.set("data", data);
      const isos = new FakeStorage();
      await isos.create("installer", 8 * MB);
      pools.set("isos", isos);
      await store.putNode(nodeInfo("n1", { bridges: ["br0"] }), await etcd.grantLease(60));
    });

    test("the guide's guest1: SeaBIOS from its RBD disk, its bridged card and MAC, q35; host-passthrough under TCG is Haven's default CPU", async () => {
      await storage.create("guest1-disk0", 8 * MB);
      const result = await libvirt(fixture("guest1.xml"), withPools(), "guest1");
      const spec = (await store.getSpec("guest1"))!.value;
      assert.deepEqual(
        [spec.kernel, spec.firmware, spec.machine, spec.cpu],
        [undefined, "bios", "pc-q35-7.2", "Westmere-v1"],
      );
      assert.deepEqual(spec.disks, [{ image: "guest1-disk0" }]);
      assert.deepEqual(spec.nics, [{ bridge: "br0", mac: "52:54:00:3b:7e:21", model: "virtio" }]);
      assert.ok(result.report.every((line) => line.severity === "warning"));
      assert.match(
        result.report.map((line) => line.message).join("\n"),
        /guest1: CPU model host needs KVM, and every node runs guests under TCG; the VM gets Westmere-v1/,
      );
    });

    test("several disks in several pools, virtio-scsi, an RBD CD-ROM and two cards, one with a MAC Haven chooses", async () => {
      await storage.create("web-root", 8 * MB);
      const xml = devices(
        [
          rbd("rbd/web-root"),
          rbd("data/web-data", "scsi"),
          rbd("isos/installer", "sata", "cdrom"),
          card(),
          card("<model type='e1000'/><vlan><tag id='7'/></vlan>"),
        ].join(""),
      );
      await libvirt(xml);
      const spec = (await store.getSpec("web"))!.value;
      assert.deepEqual(spec.disks, [
        { image: "web-root" },
        { image: "web-data", pool: "data", bus: "virtio-scsi" },
      ]);
      assert.deepEqual(spec.cdrom, { image: "installer", pool: "isos" });
      assert.equal(spec.nics?.length, 2);
      assert.deepEqual(spec.nics?.[0], { bridge: "br0", mac: "52:54:00:00:00:42", model: "virtio" });
      assert.match(spec.nics[1]!.mac, /^52:54:00:/);
      assert.deepEqual([spec.nics[1]!.model, spec.nics[1]!.vlan], ["e1000", 7]);
    });

    test("a named CPU model and a machine type this QEMU has are kept; others get Haven's with a warning", async () => {
      await storage.create("web-root", 8 * MB);
      const os =
        "<os><type machine='pc-i440fx-7.2'>hvm</type></os><cpu mode='custom'><model>qemu64</model></cpu>";
      await libvirt(devices(rbd("rbd/web-root"), os));
      const kept = (await store.getSpec("web"))!.value;
      assert.deepEqual([kept.cpu, kept.machine], ["qemu64", "pc-i440fx-7.2"]);
      await storage.create("web2-root", 8 * MB);
      const other = "<os><type machine='pc-q35-2.4'>hvm</type></os><cpu><model>EPYC-Milan</model></cpu>";
      const result = await libvirt(devices(rbd("rbd/web2-root"), other), withPools(), "web2").catch(
        (err: unknown) => err,
      );
      assert.ok(!(result instanceof Error), String(result));
      const spec = (await store.getSpec("web2"))!.value;
      assert.deepEqual([spec.cpu, spec.machine], ["Westmere-v1", "pc-q35-7.2"]);
      const messages = (result as ImportResult).report.map((line) => line.message);
      assert.ok(
        messages.includes(
          "web2: QEMU has no CPU model EPYC-Milan ('qemu-system-x86_64 -cpu help'); the VM gets Westmere-v1",
        ),
        messages.join("\n"),
      );
      assert.ok(
        messages.includes(
          "web2: QEMU has no machine type pc-q35-2.4 ('qemu-system-x86_64 -machine help'); the VM gets pc-q35-7.2",
        ),
        messages.join("\n"),
      );
    });

    test("UEFI: refused without OVMF; with it, the VM gets its own variable store", async () => {
      await storage.create("web-root", 8 * MB);
      const xml = devices(rbd("rbd/web-root"), "<os firmware='efi'><type>hvm</type></os>");
      const message = await refusal(libvirt(xml), "INPUT");
      assert.match(
        message,
        /^web\.xml:1:1: error: web: UEFI boot needs UEFI firmware, which is not installed .*apt install ovmf\)$/m,
      );
      const imported: string[] = [];
      storage.importFile = (_path: string, image: string) => {
        imported.push(image);
        return storage.create(image, MB);
      };
      await libvirt(xml, withPools({ capabilities: fakeCapabilities({ uefi: true }) }));
      assert.equal((await store.getSpec("web"))!.value.firmware, "uefi");
      assert.deepEqual(imported, ["web-efivars"]);
    });

    const refusals: Array<[string, () => Promise<void>, string, RegExp]> = [
      [
        "a bridge no node has",
        () => Promise.resolve(),
        card().replace("br0", "br9"),
        /^web\.xml:1:1: error: web: no online node has bridge br9 \('haven network list' shows the bridges\)$/m,
      ],
      [
        "a MAC another VM's card has",
        async () => {
          await storage.create("other-root", 8 * MB);
          await libvirt(devices(rbd("rbd/other-root") + card()), withPools(), "other");
        },
        card(),
        /^web\.xml:1:1: error: web: MAC 52:54:00:00:00:42 is taken by VM other$/m,
      ],
      [
        "the same MAC twice",
        () => Promise.resolve(),
        card() + card(),
        /error: web: MAC 52:54:00:00:00:42 is taken by another card of this VM$/m,
      ],
      [
        "a missing CD-ROM image",
        () => Promise.resolve(),
        rbd("isos/nothing", "sata", "cdrom"),
        /^web\.xml:1:1: error: web: CD-ROM RBD image isos\/nothing does not exist$/m,
      ],
      [
        "a pool that does not exist",
        () => Promise.resolve(),
        rbd("nopool/web-x"),
        /^web\.xml:1:1: error: web: RBD image nopool\/web-x does not exist$/m,
      ],
    ];
    for (const [name, before, inner, message] of refusals) {
      test(`refuses ${name} with one line and creates nothing`, async () => {
        await storage.create("web-root", 8 * MB);
        await before();
        const keysBefore = await keys();
        const refused = await refusal(libvirt(devices(rbd("rbd/web-root") + inner)), "INPUT");
        assert.match(refused, message);
        assert.equal(refused.split("\n").filter((line) => / error: /.test(line)).length, 1, refused);
        assert.deepEqual(await keys(), keysBefore);
      });
    }

    test("import crm: an IPaddr2 primitive refuses the import on its line; --skip-unsupported imports the rest and lists it", async () => {
      const withIp = `${SEED}primitive vip ocf:heartbeat:IPaddr2 params ip=192.0.2.10\ncolocation vip-with-guest1 inf: vip guest1\n`;
      const keysBefore = await keys();
      const message = await refusal(crm({ crm: withIp }), "INPUT");
      assert.match(
        message,
        /^seed\.crm:13:1: error: vip: agent ocf:heartbeat:IPaddr2 is not supported: Haven imports ocf:heartbeat:VirtualDomain guests only \(--skip-unsupported imports the rest\)$/m,
      );
      assert.deepEqual(await keys(), keysBefore);
      const result = await crm({ crm: withIp, skipUnsupported: true });
      assert.deepEqual(
        result.vms.map((vm) => vm.name),
        ["guest1", "guest2"],
      );
      assert.deepEqual(result.skipped, [
        { id: "vip", file: "seed.crm", line: 13, reason: "agent ocf:heartbeat:IPaddr2" },
      ]);
      assert.ok(
        result.report.some(
          (line) => line.line === 14 && /vip-with-guest1: it refers to vip/.test(line.message),
        ),
      );
    });
  });
});
