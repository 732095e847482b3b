// The libvirt domain reader: the XML subset (and its refusals, with line and column), memory units, the
// fields Haven imports from virt-install-style domains, and a warning for every element it does not honour.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { Diagnostic } from "../../src/core/import/crm.js";
import { memoryToMb, parseLibvirtDomain, parseXml } from "../../src/core/import/libvirt.js";

// The test runner starts in the repository root; dist/ and other output directories do not hold fixtures.
const fixture = (name: string) => readFileSync(join(process.cwd(), "test/fixtures/import", name), "utf8");

const at = (diagnostics: Diagnostic[], line: number) =>
  diagnostics.filter((diagnostic) => diagnostic.line === line);
const errors = (diagnostics: Diagnostic[]) =>
  diagnostics.filter((diagnostic) => diagnostic.severity === "error");

/** A minimal valid domain with `extra` inside <domain> and `devices` inside <devices>. */
const domainXml = (extra = "", devices = "") =>
  `<domain type='kvm'>\n<name>vm1</name>\n<memory unit='MiB'>512</memory>\n<vcpu>1</vcpu>\n${extra}\n<devices>\n${devices}\n</devices>\n</domain>\n`;

const rbdDisk = (name = "rbd/vm1-disk", target = "<target dev='vda' bus='virtio'/>") =>
  `<disk type='network' device='disk'><source protocol='rbd' name='${name}'/>${target}</disk>`;

describe("xml: the reader", () => {
  it("reads elements, attributes, text, comments, CDATA, processing instructions and references", () => {
    const text =
      "\uFEFF<?xml version='1.0' encoding='UTF-8'?>\n<!-- head -->\n<?app skip?>\n" +
      `<a x="1" y='two words' z="&lt;&gt;&amp;&quot;&apos;&#65;&#x42;">\n` +
      `  <b>t&amp;t<![CDATA[<raw> & ]]></b><!-- inner --><c/>\n  <d\n   e="tab\there"/>\n</a>\n<!-- tail -->\n`;
    const { root, diagnostics } = parseXml(text);
    assert.deepEqual(diagnostics, []);
    assert.equal(root?.name, "a");
    assert.deepEqual(root?.attributes, { x: "1", y: "two words", z: `<>&"'AB` });
    assert.deepEqual(
      root?.children.map((child) => [child.name, child.text, child.line, child.column]),
      [
        ["b", "t&t<raw> & ", 5, 3],
        ["c", "", 5, 51],
        ["d", "", 6, 3],
      ],
    );
    assert.equal(root?.children[2]?.attributes.e, "tab here"); // attribute whitespace normalised
    assert.deepEqual([root?.line, root?.column], [4, 1]);
  });

  const cases: Array<[string, string, number, number, RegExp]> = [
    [
      "mismatched end tag",
      "<a>\n  <b>\n  </c>\n</a>",
      3,
      3,
      /expected <\/b> \(opened on line 2\), found <\/c>/,
    ],
    ["unclosed element", "<a>\n  <b>text", 2, 10, /<b> \(line 2\) is not closed/],
    ["unclosed start tag", "<a x='1'", 1, 1, /<a> is not closed/],
    [
      "DOCTYPE",
      "<?xml version='1.0'?>\n<!DOCTYPE a [<!ENTITY x 'y'>]>\n<a/>",
      2,
      1,
      /DTDs and declarations are not accepted/,
    ],
    ["DOCTYPE inside", "<a><!ENTITY x 'y'></a>", 1, 4, /DTDs/],
    ["unknown entity", "<a>\n  &lol;\n</a>", 2, 3, /unknown entity &lol; \(DTD entities are not expanded\)/],
    ["bare ampersand", "<a>fish & chips</a>", 1, 9, /'&' must start a reference/],
    ["entity in attribute", "<a b='&x;'/>", 1, 7, /unknown entity &x;/],
    ["invalid character reference", "<a>&#0;</a>", 1, 4, /not a valid XML character/],
    ["'<' in attribute", "<a b='x<y'/>", 1, 8, /'<' is not allowed in an attribute value/],
    ["duplicate attribute", "<a b='1' b='2'/>", 1, 10, /attribute "b" is given twice/],
    ["unquoted attribute", "<a b=1/>", 1, 6, /expected a quoted value/],
    ["attributes without space", "<a b='1'c='2'/>", 1, 9, /expected whitespace/],
    ["unterminated attribute", "<a b='1/>", 1, 6, /unterminated value of attribute "b"/],
    ["missing equals", "<a b/>", 1, 5, /expected '='/],
    ["content after root", "<a/>\n<b/>", 2, 1, /unexpected content after the root element/],
    ["text after root", "<a/>x", 1, 5, /unexpected content/],
    ["late declaration", "<!-- c -->\n<?xml version='1.0'?><a/>", 2, 1, /XML declaration must come first/],
    ["unterminated comment", "<a><!-- oops</a>", 1, 4, /unterminated comment/],
    ["unterminated CDATA", "<a><![CDATA[x</a>", 1, 4, /unterminated CDATA section/],
    ["empty document", "", 1, 1, /expected the root element/],
    ["no element name", "<a>< b/></a>", 1, 5, /expected a name/],
  ];
  for (const [name, text, line, column, message] of cases) {
    it(`refuses: ${name}`, () => {
      const { root, diagnostics } = parseXml(text);
      assert.equal(root, undefined);
      assert.equal(diagnostics.length, 1);
      const [error] = diagnostics;
      assert.deepEqual(
        [error!.severity, error!.line, error!.column],
        ["error", line, column],
        error!.message,
      );
      assert.match(error!.message, message);
    });
  }

  it("does not mistake Object.prototype's names for entities or memory units", () => {
    assert.match(parseXml("<a>&constructor;</a>").diagnostics[0]!.message, /unknown entity &constructor;/);
    assert.deepEqual(memoryToMb("1", "constructor"), { error: 'unknown memory unit "constructor"' });
    const { domain, diagnostics } = parseLibvirtDomain(domainXml("<toString/>", "<valueOf/>"));
    assert.ok(domain);
    assert.deepEqual(
      diagnostics.map((diagnostic) => diagnostic.message),
      [
        "<toString> is not honoured: Haven has no equivalent",
        "<valueOf> is not imported: Haven creates no such device",
      ],
    );
  });

  it("refuses the billion laughs before expanding anything", () => {
    const { domain, diagnostics } = parseLibvirtDomain(fixture("billion-laughs.xml"));
    assert.equal(domain, undefined);
    assert.deepEqual(
      diagnostics.map((diagnostic) => [diagnostic.line, diagnostic.column, diagnostic.severity]),
      [[2, 1, "error"]],
    );
  });

  it("reads deep nesting without exhausting the stack", () => {
    const depth = 100_000;
    const { root, diagnostics } = parseXml("<a>".repeat(depth) + "</a>".repeat(depth));
    assert.deepEqual(diagnostics, []);
    assert.equal(root?.children[0]?.children[0]?.name, "a");
  });
});

describe("libvirt: memory units", () => {
  it("converts every libvirt unit to whole MiB, rounding up", () => {
    const cases: Array<[string, string | undefined, number, boolean]> = [
      ["2097152", undefined, 2048, false], // KiB is the default
      ["2097152", "KiB", 2048, false],
      ["2097152", "k", 2048, false],
      ["1000000", "KB", 954, true],
      ["512", "MiB", 512, false],
      ["512", "M", 512, false],
      ["1000", "MB", 954, true],
      ["4", "GiB", 4096, false],
      ["4", "G", 4096, false],
      ["1", "GB", 954, true],
      ["1", "TiB", 1_048_576, false],
      ["1", "TB", 953_675, true],
      ["1", "PiB", 1_073_741_824, false],
      ["1", "EiB", 1_099_511_627_776, false],
      ["1073741824", "bytes", 1024, false],
      ["1", "b", 1, true],
      [" 64 ", "mib", 64, false],
    ];
    for (const [value, unit, mb, rounded] of cases) {
      assert.deepEqual(memoryToMb(value, unit), { mb, rounded }, `${value} ${unit}`);
    }
    assert.deepEqual(memoryToMb("1", "furlongs"), { error: 'unknown memory unit "furlongs"' });
    assert.deepEqual(memoryToMb("1.5", "GiB"), { error: 'memory "1.5" is not a whole number' });
    assert.deepEqual(memoryToMb("-1"), { error: 'memory "-1" is not a whole number' });
  });
});

describe("libvirt: a virt-install domain (guest1.xml)", () => {
  const { domain, diagnostics } = parseLibvirtDomain(fixture("guest1.xml"));

  it("imports name, memory, vCPUs, the rbd disk with its monitors, the bridged card, CPU and machine", () => {
    assert.deepEqual(domain, {
      name: "guest1",
      type: "kvm",
      memoryMb: 2048,
      currentMemoryMb: 1024,
      vcpus: 2,
      disks: [
        {
          pool: "rbd",
          image: "guest1-disk0",
          monitors: ["192.168.122.11:6789", "192.168.122.12:6789", "192.168.122.13:6789"],
          targetDev: "vda",
          targetBus: "virtio",
          bus: "virtio-blk",
          readonly: false,
          line: 38,
        },
      ],
      nics: [{ bridge: "br0", mac: "52:54:00:3b:7e:21", model: "virtio", line: 54 }],
      machine: "pc-q35-7.2",
      cpu: { model: "host", line: 27 },
    });
    assert.deepEqual(errors(diagnostics), []);
  });

  it("reports every element it does not honour, one line each, in line order", () => {
    const expected: Array<[number, RegExp]> = [
      [10, /<uuid>/],
      [11, /<metadata>/],
      [17, /<currentMemory> 1024 MB is not applied/],
      [27, /<cpu mode='host-passthrough'> is imported as CPU model host: .* identical hosts/],
      [28, /<clock offset='utc'>/],
      [33, /<on_poweroff>/],
      [34, /<on_reboot>/],
      [35, /<on_crash>/],
      [37, /<emulator>/],
      [39, /disk vda: driver cache not honoured/],
      [40, /disk vda: <auth username='libvirt'> secret is not imported/],
      [49, /disk vda: <address> not honoured/],
      [51, /<controller type='usb'>/],
      [59, /<serial type='pty'>/],
      [62, /<console type='pty'>/],
      [65, /<graphics type='vnc'>/],
      [68, /<video>/],
      [71, /<memballoon model='virtio'>/],
    ];
    assert.equal(diagnostics.length, expected.length);
    expected.forEach(([line, message], index) => {
      const diagnostic = diagnostics[index]!;
      assert.equal(diagnostic.line, line, diagnostic.message);
      assert.equal(diagnostic.severity, "warning");
      assert.match(diagnostic.message, message);
    });
  });

  it("leaves no child of <domain> or <devices> unmentioned", () => {
    const { root } = parseXml(fixture("guest1.xml"));
    const handled = ["name", "memory", "vcpu", "os", "devices", "cpu", "features"];
    for (const child of root!.children.filter((element) => !handled.includes(element.name))) {
      assert.ok(at(diagnostics, child.line).length > 0, `<${child.name}> on line ${child.line}`);
    }
    const devices = root!.children.find((element) => element.name === "devices")!;
    const read = ["disk", "interface"];
    for (const device of devices.children.filter((element) => !read.includes(element.name))) {
      assert.ok(at(diagnostics, device.line).length > 0, `<${device.name}> on line ${device.line}`);
    }
  });
});

describe("libvirt: a direct-boot domain with several disks (guest2.xml)", () => {
  const { domain, diagnostics } = parseLibvirtDomain(fixture("guest2.xml"));

  it("imports GiB memory, all vCPUs, the kernel, i440fx and both rbd disks (IPv6 monitor, read-only, scsi)", () => {
    assert.equal(domain?.name, "guest2-vm");
    assert.equal(domain?.memoryMb, 4096);
    assert.equal(domain?.currentMemoryMb, undefined);
    assert.equal(domain?.vcpus, 4);
    assert.equal(domain?.machine, "pc-i440fx-7.2");
    assert.deepEqual(
      [domain?.kernel, domain?.initrd, domain?.cmdline],
      ["/var/lib/haven/kernels/vmlinuz", "/var/lib/haven/kernels/initrd.img", "console=ttyS0 root=/dev/vda1"],
    );
    assert.deepEqual(domain?.disks, [
      {
        pool: "vms",
        image: "guest2-root",
        monitors: ["mon1.example.org:6789", "[2001:db8::10]:3300"],
        targetDev: "vda",
        targetBus: "virtio",
        bus: "virtio-blk",
        readonly: false,
        line: 12,
      },
      {
        pool: "vms",
        image: "guest2-data",
        monitors: ["mon1.example.org:6789"],
        targetDev: "sdb",
        targetBus: "scsi",
        bus: "virtio-scsi",
        readonly: true,
        line: 23,
      },
    ]);
  });

  it("reports the current vCPUs, the auth inside <source>, and the file-backed disk and CD-ROM", () => {
    assert.deepEqual(errors(diagnostics), []);
    assert.deepEqual(
      diagnostics.map((diagnostic) => diagnostic.line),
      [4, 17, 30, 32, 37],
    );
    assert.match(at(diagnostics, 4)[0]!.message, /current='2'.*all 4 vCPUs/);
    assert.match(at(diagnostics, 17)[0]!.message, /<auth username='libvirt'>/);
    assert.match(at(diagnostics, 30)[0]!.message, /<serial>/);
    assert.match(
      at(diagnostics, 32)[0]!.message,
      /disk vdc .*guest2-scratch.qcow2.* Haven runs disks on Ceph RBD only/,
    );
    assert.match(
      at(diagnostics, 37)[0]!.message,
      /CD-ROM hdc .*debian-12.iso\) is not imported: Haven's CD-ROM is an image on the cluster's storage/,
    );
  });
});

describe("libvirt: domains Haven cannot run", () => {
  const cases: Array<[string, string, number, RegExp]> = [
    [
      "a root other than <domain>",
      "<network><name>n</name></network>",
      1,
      /expected a <domain> element, found <network>/,
    ],
    [
      "a Xen domain",
      domainXml().replace("type='kvm'", "type='xen'"),
      1,
      /<domain type='xen'>: Haven runs QEMU\/KVM guests only/,
    ],
    ["no name", domainXml().replace("<name>vm1</name>", ""), 1, /has no <name>/],
    ["no memory", domainXml().replace("<memory unit='MiB'>512</memory>", ""), 1, /has no <memory>/],
    [
      "a bad memory unit",
      domainXml().replace("unit='MiB'", "unit='MiBs'"),
      3,
      /<memory>: unknown memory unit "MiBs"/,
    ],
    [
      "a bad vcpu",
      domainXml().replace("<vcpu>1</vcpu>", "<vcpu>two</vcpu>"),
      4,
      /<vcpu> "two" is not a positive whole number/,
    ],
    [
      "a zero vcpu",
      domainXml().replace("<vcpu>1</vcpu>", "<vcpu>0</vcpu>"),
      4,
      /not a positive whole number/,
    ],
    [
      "a paravirtual guest",
      domainXml("<os><type>linux</type></os>"),
      5,
      /Haven runs full \(hvm\) guests only/,
    ],
  ];
  for (const [name, text, line, message] of cases) {
    it(`refuses ${name}`, () => {
      const { domain, diagnostics } = parseLibvirtDomain(text);
      assert.equal(domain, undefined);
      const found = errors(diagnostics);
      assert.equal(found.length, 1, JSON.stringify(diagnostics));
      assert.equal(found[0]!.line, line);
      assert.match(found[0]!.message, message);
    });
  }

  const diskCases: Array<[string, string, RegExp]> = [
    ["an rbd name without pool", rbdDisk("justimage"), /rbd source name 'justimage' is not POOL\/IMAGE/],
    ["an rbd namespace", rbdDisk("pool/ns/image"), /not POOL\/IMAGE/],
    ["an rbd snapshot", rbdDisk("pool/image@snap"), /snapshots are not supported/],
    ["an rbd disk without target", rbdDisk("rbd/x", ""), /an rbd disk has no <target dev=...>/],
    [
      "a qcow2 rbd disk",
      rbdDisk().replace("<source", "<driver name='qemu' type='qcow2'/><source"),
      /format 'qcow2' is not supported on rbd/,
    ],
  ];
  for (const [name, disk, message] of diskCases) {
    it(`reports ${name} as an error`, () => {
      const { diagnostics } = parseLibvirtDomain(domainXml("", disk));
      const found = errors(diagnostics);
      assert.equal(found.length, 1, JSON.stringify(diagnostics));
      assert.equal(found[0]!.line, 7);
      assert.match(found[0]!.message, message);
    });
  }

  it("reports an unclosed element of a broken file at its line and column", () => {
    const { domain, diagnostics } = parseLibvirtDomain(fixture("broken-unclosed.xml"));
    assert.equal(domain, undefined);
    assert.deepEqual(
      diagnostics.map((diagnostic) => [diagnostic.line, diagnostic.column, diagnostic.message]),
      [[7, 5, "expected </source> (opened on line 6), found </disk>"]],
    );
  });
});

describe("libvirt: booting, CPU and machine", () => {
  const parse = (extra: string, devices = rbdDisk()) => parseLibvirtDomain(domainXml(extra, devices));
  const messages = (diagnostics: Diagnostic[]) => diagnostics.map((diagnostic) => diagnostic.message);

  it("a domain without <kernel> boots from its first disk, with or without <boot dev='hd'>", () => {
    for (const os of ["<os><type>hvm</type></os>", "<os><type>hvm</type><boot dev='hd'/></os>"]) {
      const { domain, diagnostics } = parse(os);
      assert.equal(domain?.kernel, undefined);
      assert.equal(domain?.firmware, undefined);
      assert.deepEqual(diagnostics, []);
    }
  });

  it("a first boot device other than the disk is reported", () => {
    const { diagnostics } = parse("<os><type>hvm</type><boot dev='cdrom'/><boot dev='hd'/></os>");
    assert.deepEqual(
      diagnostics.map((diagnostic) => [diagnostic.line, diagnostic.severity]),
      [[5, "warning"]],
    );
    assert.match(diagnostics[0]!.message, /<boot dev='cdrom'> is not honoured: Haven boots the first disk/);
  });

  it("UEFI from <os firmware='efi'> or a pflash loader; the variables are not imported", () => {
    assert.equal(parse("<os firmware='efi'><type>hvm</type></os>").domain?.firmware, "uefi");
    const loader =
      "<os><type>hvm</type><loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>" +
      "<nvram>/var/lib/libvirt/qemu/nvram/vm1_VARS.fd</nvram></os>";
    const { domain, diagnostics } = parse(loader);
    assert.equal(domain?.firmware, "uefi");
    assert.deepEqual(messages(diagnostics).length, 1);
    assert.match(
      diagnostics[0]!.message,
      /<nvram> is not imported: Haven gives a UEFI guest a fresh variable store/,
    );
  });

  it("machine types: aliases and versioned q35/i440fx are kept, others are reported", () => {
    const machine = (type: string) => parse(`<os><type machine='${type}'>hvm</type></os>`);
    assert.equal(machine("q35").domain?.machine, "q35");
    assert.equal(machine("pc").domain?.machine, "pc");
    assert.equal(machine("pc-q35-6.2").domain?.machine, "pc-q35-6.2");
    assert.equal(machine("pc-i440fx-7.2").domain?.machine, "pc-i440fx-7.2");
    const rhel = machine("pc-q35-rhel9.2.0");
    assert.equal(rhel.domain?.machine, undefined);
    assert.match(rhel.diagnostics[0]!.message, /machine type 'pc-q35-rhel9.2.0' is not honoured/);
  });

  it("CPU: a custom model is kept; host-passthrough is host with a warning; other modes get the default", () => {
    const custom = parse(
      "<cpu mode='custom' match='exact'><model fallback='allow'>Skylake-Server</model></cpu>",
    );
    assert.deepEqual(custom.domain?.cpu, { model: "Skylake-Server", line: 5 });
    assert.deepEqual(custom.diagnostics, []);
    assert.deepEqual(parse("<cpu><model>Westmere</model></cpu>").domain?.cpu?.model, "Westmere");
    const host = parse("<cpu mode='host-passthrough' check='none'/>");
    assert.equal(host.domain?.cpu?.model, "host");
    assert.match(host.diagnostics[0]!.message, /can move live only to identical hosts/);
    const hostModel = parse("<cpu mode='host-model'/>");
    assert.equal(hostModel.domain?.cpu, undefined);
    assert.match(
      hostModel.diagnostics[0]!.message,
      /<cpu mode='host-model'> is not honoured: .*default CPU model/,
    );
    const features = parse(
      "<cpu mode='custom'><model>Westmere</model><feature policy='require' name='aes'/><topology sockets='1' cores='2' threads='1'/></cpu>",
    );
    assert.equal(features.domain?.cpu?.model, "Westmere");
    assert.match(features.diagnostics[0]!.message, /<cpu>: <feature>, <topology> not honoured/);
    const bad = parse("<cpu><model>not a model!</model></cpu>");
    assert.equal(bad.domain?.cpu, undefined);
    assert.match(bad.diagnostics[0]!.message, /not a QEMU CPU model name/);
  });

  it("machine features QEMU gives every guest pass silently; others are reported", () => {
    assert.deepEqual(parse("<features><acpi/><apic/><pae/></features>").diagnostics, []);
    const hyperv = parse(
      "<features><acpi/><hyperv><relaxed state='on'/></hyperv><vmport state='off'/></features>",
    );
    assert.match(hyperv.diagnostics[0]!.message, /<features>: <hyperv>, <vmport> not honoured/);
  });
});

describe("libvirt: disks and CD-ROM", () => {
  const parse = (devices: string) => parseLibvirtDomain(domainXml("", devices));

  it("several disks in any pool, virtio → virtio-blk and scsi → virtio-scsi, in boot order", () => {
    const devices = [
      rbdDisk("data/vm1-logs", "<target dev='sda' bus='scsi'/>"),
      rbdDisk("rbd/vm1-root", "<target dev='vda' bus='virtio'/><boot order='1'/>"),
      rbdDisk("rbd/vm1-old", "<target dev='hda' bus='ide'/>"),
    ].join("\n");
    const { domain, diagnostics } = parse(devices);
    assert.deepEqual(
      domain?.disks.map(({ pool, image, bus }) => [pool, image, bus]),
      [
        ["rbd", "vm1-root", "virtio-blk"],
        ["data", "vm1-logs", "virtio-scsi"],
        ["rbd", "vm1-old", "virtio-blk"],
      ],
    );
    assert.deepEqual(
      diagnostics.map((diagnostic) => [diagnostic.line, diagnostic.severity]),
      [[9, "warning"]],
    );
    assert.match(
      diagnostics[0]!.message,
      /disk hda: bus 'ide' is not honoured: Haven attaches the disk as virtio-blk/,
    );
  });

  it("an RBD CD-ROM is the CD-ROM; a second one, a file and an empty drive are reported", () => {
    const cdrom = (source: string, dev: string) =>
      `<disk type='network' device='cdrom'>${source}<target dev='${dev}' bus='sata'/><readonly/></disk>`;
    const devices = [
      rbdDisk(),
      cdrom("<source protocol='rbd' name='isos/debian-12'/>", "sda"),
      cdrom("<source protocol='rbd' name='isos/other'/>", "sdb"),
      "<disk type='file' device='cdrom'><source file='/srv/x.iso'/><target dev='sdc'/></disk>",
      "<disk type='file' device='cdrom'><target dev='sdd'/></disk>",
      "<disk type='file' device='floppy'><source file='/srv/f.img'/><target dev='fda'/></disk>",
    ].join("\n");
    const { domain, diagnostics } = parse(devices);
    assert.deepEqual(domain?.cdrom, { pool: "isos", image: "debian-12", line: 8 });
    assert.deepEqual(
      diagnostics.map((diagnostic) => diagnostic.line),
      [9, 10, 11, 12],
    );
    assert.match(diagnostics[0]!.message, /CD-ROM sdb is not imported: Haven gives a guest one CD-ROM/);
    assert.match(diagnostics[1]!.message, /CD-ROM sdc .*\/srv\/x.iso\) is not imported: .*haven disk import/);
    assert.match(diagnostics[2]!.message, /CD-ROM sdd \(<disk type='file'>\) is not imported/);
    assert.match(diagnostics[3]!.message, /disk fda \(<disk device='floppy'>\) is not imported/);
  });
});

describe("libvirt: network cards", () => {
  const parse = (nics: string) => parseLibvirtDomain(domainXml("", `${rbdDisk()}\n${nics}`));
  const bridged = (inner: string) => `<interface type='bridge'><source bridge='br0'/>${inner}</interface>`;

  it("a bridged card keeps its bridge, MAC (in lower case), model and VLAN", () => {
    const { domain, diagnostics } = parse(
      [
        bridged("<mac address='52:54:00:AA:BB:01'/><model type='virtio'/>"),
        bridged("<mac address='52:54:00:aa:bb:02'/><model type='e1000'/><vlan><tag id='42'/></vlan>"),
      ].join("\n"),
    );
    assert.deepEqual(domain?.nics, [
      { bridge: "br0", mac: "52:54:00:aa:bb:01", model: "virtio", line: 8 },
      { bridge: "br0", mac: "52:54:00:aa:bb:02", model: "e1000", vlan: 42, line: 9 },
    ]);
    assert.deepEqual(diagnostics, []);
  });

  it("a card without a MAC gets one from Haven; a model Haven does not offer becomes virtio", () => {
    const { domain, diagnostics } = parse(
      [bridged(""), bridged("<model type='rtl8139'/><target dev='vnet3'/><address type='pci'/>")].join("\n"),
    );
    assert.deepEqual(
      domain?.nics.map((nic) => [nic.mac, nic.model]),
      [
        [undefined, "virtio"],
        [undefined, "virtio"],
      ],
    );
    assert.deepEqual(
      diagnostics.map((diagnostic) => diagnostic.message),
      [
        "card on br0: no <model>: the card is virtio (libvirt would choose the machine's default card)",
        "card on br0: model 'rtl8139' is not offered: the card is virtio (Haven offers virtio and e1000)",
        "card on br0: <target>, <address> not honoured: Haven plugs the card into the bridge through a tap device of its own and chooses device addresses itself",
      ],
    );
  });

  it("other kinds of interface are reported and left out", () => {
    const { domain, diagnostics } = parse(
      [
        "<interface type='network'><source network='default'/><model type='virtio'/></interface>",
        "<interface type='direct'><source dev='eth0' mode='bridge'/></interface>",
      ].join("\n"),
    );
    assert.deepEqual(domain?.nics, []);
    assert.match(
      diagnostics[0]!.message,
      /<interface type='network'> is not imported: Haven plugs cards into a bridge/,
    );
    assert.match(diagnostics[1]!.message, /<interface type='direct'> is not imported/);
  });

  const refusals: Array<[string, string, RegExp]> = [
    [
      "a malformed MAC",
      "<mac address='52:54:00:zz:00:01'/>",
      /card on br0: MAC address must be six hex pairs.*got '52:54:00:zz:00:01'/,
    ],
    [
      "a multicast MAC",
      "<mac address='01:00:5e:00:00:01'/>",
      /card on br0: MAC address must be unicast, got '01:00:5e:00:00:01'/,
    ],
    ["a VLAN out of range", "<vlan><tag id='5000'/></vlan>", /card on br0: VLAN tag '5000' is not 1-4094/],
  ];
  for (const [name, inner, message] of refusals) {
    it(`refuses ${name} with one line`, () => {
      const { domain, diagnostics } = parse(bridged(`<model type='virtio'/>${inner}`));
      assert.equal(domain, undefined);
      const found = errors(diagnostics);
      assert.equal(found.length, 1, JSON.stringify(diagnostics));
      assert.equal(found[0]!.line, 8);
      assert.match(found[0]!.message, message);
    });
  }

  it("a VLAN trunk is reported, and the card stays untagged", () => {
    const { domain, diagnostics } = parse(
      bridged("<model type='virtio'/><vlan trunk='yes'><tag id='10'/><tag id='20'/></vlan>"),
    );
    assert.equal(domain?.nics[0]?.vlan, undefined);
    assert.match(diagnostics[0]!.message, /a VLAN trunk is not honoured/);
  });
});

describe("libvirt: smaller cases", () => {
  it("defaults to one vCPU with a warning, and says nothing of an equal currentMemory", () => {
    const text = domainXml("<currentMemory unit='MiB'>512</currentMemory>").replace("<vcpu>1</vcpu>", "");
    const { domain, diagnostics } = parseLibvirtDomain(text);
    assert.equal(domain?.vcpus, 1);
    assert.equal(domain?.currentMemoryMb, 512);
    assert.deepEqual(
      diagnostics.map((diagnostic) => [diagnostic.line, diagnostic.severity]),
      [[1, "warning"]],
    );
    assert.match(diagnostics[0]!.message, /no <vcpu>; libvirt's default of 1 vCPU/);
  });

  it("warns when memory is rounded up to whole MiB", () => {
    const text = domainXml().replace("<memory unit='MiB'>512</memory>", "<memory unit='KB'>1000000</memory>");
    const { domain, diagnostics } = parseLibvirtDomain(text);
    assert.equal(domain?.memoryMb, 954);
    assert.match(diagnostics[0]!.message, /1000000 KB is not a whole number of MiB; rounded up to 954 MB/);
  });

  it("infers the bus from the device name, defaults the monitor port, and skips non-TCP hosts", () => {
    const disk =
      "<disk type='network' device='disk'><source protocol='rbd' name='p/i'>" +
      "<host name='mon1'/><host transport='unix' socket='/run/ceph.sock'/><config file='/etc/ceph/x.conf'/>" +
      "</source><target dev='vda'/><shareable/></disk>";
    const { domain, diagnostics } = parseLibvirtDomain(domainXml("", disk));
    assert.deepEqual(domain?.disks[0]?.monitors, ["mon1:6789"]);
    assert.equal(domain?.disks[0]?.targetBus, "virtio");
    assert.deepEqual(
      diagnostics.map((diagnostic) => diagnostic.message.replace(/:.*/, "")),
      ["disk vda", "disk vda", "disk vda"],
    );
    assert.ok(
      diagnostics.some((diagnostic) =>
        /<host transport='unix'> is not a TCP monitor/.test(diagnostic.message),
      ),
    );
    assert.ok(
      diagnostics.some((diagnostic) => /<config file=.*in <source> is not honoured/.test(diagnostic.message)),
    );
    assert.ok(diagnostics.some((diagnostic) => /<shareable> not honoured/.test(diagnostic.message)));
  });

  it("reports non-rbd network disks and pinning", () => {
    const disk =
      "<disk type='network' device='disk'><source protocol='iscsi' name='iqn/1'/><target dev='vdb'/></disk>";
    const extra = "<cputune><vcpupin vcpu='0' cpuset='1'/></cputune>";
    const text = domainXml(extra, disk).replace("<vcpu>1</vcpu>", "<vcpu placement='auto'>1</vcpu>");
    const { domain, diagnostics } = parseLibvirtDomain(text);
    assert.deepEqual(domain?.disks, []);
    assert.deepEqual(
      diagnostics.map((diagnostic) => diagnostic.line),
      [4, 5, 7],
    );
    assert.match(diagnostics[0]!.message, /pinning/);
    assert.match(diagnostics[1]!.message, /<cputune> is not honoured: Haven has no equivalent/);
    assert.match(diagnostics[2]!.message, /disk vdb .*iscsi.* Haven runs disks on Ceph RBD only/);
  });
});
