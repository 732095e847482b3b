// The seed's Pacemaker snippet and its libvirt domain imported into a 1-node local cluster on Ceph: a dry
// run creates nothing, the import creates a VM on the existing RBD image, and the VM starts on it. Bad input
// is reported as FILE:LINE:COL with exit code 2.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, test } from "node:test";
import type { VmSpec, VmView } from "../../src/core/model.js";
import { eventually, REPO_ROOT, TestCluster } from "./harness.js";

const GUEST = join(REPO_ROOT, "guest", "build");

/** The seed's guest1 domain, trimmed: direct kernel boot of the canary guest, one disk on RBD. */
const domainXml = (image: string) => `<?xml version="1.0" encoding="UTF-8"?>
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
      <source bridge='br0'/>
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

describe("import of the seed's crm and libvirt configuration", { timeout: 300_000 }, () => {
  let cluster: TestCluster;
  let dir: string;
  const show = (vm: string) => cluster.json<VmView & { spec: VmSpec }>(["vm", "show", vm]);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "haven-import-"));
    cluster = await TestCluster.start({ nodes: 1, storage: "rbd" });
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
    await writeFile(join(dir, "guest1.xml"), domainXml("guest1-disk"));
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
    assert.match(
      dry.stdout,
      new RegExp(`^guest1\\.xml:\\d+:\\d+: warning: <interface type='bridge'> is not imported`, "m"),
    );
    assert.match(dry.stderr, /placement applies location rules/);
    assert.deepEqual(await cluster.json<VmView[]>(["vm", "list"]), []);

    const real = await cluster.haven(["import", "crm", crm]);
    assert.equal(real.code, 0, real.stderr);
    assert.match(real.stdout, /created 1 VM:/);
    assert.match(real.stdout, new RegExp(`^${crm}:2:1: warning: `, "m"));
    const imported = await show("guest1");
    assert.equal(imported.state, "stopped");
    assert.deepEqual(imported.spec.disks, [{ image: "guest1-disk" }]);
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

    const noFile = await cluster.haven(["import", "crm", join(dir, "absent.crm")]);
    assert.equal(noFile.code, 2);
    assert.match(noFile.stderr, /cannot read .*absent\.crm: no such file/);
    assert.deepEqual(await cluster.json<VmView[]>(["vm", "list"]), [], "nothing was created");
  });
});
