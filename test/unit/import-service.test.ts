// The import service on fakes (etcd, storage): a crm configuration and its libvirt domains become VMs on
// existing RBD images, all or nothing; every finding carries file:line:column.
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, test } from "node:test";
import { ClusterStore } from "../../src/adapters/etcd/cluster-store.js";
import { ConstraintStore } from "../../src/adapters/etcd/constraint-store.js";
import { FakeEtcd } from "../../src/adapters/etcd/fake.js";
import { FakeStorage } from "../../src/adapters/storage/fake.js";
import { ImportService, type ImportResult } from "../../src/api/import-service.js";
import { importCibRequest, importCrmRequest, importLibvirtRequest } from "../../src/api/requests.js";
import { HavenError } from "../../src/core/errors.js";

const KERNEL = process.execPath; // any readable file will do as a kernel for fakes
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
    imports = new ImportService(store, storage, { pool: "rbd" });
    await storage.create("guest1-disk", 8 * MB);
    await storage.create("guest2-disk", 8 * MB);
  });
  afterEach(() => etcd.close());

  const crm = (overrides: Record<string, unknown> = {}) =>
    imports.importCrm(
      importCrmRequest.parse({ crm: SEED, file: "seed.crm", domains: DOMAINS, dryRun: false, ...overrides }),
    );
  const keys = async () => (await etcd.list("/test/")).kvs.map((kv) => kv.key);
  const refusal = async (promise: Promise<unknown>, code: string): Promise<string> => {
    const err = await promise.then(
      () => assert.fail("expected the import to be refused"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof HavenError, String(err));
    assert.equal(err.code, code, err.message);
    return err.message;
  };

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

  test("a disk in another pool, a missing kernel file and a disk-booting domain are errors", async () => {
    const domains = {
      "/etc/libvirt/guest1.xml": domain("guest1", "vms/guest1-disk"),
      "/etc/libvirt/guest2.xml": domain("guest2", "rbd/guest2-disk").replace(
        /<kernel>.*<\/kernel>/,
        "<kernel>/nonexistent/vmlinuz</kernel>",
      ),
    };
    const message = await refusal(crm({ domains }), "INPUT");
    assert.match(message, /guest1: disk vms\/guest1-disk is in pool vms; .*pool rbd only/);
    assert.match(message, /guest2: kernel file \/nonexistent\/vmlinuz does not exist/);
    const noKernel = {
      ...DOMAINS,
      "/etc/libvirt/guest2.xml": domain("guest2", "rbd/guest2-disk").replace(/<kernel>.*<\/kernel>/, ""),
    };
    const second = await refusal(crm({ domains: noKernel }), "INPUT");
    assert.match(second, /seed\.crm:7:1: error: guest2: the domain has no <os><kernel>/);
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
    const onDir = new ImportService(store, storage, { pool: null });
    const message = await refusal(
      onDir.importLibvirt(
        importLibvirtRequest.parse({ name: "web", xml: domain("web", "rbd/guest1-disk"), file: "g.xml" }),
      ),
      "INPUT",
    );
    assert.match(message, /this cluster's storage is dir; import needs a cluster on Ceph RBD/);
  });
});
