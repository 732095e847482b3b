// The seed's Pacemaker snippet and its libvirt domain imported into a 1-node local cluster on Ceph: a dry
// run creates nothing, the import creates a VM on the existing RBD image, and the VM starts on it. Bad input
// is reported as FILE:LINE:COL with exit code 2.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, test } from "node:test";
import type { VmSpec, VmView } from "../../src/core/model.js";
import { eventually, REPO_ROOT, SUITE_TIMEOUT, TestCluster } from "./harness.js";

const GUEST = join(REPO_ROOT, "guest", "build");

/**
 * The seed's guest1 domain, trimmed: direct kernel boot of the canary guest, one disk on RBD, a card on the
 * local cluster's guest bridge.
 */
const domainXml = (image: string, bridge: string) => `<?xml version="1.0" encoding="UTF-8"?>
<domain type='kvm'>
  <name>guest1</name>
  <memory unit='MiB'>128</memory>
  <vcpu placement='static'>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <kernel>${join(GUEST, "vmlinuz")}</kernel>
    <initrd>${join(GUEST, "initramfs.img")}</initrd>
    <cmdline>console=ttyS0 quiet cryptomgr.notests</cmdline>
  </os>
  <devices>
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw' cache='none'/>
      <source protocol='rbd' name='rbd/${image}'>
        <host name='192.168.122.11' port='6789'/>
      </source>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='bridge'>
      <mac address='52:54:00:3b:7e:21'/>
      <source bridge='${bridge}'/>
      <model type='virtio'/>
    </interface>
  </devices>
</domain>
`;

const SEED = `node node1 attributes hw=vm
primitive guest1 ocf:heartbeat:VirtualDomain \\
  params config=guest1.xml \\
  hypervisor="qemu:///system" migration_transport="tls" meta allow-migrate="true" target-role=Stopped \\
  op start timeout="300" op stop timeout="300" \\
  op monitor depth="0" timeout="30" interval="10"
location l-guest1-prefer guest1 100: node1
property stonith-enabled=true no-quorum-policy=stop
rsc_defaults resource-stickiness=100 migration-threshold=3
`;

describe("import of the seed's crm and libvirt configuration", SUITE_TIMEOUT, () => {
  let cluster: TestCluster;
  let dir: string;
  let bridge: string;
  const show = (vm: string) => cluster.json<VmView & { spec: VmSpec }>(["vm", "show", vm]);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "haven-import-"));
    cluster = await TestCluster.start({ nodes: 1, storage: "rbd" });
    const network = await cluster.json<{ nodes: Array<{ bridges: string[] }> }>(["network", "list"]);
    bridge = network.nodes[0]!.bridges[0]!;
  });
  afterEach(async () => {
    await cluster.reset();
  });
  after(async () => {
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("dry run, import, start: the VM runs on its existing RBD image", async () => {
    const disk = await cluster.haven(["disk", "create", "guest1-disk", "--size", "64"]);
    assert.equal(disk.code, 0, disk.stderr);
    await writeFile(join(dir, "guest1.xml"), domainXml("guest1-disk", bridge));
    const crm = join(dir, "seed.crm");
    await writeFile(crm, SEED);

    const dry = await cluster.haven(["import", "crm", crm, "--dry-run"]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /would create 1 VM \(dry run\)/);
    assert.match(dry.stdout, /^guest1\s+stopped\s+128 MB\s+1\s+rbd\/guest1-disk\s/m);
    assert.match(dry.stdout, /^l-guest1-prefer\s+location\s+guest1 on node1: 100/m);
    assert.match(
      dry.stdout,
      new RegExp(`^${crm}:2:1: warning: guest1: op start timeout=300s is not honoured`, "m"),
    );
    assert.doesNotMatch(dry.stdout, /interface/, "the bridged card is imported without a word");
    assert.match(dry.stderr, /placement applies location rules/);
    assert.deepEqual(await cluster.json<VmView[]>(["vm", "list"]), []);

    const real = await cluster.haven(["import", "crm", crm]);
    assert.equal(real.code, 0, real.stderr);
    assert.match(real.stdout, /created 1 VM:/);
    assert.match(real.stdout, new RegExp(`^${crm}:2:1: warning: `, "m"));
    const imported = await show("guest1");
    assert.equal(imported.state, "stopped");
    assert.deepEqual(imported.spec.disks, [{ image: "guest1-disk" }]);
    assert.deepEqual(imported.spec.nics, [{ bridge, mac: "52:54:00:3b:7e:21", model: "virtio" }]);
    assert.equal(imported.spec.machine, "pc-q35-7.2");
    assert.equal(imported.spec.allowMigrate, true);
    assert.equal(imported.spec.restartLimit, 2);
    assert.equal(imported.spec.stickiness, 100, "rsc_defaults resource-stickiness");
    assert.equal(imported.spec.stopGraceSeconds, 300);

    const again = await cluster.haven(["import", "crm", crm]);
    assert.equal(again.code, 4, again.stderr);
    assert.match(again.stderr, /VM guest1 already exists; nothing was imported/);

    // The imported location constraint takes part in placement: vm explain shows its score.
    const explained = await cluster.json<{
      constrained: boolean;
      chosen: string;
      nodes: Array<{ node: string; score: number }>;
    }>(["vm", "explain", "guest1"]);
    assert.equal(explained.constrained, true);
    assert.deepEqual(
      explained.nodes.map((n) => [n.node, n.score]),
      [["node1", 100]],
    );
    assert.equal(explained.chosen, "node1");

    const start = await cluster.haven(["vm", "start", "guest1"]);
    assert.equal(start.code, 0, start.stderr);
    const running = await eventually(
      "guest1 runs with an RBD client",
      async () => {
        const view = await show("guest1");
        return view.state === "running" && view.rbdClients.length > 0 ? view : undefined;
      },
      60_000,
    );
    assert.deepEqual(running.disks, ["guest1-disk"]);
    assert.ok(["node1", "node2"].includes(running.node ?? ""), `runs on ${running.node}`);
  });

  test("import cib: Pacemaker's CIB XML, with config= files relative to it and FILE:LINE:COL findings", async () => {
    const disk = await cluster.haven(["disk", "create", "guest3-disk", "--size", "64"]);
    assert.equal(disk.code, 0, disk.stderr);
    await writeFile(
      join(dir, "guest3.xml"),
      domainXml("guest3-disk", bridge)
        .replace("guest1", "guest3")
        .replace(/<mac [^>]*>/, ""),
    );
    const cib = join(dir, "seed.xml");
    await writeFile(
      cib,
      [
        "<cib><configuration><crm_config>",
        '<cluster_property_set id="o"><nvpair id="o1" name="placement-strategy" value="utilization"/></cluster_property_set>',
        "</crm_config><nodes/><resources>",
        '<primitive id="guest3" class="ocf" provider="heartbeat" type="VirtualDomain">',
        '<instance_attributes id="ia"><nvpair id="c" name="config" value="guest3.xml"/></instance_attributes>',
        '<operations><op id="o-start" name="start" timeout="300" interval="0"/></operations>',
        "</primitive></resources><constraints>",
        '<rsc_location id="l-guest3" rsc="guest3" node="node1" score="50"/>',
        "</constraints></configuration><status/></cib>",
      ].join("\n"),
    );
    const dry = await cluster.haven(["import", "cib", cib, "--dry-run"]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /would create 1 VM \(dry run\)/);
    assert.match(dry.stdout, /^l-guest3\s+location\s+guest3 on node1: 50/m);
    assert.match(dry.stdout, /placement-strategy utilization would be set for the cluster/);
    assert.match(
      dry.stdout,
      new RegExp(`^${cib}:4:1: warning: guest3: op start timeout=300s is not honoured`, "m"),
    );
  });

  test("bad input: a syntax error is FILE:LINE:COL with exit 2; a missing config= file names its crm line", async () => {
    const broken = join(dir, "broken.crm");
    await writeFile(broken, 'primitive g2 ocf:heartbeat:VirtualDomain \\\n  params config="g2.xml\n');
    const syntax = await cluster.haven(["import", "crm", broken, "--dry-run"]);
    assert.equal(syntax.code, 2, syntax.stderr);
    assert.match(syntax.stderr, new RegExp(`^${broken}:2:\\d+: error: `, "m"));

    const missing = join(dir, "missing.crm");
    await writeFile(missing, "primitive g3 ocf:heartbeat:VirtualDomain params config=nowhere/g3.xml\n");
    const result = await cluster.haven(["import", "crm", missing]);
    assert.equal(result.code, 2, result.stderr);
    assert.match(
      result.stderr,
      new RegExp(`^${missing}:1:1: error: g3: cannot read nowhere/g3\\.xml: .*no such file$`, "m"),
    );

    const brokenCib = join(dir, "broken.xml");
    await writeFile(brokenCib, "<cib>\n  <configuration>\n    <nodes>\n</cib>\n");
    const xml = await cluster.haven(["import", "cib", brokenCib, "--dry-run"]);
    assert.equal(xml.code, 2, xml.stderr);
    assert.match(xml.stderr, new RegExp(`^${brokenCib}:4:\\d+: error: `, "m"));

    const unsupported = join(dir, "vip.crm");
    await writeFile(unsupported, "primitive vip ocf:heartbeat:IPaddr2 params ip=192.0.2.10\n");
    const vip = await cluster.haven(["import", "crm", unsupported, "--dry-run"]);
    assert.equal(vip.code, 2, vip.stderr);
    assert.match(
      vip.stderr,
      new RegExp(`^${unsupported}:1:1: error: vip: agent ocf:heartbeat:IPaddr2 is not supported`, "m"),
    );
    const skipping = await cluster.haven(["import", "crm", unsupported, "--skip-unsupported"]);
    assert.equal(skipping.code, 0, skipping.stderr);
    assert.match(skipping.stdout, /^skipped \(not imported\):$/m);
    assert.match(skipping.stdout, /^vip\s+agent ocf:heartbeat:IPaddr2\s/m);

    const noFile = await cluster.haven(["import", "crm", join(dir, "absent.crm")]);
    assert.equal(noFile.code, 2);
    assert.match(noFile.stderr, /cannot read .*absent\.crm: no such file/);
    assert.deepEqual(await cluster.json<VmView[]>(["vm", "list"]), [], "nothing was created");
  });
});
