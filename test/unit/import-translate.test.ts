// From crm configuration and libvirt domains to an import plan: the seed end to end, every mapping (params,
// meta, defaults, op timeouts), every reported class (unknown agents and parameters, unknown nodes and
// resources, what Haven does not honour), and contradictions reported once, without looping.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { describe, it } from "node:test";
import { parseCrm, type Diagnostic } from "../../src/core/import/crm.js";
import { parseLibvirtDomain } from "../../src/core/import/libvirt.js";
import {
  translateCrm,
  translateDomain,
  type DomainLoader,
  type ImportPlan,
  type TranslateOptions,
} from "../../src/core/import/translate.js";

// The test runner starts in the repository root; dist/ and other output directories do not hold fixtures.
const fixture = (name: string) => readFileSync(join(process.cwd(), "test/fixtures/import", name), "utf8");

/** Serves the fixture with the config file's base name, as the CLI would serve the real path. */
const fixtureDomains: DomainLoader = (path) => {
  try {
    return parseLibvirtDomain(fixture(basename(path)));
  } catch {
    return { error: "no such file" };
  }
};

/** A domain Haven imports without a word: direct kernel boot, one virtio rbd disk, no devices besides. */
const cleanDomain = (name: string, image = `${name}-disk`, memory = "<memory unit='MiB'>512</memory>") =>
  `<domain type='kvm'><name>${name}</name>${memory}<vcpu>1</vcpu>` +
  `<os><type>hvm</type><kernel>/boot/vmlinuz</kernel></os><devices><disk type='network' device='disk'>` +
  `<source protocol='rbd' name='rbd/${image}'/><target dev='vda' bus='virtio'/></disk></devices></domain>`;

/** Every config=/x/NAME.xml is a clean domain named NAME, unless `files` has that path. */
const cleanDomains =
  (files: Record<string, string> = {}): DomainLoader =>
  (path) =>
    parseLibvirtDomain(files[path] ?? cleanDomain(basename(path, ".xml")));

const vmLine = (name: string, extra = "") =>
  `primitive ${name} ocf:heartbeat:VirtualDomain params config=/etc/libvirtcfg/${name}.xml ${extra}`;

function plan(text: string, loader: DomainLoader = cleanDomains(), options?: TranslateOptions): ImportPlan {
  return translateCrm(parseCrm(text), loader, options);
}

const errors = (report: Diagnostic[]) => report.filter((diagnostic) => diagnostic.severity === "error");
const warnings = (report: Diagnostic[]) => report.filter((diagnostic) => diagnostic.severity === "warning");
const messages = (report: Diagnostic[]) => report.map((diagnostic) => diagnostic.message);

/** Asserts exactly one finding of `severity` matching `pattern`, and returns it. */
function one(report: Diagnostic[], severity: "error" | "warning", pattern: RegExp): Diagnostic {
  const found = report.filter(
    (diagnostic) => diagnostic.severity === severity && pattern.test(diagnostic.message),
  );
  assert.equal(
    found.length,
    1,
    `one ${severity} matching ${String(pattern)} in ${JSON.stringify(messages(report))}`,
  );
  return found[0]!;
}

describe("translate: the seed", () => {
  const seed = plan(fixture("seed.crm"), fixtureDomains);

  it("imports both guests with their resources, policies and timeouts", () => {
    assert.deepEqual(seed.vms, [
      {
        name: "guest1",
        config: "/etc/libvirtcfg/guest1.xml",
        memoryMb: 2048,
        vcpus: 2,
        disks: [{ pool: "rbd", image: "guest1-disk0", bus: "virtio-blk" }],
        nics: [{ bridge: "br0", mac: "52:54:00:3b:7e:21", model: "virtio" }],
        machine: "pc-q35-7.2",
        cpu: "host",
        allowMigrate: true,
        targetRole: "started",
        stickiness: 100,
        migrationThreshold: 3,
        migrationTransport: "tls",
        forceStop: false,
        timeouts: {
          startSeconds: 300,
          stopSeconds: 300,
          monitorTimeoutSeconds: 30,
          monitorIntervalSeconds: 10,
          migrateSeconds: 300,
        },
        line: 7,
      },
      {
        name: "guest2",
        config: "/etc/libvirtcfg/guest2.xml",
        memoryMb: 4096,
        vcpus: 4,
        disks: [
          { pool: "vms", image: "guest2-root", bus: "virtio-blk" },
          { pool: "vms", image: "guest2-data", bus: "virtio-scsi" },
        ],
        nics: [],
        kernel: "/var/lib/haven/kernels/vmlinuz",
        initrd: "/var/lib/haven/kernels/initrd.img",
        cmdline: "console=ttyS0 root=/dev/vda1",
        machine: "pc-i440fx-7.2",
        allowMigrate: false,
        targetRole: "stopped",
        stickiness: 200,
        migrationThreshold: 3,
        priority: 10,
        failureTimeoutSeconds: 300,
        migrationTransport: "tcp",
        forceStop: false,
        timeouts: {
          startSeconds: 120,
          stopSeconds: 120,
          monitorIntervalSeconds: 10,
          monitorTimeoutSeconds: 30,
        },
        line: 14,
      },
    ]);
  });

  it("imports nodes, constraints in the scheduler's shapes, and properties", () => {
    assert.deepEqual(seed.nodes, [
      { name: "vmhost1", attributes: { hw: "vm" } },
      { name: "vmhost2", attributes: { hw: "vm" } },
      { name: "diskhost1", attributes: { hw: "disk" } },
    ]);
    assert.deepEqual(seed.constraints, [
      { type: "location-rule", id: "guest1-on-vm-hw", vm: "guest1", rule: "hw ne vm", score: -1e6, line: 28 },
      { type: "location-rule", id: "guest2-on-vm-hw", vm: "guest2", rule: "hw ne vm", score: -1e6, line: 30 },
      { type: "location", id: "l-guest1-prefer", vm: "guest1", node: "vmhost1", score: 100, line: 31 },
      { type: "colocation", id: "c-apart", vm: "guest1", withVm: "guest2", score: -1e6, line: 32 },
      { type: "order", id: "o-first", first: "guest1", then: "guest2", kind: "optional", line: 33 },
    ]);
    assert.deepEqual(seed.properties, {
      "stonith-enabled": "true",
      "no-quorum-policy": "stop",
      "cluster-name": "seed",
    });
  });

  it("has no error, and reports the crm file's findings first, then each libvirt file's", () => {
    assert.deepEqual(errors(seed.report), []);
    const sources = [...new Set(seed.report.map((diagnostic) => diagnostic.source))];
    assert.deepEqual(sources, [undefined, "/etc/libvirtcfg/guest1.xml", "/etc/libvirtcfg/guest2.xml"]);
    const crmFindings = seed.report.filter((diagnostic) => diagnostic.source === undefined);
    assert.deepEqual(
      crmFindings.map((diagnostic) => diagnostic.line),
      [7, 14, 14, 14, 22],
    );
    assert.match(crmFindings[0]!.message, /guest1: Ceph monitors 192.168.122.11:6789, .* are not used/);
    assert.match(crmFindings[1]!.message, /the domain in \/etc\/libvirtcfg\/guest2.xml is named "guest2-vm"/);
    assert.match(crmFindings[2]!.message, /disk sdb is read-only/);
    assert.match(
      crmFindings[4]!.message,
      /p-stonith \(stonith:fence_ipmilan\) is not imported: Haven fences .* blocklisting/,
    );
    // guest1 boots from its disk and has a bridged card: neither is a finding any more.
    assert.ok(!seed.report.some((diagnostic) => /<interface|boots from its disk/.test(diagnostic.message)));
  });
});

describe("translate: VirtualDomain parameters", () => {
  it("names unknown parameters as errors and leaves the VM out", () => {
    const result = plan(vmLine("vm1", "confg=/x.xml"));
    assert.equal(one(result.report, "error", /vm1: unknown VirtualDomain parameter "confg"/).line, 1);
    assert.deepEqual(result.vms, []);
  });

  it("reports known parameters Haven does not honour, one line each", () => {
    const result = plan(
      vmLine("vm1", "migration_network_suffix=-mig migration_speed=100 snapshot=/s save_config_on_stop=true"),
    );
    assert.deepEqual(errors(result.report), []);
    assert.deepEqual(messages(warnings(result.report)), [
      "vm1: migration_network_suffix=-mig is not honoured: Haven chooses the migration address itself",
      "vm1: migration_speed=100 is not honoured: Haven does not limit migration bandwidth",
      "vm1: snapshot=/s is not honoured: Haven does not save guest memory on stop",
      "vm1: save_config_on_stop=true is not honoured: Haven keeps the VM's configuration in etcd",
    ]);
    assert.equal(result.vms.length, 1);
  });

  it("honours autoset_utilization, force_stop and the transports", () => {
    const result = plan(
      [
        vmLine("vm1", "autoset_utilization_cpu=true autoset_utilization_hv_memory=true force_stop=1"),
        vmLine("vm2", "migration_transport=tcp"),
        vmLine("vm3", "migration_transport=ssh autoset_utilization_cpu=false"),
      ].join("\n"),
    );
    assert.deepEqual(errors(result.report), []);
    assert.deepEqual(
      result.vms.map((vm) => [vm.name, vm.forceStop, vm.migrationTransport]),
      [
        ["vm1", true, "tls"],
        ["vm2", false, "tcp"],
        ["vm3", false, "tls"],
      ],
    );
    one(result.report, "warning", /vm3: migration over ssh is not supported; Haven migrates over TLS/);
    one(result.report, "warning", /vm3: autoset_utilization_cpu=false is not honoured/);
  });

  it("reports another hypervisor, a bad transport, a bad force_stop and a missing config", () => {
    const result = plan(
      [
        vmLine("vm1", "hypervisor=qemu:///session"),
        vmLine("vm2", "migration_transport=udp"),
        vmLine("vm3", "force_stop=maybe"),
        "primitive vm4 ocf:heartbeat:VirtualDomain params hypervisor=qemu:///system",
      ].join("\n"),
    );
    assert.equal(one(result.report, "warning", /vm1: hypervisor qemu:\/\/\/session is not honoured/).line, 1);
    assert.equal(one(result.report, "error", /vm2: unknown migration_transport "udp"/).line, 2);
    assert.equal(one(result.report, "error", /vm3: force_stop "maybe" is not a boolean/).line, 3);
    assert.equal(one(result.report, "error", /vm4: has no config=/).line, 4);
    assert.deepEqual(
      result.vms.map((vm) => vm.name),
      ["vm1"],
    );
  });

  it("does not mistake Object.prototype's names for known parameters, meta attributes or properties", () => {
    const result = plan(
      [vmLine("vm1", "constructor=1 meta toString=2 hasOwnProperty=3"), "property __defineGetter__=x"].join(
        "\n",
      ),
    );
    one(result.report, "error", /vm1: unknown VirtualDomain parameter "constructor"/);
    one(result.report, "warning", /toString=2 is not honoured: unknown meta attribute/);
    one(result.report, "warning", /hasOwnProperty=3 is not honoured: unknown meta attribute/);
    one(result.report, "warning", /property __defineGetter__=x is not honoured: Haven has no such setting/);
  });

  it("refuses a primitive id that is not a Haven VM name", () => {
    one(plan(vmLine("_vm1")).report, "error", /_vm1: is not a valid Haven VM name/);
  });
});

describe("translate: agents", () => {
  const text = [
    vmLine("vm1"),
    "primitive fence1 stonith:fence_ipmilan params ipaddr=10.0.0.1",
    "primitive ip1 ocf:heartbeat:IPaddr2 params ip=10.0.0.100",
    "primitive typo ocf:heartbeat:VirtualDomian params config=/x.xml",
    "location l-fence fence1 -inf: n1",
    "colocation c-ip inf: ip1 vm1",
    "node n1",
  ].join("\n");
  const result = plan(text);

  it("turns stonith devices into a warning about Haven's fencing", () => {
    assert.equal(
      one(result.report, "warning", /fence1 \(stonith:fence_ipmilan\) is not imported: Haven fences/).line,
      2,
    );
  });

  it("names unsupported agents as errors on their line, pointing at --skip-unsupported", () => {
    assert.equal(
      one(
        result.report,
        "error",
        /^ip1: agent ocf:heartbeat:IPaddr2 is not supported: Haven imports ocf:heartbeat:VirtualDomain guests only \(--skip-unsupported imports the rest\)$/,
      ).line,
      3,
    );
    assert.equal(
      one(result.report, "error", /typo: agent ocf:heartbeat:VirtualDomian is not supported/).line,
      4,
    );
  });

  it("with skipUnsupported, skips them with a warning and lists every resource not imported", () => {
    const skipping = plan(text, cleanDomains(), { skipUnsupported: true });
    assert.deepEqual(errors(skipping.report), []);
    assert.deepEqual(
      skipping.vms.map((vm) => vm.name),
      ["vm1"],
    );
    assert.equal(one(skipping.report, "warning", /^ip1 \(ocf:heartbeat:IPaddr2\) is skipped/).line, 3);
    assert.deepEqual(skipping.skipped, [
      { id: "fence1", line: 2, reason: "a fencing device" },
      { id: "ip1", line: 3, reason: "agent ocf:heartbeat:IPaddr2" },
      { id: "typo", line: 4, reason: "agent ocf:heartbeat:VirtualDomian" },
    ]);
    one(
      skipping.report,
      "warning",
      /c-ip: it refers to ip1, which is not imported \(agent ocf:heartbeat:IPaddr2\)/,
    );
  });

  it("drops constraints on resources that are not imported with a warning, not an unknown-resource error", () => {
    assert.equal(
      one(
        result.report,
        "warning",
        /l-fence: it refers to fence1, which is not imported \(a fencing device\)/,
      ).line,
      5,
    );
    assert.equal(
      one(
        result.report,
        "warning",
        /c-ip: it refers to ip1, which is not imported \(agent ocf:heartbeat:IPaddr2\)/,
      ).line,
      6,
    );
    assert.deepEqual(result.constraints, []);
    assert.deepEqual(
      result.vms.map((vm) => vm.name),
      ["vm1"],
    );
  });

  it("treats unsupported statements' ids as known but not imported", () => {
    const grouped = plan(
      [vmLine("vm1"), vmLine("vm2"), "group g1 vm1 vm2", "colocation c inf: vm1 g1"].join("\n"),
    );
    one(grouped.report, "warning", /group g1: groups are not supported/);
    one(grouped.report, "warning", /c: it refers to g1, which is not imported \(group is not supported\)/);
    assert.deepEqual(errors(grouped.report), []);
  });
});

describe("translate: meta attributes and defaults", () => {
  it("maps every honoured meta attribute", () => {
    const result = plan(
      vmLine(
        "vm1",
        "meta allow-migrate=yes target-role=Stopped resource-stickiness=INFINITY priority=-5 " +
          "migration-threshold=2 failure-timeout=90s",
      ),
    );
    assert.deepEqual(errors(result.report), []);
    const [vm] = result.vms;
    assert.deepEqual(
      [
        vm?.allowMigrate,
        vm?.targetRole,
        vm?.stickiness,
        vm?.priority,
        vm?.migrationThreshold,
        vm?.failureTimeoutSeconds,
      ],
      [true, "stopped", 1e6, -5, 2, 90],
    );
  });

  it("uses Pacemaker's defaults when nothing is said", () => {
    const [vm] = plan(vmLine("vm1")).vms;
    assert.deepEqual(
      [vm?.allowMigrate, vm?.targetRole, vm?.forceStop, vm?.migrationTransport],
      [false, "started", false, "tls"],
    );
    for (const key of ["stickiness", "priority", "migrationThreshold", "failureTimeoutSeconds"]) {
      assert.ok(!(key in vm!), key);
    }
    assert.deepEqual(vm?.timeouts, {});
  });

  it("reads an unlimited migration-threshold (INFINITY or 0) as absent, and failure-timeout=0 as never", () => {
    const result = plan(
      [
        vmLine("vm1", "meta migration-threshold=INFINITY"),
        vmLine("vm2", "meta migration-threshold=0 failure-timeout=0"),
      ].join("\n"),
    );
    assert.ok(!("migrationThreshold" in result.vms[0]!));
    assert.ok(!("migrationThreshold" in result.vms[1]!));
    assert.equal(result.vms[1]?.failureTimeoutSeconds, 0);
  });

  it("applies rsc_defaults, which a resource's own meta overrides", () => {
    const result = plan(
      [
        "rsc_defaults resource-stickiness=100 migration-threshold=3 allow-migrate=true",
        vmLine("vm1"),
        vmLine("vm2", "meta resource-stickiness=0 migration-threshold=INFINITY"),
      ].join("\n"),
    );
    assert.deepEqual(
      result.vms.map((vm) => [vm.name, vm.stickiness, vm.migrationThreshold, vm.allowMigrate]),
      [
        ["vm1", 100, 3, true],
        ["vm2", 0, undefined, true],
      ],
    );
  });

  it("reports bad values as errors and what it does not honour as warnings", () => {
    const result = plan(
      [
        vmLine("vm1", "meta allow-migrate=perhaps"),
        vmLine("vm2", "meta target-role=Sleeping"),
        vmLine("vm3", "meta resource-stickiness=2000000"),
        vmLine("vm4", "meta migration-threshold=-1"),
        vmLine("vm5", "meta failure-timeout=soon"),
        vmLine("vm6", "meta is-managed=false target-role=Promoted colour=blue"),
        "rsc_defaults priority=lots",
      ].join("\n"),
    );
    assert.equal(one(result.report, "error", /vm1: meta: allow-migrate "perhaps" is not a boolean/).line, 1);
    assert.equal(one(result.report, "error", /vm2: meta: unknown target-role "Sleeping"/).line, 2);
    assert.equal(
      one(result.report, "error", /vm3: meta: resource-stickiness: score 2000000 is out of range/).line,
      3,
    );
    assert.equal(one(result.report, "error", /vm4: meta: migration-threshold -1 is negative/).line, 4);
    assert.equal(one(result.report, "error", /vm5: meta: failure-timeout: "soon" is not a time/).line, 5);
    one(
      result.report,
      "warning",
      /vm6: meta: is-managed=false is not honoured: Haven manages every VM it imports/,
    );
    one(result.report, "warning", /vm6: meta: target-role Promoted is imported as started/);
    one(result.report, "warning", /vm6: meta: colour=blue is not honoured: unknown meta attribute/);
    assert.equal(
      one(result.report, "error", /rsc_defaults: priority: score "lots" is not an integer/).line,
      7,
    );
    assert.deepEqual(
      result.vms.map((vm) => [vm.name, vm.targetRole]),
      [["vm6", "started"]],
    );
  });
});

describe("translate: operations and time values", () => {
  it("maps op timeouts in every time unit; the migrate timeout is the longer of the two", () => {
    const result = plan(
      vmLine(
        "vm1",
        "op start timeout=2min interval=0 op stop timeout=1h op monitor interval=30000ms timeout=PT1M " +
          "op migrate_to timeout=300s op migrate_from timeout=400",
      ),
    );
    assert.deepEqual(errors(result.report), []);
    assert.deepEqual(result.vms[0]?.timeouts, {
      startSeconds: 120,
      stopSeconds: 3600,
      monitorIntervalSeconds: 30,
      monitorTimeoutSeconds: 60,
      migrateSeconds: 400,
    });
  });

  it("rounds sub-second times up and fills the gaps from op_defaults", () => {
    const result = plan(
      ["op_defaults timeout=90 record-pending=true", vmLine("vm1", "op start timeout=1500ms")].join("\n"),
    );
    assert.deepEqual(result.vms[0]?.timeouts, {
      startSeconds: 2,
      stopSeconds: 90,
      monitorTimeoutSeconds: 90,
      migrateSeconds: 90,
    });
    assert.equal(one(result.report, "warning", /op_defaults record-pending=true is not honoured/).line, 1);
  });

  it("reports what it does not honour in ops, at the op's line", () => {
    const text =
      vmLine("vm1", "\\\n") +
      "  op monitor interval=10 on-fail=block depth=10 \\\n" +
      "  op monitor interval=60 role=Started \\\n" +
      "  op start interval=5 on-fail=restart \\\n" +
      "  op notify timeout=10";
    const result = plan(text);
    assert.deepEqual(errors(result.report), []);
    assert.deepEqual(
      warnings(result.report).map((diagnostic) => [diagnostic.line, diagnostic.column, diagnostic.message]),
      [
        [2, 6, "vm1: op monitor: on-fail=block is not honoured"],
        [2, 6, "vm1: op monitor: depth=10 is not honoured"],
        [3, 6, "vm1: op monitor: only the first monitor is honoured"],
        [4, 6, "vm1: op start: interval=5 is not honoured: only monitors repeat"],
        [5, 6, "vm1: op notify is not honoured: Haven runs start, stop, monitor and migrate only"],
      ],
    );
  });

  it("names a bad time value as an error", () => {
    const result = plan(vmLine("vm1", "op start timeout=5 minutes"));
    assert.ok(errors(result.report).length > 0);
    const line = vmLine("vm1", "op start timeout=forever");
    const bad = plan(line);
    const error = one(bad.report, "error", /vm1: op start: timeout: "forever" is not a time/);
    assert.equal(error.column, line.indexOf("start") + 1); // the op's name
  });
});

describe("translate: the libvirt side", () => {
  it("reports an unreadable config file and leaves the VM out", () => {
    const result = plan(vmLine("vm1"), () => ({ error: "ENOENT: no such file" }));
    assert.equal(one(result.report, "error", /vm1: cannot read \/etc\/libvirtcfg\/vm1.xml: ENOENT/).line, 1);
    assert.deepEqual(result.vms, []);
  });

  it("keeps a broken domain's errors with the file's path, and says the VM cannot run", () => {
    const result = plan(
      vmLine("vm1"),
      cleanDomains({ "/etc/libvirtcfg/vm1.xml": "<domain type='kvm'>\n<name>vm1" }),
    );
    const xmlError = one(result.report, "error", /is not closed/);
    assert.deepEqual([xmlError.source, xmlError.line], ["/etc/libvirtcfg/vm1.xml", 2]);
    one(result.report, "error", /vm1: \/etc\/libvirtcfg\/vm1.xml does not describe a domain Haven can run/);
    assert.deepEqual(result.vms, []);
  });

  it("checks memory and vCPUs against Haven's limits and disk names against Haven's", () => {
    const result = plan(
      [vmLine("vm1"), vmLine("vm2")].join("\n"),
      cleanDomains({
        "/etc/libvirtcfg/vm1.xml": cleanDomain("vm1", "vm1-disk", "<memory unit='MiB'>8</memory>"),
        "/etc/libvirtcfg/vm2.xml": cleanDomain("vm2", "-bad-name"),
      }),
    );
    one(result.report, "error", /vm1: memory must be at least 16 MB \(\/etc\/libvirtcfg\/vm1.xml\)/);
    one(result.report, "error", /vm2: disk image "-bad-name" is not a valid Haven disk name/);
    assert.deepEqual(result.vms, []);
  });

  it("refuses two VMs on one image: one writer per disk", () => {
    const result = plan(
      [vmLine("vm1"), vmLine("vm2")].join("\n"),
      cleanDomains({ "/etc/libvirtcfg/vm2.xml": cleanDomain("vm2", "vm1-disk") }),
    );
    assert.equal(one(result.report, "error", /vm2: disk rbd\/vm1-disk is also a disk of vm1/).line, 2);
  });

  it("warns about a domain without disks", () => {
    const empty =
      "<domain type='kvm'><name>vm1</name><memory>524288</memory><os><kernel>/k</kernel></os></domain>";
    const result = plan(vmLine("vm1"), cleanDomains({ "/etc/libvirtcfg/vm1.xml": empty }));
    one(result.report, "warning", /vm1: the domain has no RBD disk/);
    assert.equal(result.vms[0]?.memoryMb, 512);
  });
});

describe("translate: nodes, properties and references", () => {
  it("reports locations naming unknown nodes, also through #uname, and rules on attributes no node has", () => {
    const text = [
      "node n1 attributes hw=vm",
      vmLine("vm1"),
      "location l1 vm1 10: n2",
      "location l2 vm1 rule 10: #uname eq n3",
      "location l3 vm1 rule -inf: gpu eq yes",
      "location l4 vm1 rule 10: #kind eq remote",
    ].join("\n");
    const result = plan(text);
    assert.equal(one(result.report, "error", /l1: unknown node "n2"/).line, 3);
    assert.equal(one(result.report, "error", /l2: unknown node "n3"/).line, 4);
    assert.equal(one(result.report, "warning", /l3: no known node has the attribute "gpu"/).line, 5);
    assert.equal(one(result.report, "warning", /l4: rule attribute #kind is not supported/).line, 6);
    assert.deepEqual(
      result.constraints.map((constraint) => constraint.id),
      ["l3"],
    );
  });

  it("knows the cluster's nodes from the caller, and checks nothing when no node is known", () => {
    const text = [vmLine("vm1"), "location l1 vm1 10: n2"].join("\n");
    assert.deepEqual(
      errors(plan(text, cleanDomains(), { knownNodes: [{ name: "n2", attributes: {} }] }).report),
      [],
    );
    const unchecked = plan(text);
    assert.deepEqual(errors(unchecked.report), []);
    one(unchecked.report, "warning", /no nodes are known, so the nodes named in locations were not checked/);
  });

  it("evaluates rules against the attributes of the caller's nodes", () => {
    const knownNodes = [
      { name: "n1", attributes: { hw: "vm" } },
      { name: "n2", attributes: { hw: "disk" } },
    ];
    const text = [vmLine("vm1"), "location l1 vm1 rule -inf: hw ne vm"].join("\n");
    assert.deepEqual(errors(plan(text, cleanDomains(), { knownNodes }).report), []);
    const banned = plan(`${text}\nlocation l2 vm1 -inf: n1`, cleanDomains(), { knownNodes });
    one(banned.report, "error", /vm1 is banned from every node \(by l1, l2\)/);
  });

  it("reports unknown resources, duplicate ids and nodes, and node utilization", () => {
    const text = [
      "node n1 utilization memory=64",
      "node n1",
      vmLine("vm1"),
      "location vm1 vm1 10: n1",
      "colocation c1 inf: vm1 ghost",
      "order o1 ghost vm1",
    ].join("\n");
    const result = plan(text);
    assert.equal(one(result.report, "warning", /node n1: utilization is not honoured/).line, 1);
    assert.equal(one(result.report, "error", /node n1 is defined twice/).line, 2);
    assert.equal(one(result.report, "error", /id "vm1" is already used on line 3/).line, 4);
    assert.equal(one(result.report, "error", /c1: unknown resource "ghost"/).line, 5);
    assert.equal(one(result.report, "error", /o1: unknown resource "ghost"/).line, 6);
  });

  it("keeps every property and reports those Haven does not honour", () => {
    const text = [
      "property stonith-enabled=false no-quorum-policy=ignore symmetric-cluster=false",
      "property dc-version=2.1.5 cluster-infrastructure=corosync have-watchdog=false stonith-timeout=60s",
      "property no-quorum-policy=stop",
    ].join("\n");
    const result = plan(text);
    assert.deepEqual(result.properties, {
      "stonith-enabled": "false",
      "no-quorum-policy": "stop",
      "symmetric-cluster": "false",
      "dc-version": "2.1.5",
      "cluster-infrastructure": "corosync",
      "have-watchdog": "false",
      "stonith-timeout": "60s",
    });
    assert.deepEqual(
      warnings(result.report).map((diagnostic) => [diagnostic.line, diagnostic.message.replace(/:.*/, "")]),
      [
        [1, "property stonith-enabled=false is not honoured"],
        [1, "property no-quorum-policy=ignore is not honoured"],
        [1, "property symmetric-cluster=false is not honoured"],
        [2, "property stonith-timeout=60s is not honoured"],
        [3, "property no-quorum-policy is set again; the later value is used"],
      ],
    );
  });
});

describe("translate: placement-strategy", () => {
  it("takes the cluster's placement-strategy, whatever its case, from the line that sets it", () => {
    const result = plan(`${vmLine("a")}\nproperty cib-bootstrap-options: placement-strategy=Utilization`);
    assert.deepEqual(result.placementStrategy, { strategy: "utilization", line: 2 });
    assert.deepEqual(result.report, []);
  });

  it("refuses a strategy Pacemaker does not know", () => {
    const result = plan(`${vmLine("a")}\nproperty placement-strategy=spread`);
    one(result.report, "error", /placement-strategy=spread: not a placement strategy \(default, utilization/);
    assert.equal(result.placementStrategy, undefined);
  });
});

describe("translate: constraints", () => {
  const vms = ["a", "b", "c"].map((name) => vmLine(name)).join("\n");

  it("reads a negative colocation of three as Pacemaker reads the set: each VM away from every VM before it", () => {
    const result = plan(`${vms}\ncolocation apart -1000: a b c`);
    assert.deepEqual(result.constraints, [
      { type: "colocation-set", id: "apart", vms: ["a", "b", "c"], score: -1000, line: 4 },
    ]);
    assert.deepEqual(result.report, []);
  });

  it("reads a colocation of three as crm's sequential set: each VM placed relative to the one before", () => {
    const result = plan(`${vms}\ncolocation c3 inf: a b c`);
    assert.deepEqual(result.constraints, [
      { type: "colocation", id: "c3-1", vm: "b", withVm: "a", score: 1e6, line: 4 },
      { type: "colocation", id: "c3-2", vm: "c", withVm: "b", score: 1e6, line: 4 },
    ]);
  });

  it("reads an order of three as a chain, and a deprecated score as its kind", () => {
    const result = plan(`${vms}\norder o3 inf: a b c\norder o0 0: c a`);
    assert.deepEqual(result.constraints, [
      { type: "order", id: "o3-1", first: "a", then: "b", kind: "mandatory", line: 4 },
      { type: "order", id: "o3-2", first: "b", then: "c", kind: "mandatory", line: 4 },
      { type: "order", id: "o0", first: "c", then: "a", kind: "optional", line: 5 },
    ]);
  });

  it("makes one constraint per rule of a location and writes rules in the scheduler's syntax", () => {
    const text =
      `node n1 attributes hw=vm rack=r1\n${vms}\n` +
      'location l a rule 50: #uname eq n1 and defined rack rule -inf: not_defined hw or hw eq "big box"';
    const result = plan(text);
    assert.deepEqual(result.constraints, [
      { type: "location-rule", id: "l", vm: "a", rule: "#uname eq n1 and defined rack", score: 50, line: 5 },
      {
        type: "location-rule",
        id: "l-2",
        vm: "a",
        rule: 'not_defined hw or hw eq "big box"',
        score: -1e6,
        line: 5,
      },
    ]);
  });

  it("drops what needs roles, actions, node-attribute or Serialize, with a warning each", () => {
    const text = [
      vms,
      "colocation c1 inf: a:Master b",
      "colocation c2 inf: a b node-attribute=rack",
      "order o1 Mandatory: a:promote b",
      "order o2 Serialize: a b",
      "location l1 a role=Slave 10: n1",
      "location l2 a rule $role=Master 10: defined x",
      "node n1",
    ].join("\n");
    const result = plan(text);
    assert.deepEqual(errors(result.report), []);
    assert.deepEqual(
      warnings(result.report).map((diagnostic) => diagnostic.line),
      [4, 5, 6, 7, 8, 9],
    );
    assert.deepEqual(result.constraints, []);
  });

  it("notes what it does not honour but keeps the constraint; typed comparisons are kept as typed", () => {
    const text = [
      "node n1 attributes v=1.10",
      vms,
      "order o1 Mandatory: a b symmetrical=false",
      "location l1 a resource-discovery=never 10: n1",
      "location l2 a rule 10: v version:gt 1.9",
    ].join("\n");
    const result = plan(text);
    one(result.report, "warning", /o1: symmetrical=false has no effect: Haven does not order stops/);
    one(result.report, "warning", /l1: resource-discovery=never is not honoured/);
    assert.equal(warnings(result.report).length, 2);
    assert.equal(result.constraints.length, 3);
    assert.deepEqual(
      result.constraints.find((constraint) => constraint.id === "l2"),
      { type: "location-rule", id: "l2", vm: "a", rule: "v version:gt 1.9", score: 10, line: 7 },
    );
  });

  it("evaluates rules on attributes named like Object.prototype's members as undefined", () => {
    const result = plan(`node n1 attributes hw=vm\n${vms}\nlocation l a rule -inf: constructor eq x`);
    one(result.report, "warning", /l: no known node has the attribute "constructor"/);
    assert.deepEqual(errors(result.report), []);
  });

  it("refuses a VM colocated with or ordered after itself", () => {
    const result = plan(`${vms}\ncolocation c1 inf: a a\norder o1 b b`);
    one(result.report, "error", /c1: a VM cannot be colocated with itself/);
    one(result.report, "error", /o1: a VM cannot be ordered after itself/);
  });
});

describe("translate: contradictory mandatory constraints are reported once, without looping", () => {
  const result = plan(fixture("contradictions.crm"));
  const contradictions = result.report.filter((diagnostic) => diagnostic.message.startsWith("contradiction"));

  it("finds every contradiction of the fixture, each once, at its constraint's line", () => {
    assert.deepEqual(
      contradictions.map((diagnostic) => [diagnostic.line, diagnostic.severity, diagnostic.message]),
      [
        [
          10,
          "error",
          "contradiction: c-13-apart keeps guest3 away from guest1 (-INFINITY), but c-12, c-23 tie them together (+INFINITY)",
        ],
        [
          12,
          "error",
          "contradiction: the mandatory orders o-12, o-23, o-31 form a cycle (guest1 → guest2 → guest3 → guest1); none of these VMs could start",
        ],
        [
          17,
          "error",
          "contradiction: guest2 is required on vmhost1 by l-2-on-1 (+INFINITY) and forbidden there by l-2-not-1 (-INFINITY)",
        ],
        [
          19,
          "error",
          "contradiction: guest3 is banned from every node (by l-3-vm, l-3-disk); it could never run",
        ],
      ],
    );
  });

  it("still names the unknown node and resources", () => {
    one(result.report, "error", /l-ghost-node: unknown node "vmhost9"/);
    one(result.report, "error", /l-ghost-vm: unknown resource "guest9"/);
    one(result.report, "error", /c-ghost: unknown resource "guest9"/);
  });

  it("reports the plain +INFINITY / -INFINITY pair of colocations", () => {
    const pair = plan(`${vmLine("a")}\n${vmLine("b")}\ncolocation c1 +inf: a b\ncolocation c2 -inf: b a`);
    one(
      pair.report,
      "error",
      /contradiction: c2 keeps b away from a \(-INFINITY\), but c1 tie them together/,
    );
  });

  it("reports a two-VM order cycle, and ignores cycles through optional orders", () => {
    const two = plan(`${vmLine("a")}\n${vmLine("b")}\norder o1 a b\norder o2 Mandatory: b a`);
    one(two.report, "error", /the mandatory orders o1, o2 form a cycle \(a → b → a\)/);
    const optional = plan(`${vmLine("a")}\n${vmLine("b")}\norder o1 a b\norder o2 Optional: b a`);
    assert.deepEqual(errors(optional.report), []);
  });

  it("reports a long cycle and a conflict in a large colocation web", () => {
    const count = 2000;
    const names = Array.from({ length: count }, (_, index) => `vm${index}`);
    const lines = names.map((name) => vmLine(name));
    names.forEach((name, index) => lines.push(`order o${index} ${name} ${names[(index + 1) % count]}`));
    names.forEach((name, index) =>
      lines.push(`colocation c${index} inf: ${name} ${names[(index + 1) % count]}`),
    );
    lines.push(`colocation apart -inf: vm0 vm${count / 2}`);
    const big = plan(lines.join("\n"));
    assert.equal(big.report.filter((diagnostic) => /form a cycle/.test(diagnostic.message)).length, 1);
    assert.equal(big.report.filter((diagnostic) => /keeps vm0 away/.test(diagnostic.message)).length, 1);
  });
});

describe("translate: one domain (vm create --from-libvirt)", () => {
  it("makes a VM with Pacemaker's defaults and reports the file's findings with its path", () => {
    const { vm, report } = translateDomain("guest2", "guest2.xml", parseLibvirtDomain(fixture("guest2.xml")));
    assert.deepEqual(vm, {
      name: "guest2",
      config: "guest2.xml",
      memoryMb: 4096,
      vcpus: 4,
      disks: [
        { pool: "vms", image: "guest2-root", bus: "virtio-blk" },
        { pool: "vms", image: "guest2-data", bus: "virtio-scsi" },
      ],
      nics: [],
      kernel: "/var/lib/haven/kernels/vmlinuz",
      initrd: "/var/lib/haven/kernels/initrd.img",
      cmdline: "console=ttyS0 root=/dev/vda1",
      machine: "pc-i440fx-7.2",
      allowMigrate: false,
      targetRole: "started",
      migrationTransport: "tls",
      forceStop: false,
      timeouts: {},
      line: 1,
    });
    assert.deepEqual(errors(report), []);
    assert.ok(report.every((diagnostic) => diagnostic.source === "guest2.xml"));
    one(report, "warning", /guest2: the domain in guest2.xml is named "guest2-vm"; the VM is named "guest2"/);
    one(report, "warning", /CD-ROM hdc .* is not imported/);
  });

  const domainWith = (os: string, devices: string) =>
    `<domain type='kvm'><name>vm1</name><memory unit='MiB'>512</memory>${os}<devices>${devices}</devices></domain>`;
  const disk =
    "<disk type='network' device='disk'><source protocol='rbd' name='rbd/vm1-disk'/><target dev='vda'/></disk>";
  const cdrom =
    "<disk type='network' device='cdrom'><source protocol='rbd' name='isos/installer'/><target dev='sda'/></disk>";
  const translate = (os: string, devices: string) =>
    translateDomain("vm1", "vm1.xml", parseLibvirtDomain(domainWith(os, devices)));

  it("a domain that boots from its disk keeps its firmware; a kernel file makes firmware moot", () => {
    const uefi = translate("<os firmware='efi'><type machine='q35'>hvm</type></os>", disk);
    assert.deepEqual([uefi.vm?.firmware, uefi.vm?.kernel, uefi.vm?.machine], ["uefi", undefined, "q35"]);
    assert.deepEqual(errors(uefi.report), []);
    const kernel = translate("<os firmware='efi'><type>hvm</type><kernel>/boot/vmlinuz</kernel></os>", disk);
    assert.deepEqual([kernel.vm?.firmware, kernel.vm?.kernel], [undefined, "/boot/vmlinuz"]);
  });

  it("a CD-ROM alone boots with a warning; nothing to boot at all is an error", () => {
    const installer = translate("<os><type>hvm</type></os>", cdrom);
    assert.deepEqual(installer.vm?.cdrom, { pool: "isos", image: "installer" });
    one(installer.report, "warning", /vm1: the domain has no RBD disk/);
    const nothing = translate("<os><type>hvm</type></os>", "");
    assert.equal(nothing.vm, undefined);
    one(
      nothing.report,
      "error",
      /^vm1: nothing to boot: the domain has no RBD disk, no RBD CD-ROM and no <kernel> \(vm1.xml\)$/,
    );
  });

  it("gives no VM for a bad name or a broken file", () => {
    const badName = translateDomain("-x", "guest1.xml", parseLibvirtDomain(fixture("guest1.xml")));
    assert.equal(badName.vm, undefined);
    one(badName.report, "error", /"-x" is not a valid Haven VM name/);
    const broken = translateDomain(
      "guest5",
      "broken-unclosed.xml",
      parseLibvirtDomain(fixture("broken-unclosed.xml")),
    );
    assert.equal(broken.vm, undefined);
    assert.deepEqual(
      errors(broken.report).map((diagnostic) => [diagnostic.source, diagnostic.line, diagnostic.column]),
      [["broken-unclosed.xml", 7, 5]],
    );
  });
});
