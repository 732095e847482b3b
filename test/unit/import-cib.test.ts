// Pacemaker's CIB XML read into the same items as crm (core/import/cib.ts): the guide's configuration exported
// as CIB imports exactly as its crm form does, every element maps as Pacemaker reads it (sets, nested rules,
// typed expressions, properties), what Haven does not import is reported at its element's line and column.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { describe, it } from "node:test";
import { parseCib } from "../../src/core/import/cib.js";
import { parseCrm, type Diagnostic } from "../../src/core/import/crm.js";
import { parseLibvirtDomain } from "../../src/core/import/libvirt.js";
import { translateCrm, type DomainLoader, type ImportPlan } from "../../src/core/import/translate.js";

const fixture = (name: string) => readFileSync(join(process.cwd(), "test/fixtures/import", name), "utf8");
const fixtureDomains: DomainLoader = (path) => parseLibvirtDomain(fixture(basename(path)));
const cleanDomains: DomainLoader = (path) =>
  parseLibvirtDomain(
    `<domain type='kvm'><name>${basename(path, ".xml")}</name><memory unit='MiB'>512</memory><vcpu>1</vcpu>` +
      `<os><type>hvm</type><kernel>/boot/vmlinuz</kernel></os><devices><disk type='network' device='disk'>` +
      `<source protocol='rbd' name='rbd/${basename(path, ".xml")}-disk'/><target dev='vda' bus='virtio'/></disk>` +
      `</devices></domain>`,
  );

const primitive = (id: string) =>
  `<primitive id="${id}" class="ocf" provider="heartbeat" type="VirtualDomain"><instance_attributes id="${id}-ia">` +
  `<nvpair id="${id}-config" name="config" value="/etc/libvirtcfg/${id}.xml"/></instance_attributes></primitive>`;
const cib = (constraints: string, extra = "") =>
  `<cib>\n<configuration>\n<crm_config/>\n<nodes>\n<node id="1" uname="n1"/>\n<node id="2" uname="n2"/>\n</nodes>\n` +
  `<resources>\n${["a", "b", "c"].map(primitive).join("\n")}\n</resources>\n` +
  `<constraints>\n${constraints}\n</constraints>\n${extra}</configuration>\n</cib>\n`;
const plan = (xml: string, loader = cleanDomains): ImportPlan => translateCrm(parseCib(xml), loader);

const withoutLines = <T extends { line: number }>(items: T[]) =>
  items.map(({ line: _line, ...rest }) => rest);
const messages = (report: Diagnostic[]) =>
  report.map((diagnostic) => `${diagnostic.severity}: ${diagnostic.message}`);

describe("import cib: the guide's configuration", () => {
  const fromCrm = translateCrm(parseCrm(fixture("seed.crm")), fixtureDomains);
  const fromCib = translateCrm(parseCib(fixture("seed.xml")), fixtureDomains);

  it("imports the same VMs, constraints, nodes and properties as its crm form", () => {
    assert.deepEqual(withoutLines(fromCib.vms), withoutLines(fromCrm.vms));
    assert.deepEqual(withoutLines(fromCib.constraints), withoutLines(fromCrm.constraints));
    assert.deepEqual(fromCib.nodes, fromCrm.nodes);
    const {
      "dc-version": _version,
      "cluster-infrastructure": _infrastructure,
      "have-watchdog": _watchdog,
      ...rest
    } = fromCib.properties;
    assert.deepEqual(rest, fromCrm.properties);
  });

  it("reports the same findings, each at its element's line and column", () => {
    assert.deepEqual(messages(fromCib.report).sort(), messages(fromCrm.report).sort());
    const stonith = fromCib.report.find((diagnostic) => /p-stonith/.test(diagnostic.message))!;
    assert.deepEqual([stonith.line, stonith.column, stonith.severity], [75, 7, "warning"]);
    const guest2 = fromCib.report.find((diagnostic) => /guest2: the domain in/.test(diagnostic.message));
    assert.deepEqual([guest2?.line, guest2?.column], [52, 7], "the primitive's element");
  });
});

describe("import cib: elements", () => {
  it("reads a location with a node, and one with rules (nested, typed, any case of boolean-op)", () => {
    const result = plan(
      cib(
        `<rsc_location id="l1" rsc="a" node="n1" score="-INFINITY"/>\n` +
          `<rsc_location id="l2" rsc="b"><rule id="r" score="50" boolean-op="OR">` +
          `<expression id="e1" attribute="ver" operation="gte" value="2.10" type="version"/>` +
          `<rule id="r2" boolean-op="and"><expression id="e2" attribute="hw" operation="eq" value="vm"/>` +
          `<expression id="e3" attribute="gpu" operation="not_defined"/></rule></rule></rsc_location>`,
      ),
    );
    assert.deepEqual(withoutLines(result.constraints), [
      { type: "location", id: "l1", vm: "a", node: "n1", score: -1_000_000 },
      {
        type: "location-rule",
        id: "l2",
        vm: "b",
        rule: "ver version:gte 2.10 or (hw eq vm and not_defined gpu)",
        score: 50,
      },
    ]);
  });

  it("reads colocation sets as Pacemaker does: positive a chain, negative apart from every member before", () => {
    const set = (id: string, score: string, members: string[]) =>
      `<rsc_colocation id="${id}" score="${score}"><resource_set id="${id}-set">` +
      members.map((member) => `<resource_ref id="${member}"/>`).join("") +
      `</resource_set></rsc_colocation>`;
    const result = plan(
      cib(
        [
          set("chain", "INFINITY", ["a", "b", "c"]),
          set("apart", "-500", ["a", "b", "c"]),
          set("two", "100", ["a", "b"]),
        ].join("\n"),
      ),
    );
    assert.deepEqual(withoutLines(result.constraints), [
      { type: "colocation", id: "chain-1", vm: "b", withVm: "a", score: 1_000_000 },
      { type: "colocation", id: "chain-2", vm: "c", withVm: "b", score: 1_000_000 },
      { type: "colocation-set", id: "apart", vms: ["a", "b", "c"], score: -500 },
      { type: "colocation", id: "two", vm: "b", withVm: "a", score: 100 },
    ]);
  });

  it("reads orders with a kind, a score or a set, and the placement-strategy property", () => {
    const result = plan(
      cib(
        `<rsc_order id="o1" first="a" then="b"/>\n<rsc_order id="o2" first="b" then="c" score="0"/>\n` +
          `<rsc_order id="o3" kind="Mandatory"><resource_set id="s"><resource_ref id="a"/><resource_ref id="c"/></resource_set></rsc_order>`,
      ).replace(
        "<crm_config/>",
        `<crm_config><cluster_property_set id="o"><nvpair id="o-ps" name="placement-strategy" value="minimal"/></cluster_property_set></crm_config>`,
      ),
    );
    assert.deepEqual(withoutLines(result.constraints), [
      { type: "order", id: "o1", first: "a", then: "b", kind: "mandatory" },
      { type: "order", id: "o2", first: "b", then: "c", kind: "optional" },
      { type: "order", id: "o3", first: "a", then: "c", kind: "mandatory" },
    ]);
    assert.deepEqual(result.placementStrategy, { strategy: "minimal", line: 3 });
  });

  it("reports what it does not import at the element, and imports the rest", () => {
    const result = plan(
      cib(
        `<rsc_location id="l1" rsc="a"><rule id="r" score="5"><date_expression id="d" operation="in_range" start="2025-01-01"/></rule></rsc_location>\n` +
          `<rsc_colocation id="c1" score="10"><resource_set id="s1"><resource_ref id="a"/></resource_set><resource_set id="s2"><resource_ref id="b"/></resource_set></rsc_colocation>\n` +
          `<rsc_ticket id="t" ticket="x" rsc="a"/>\n<rsc_location id="l2" rsc="b" node="n2" score="7"/>`,
        `<tags/>\n`,
      ).replace(
        "</resources>",
        `<group id="g"><primitive id="x" class="ocf" provider="heartbeat" type="Dummy"/></group>\n</resources>`,
      ),
    );
    assert.deepEqual(
      result.report.map((diagnostic) => [
        diagnostic.line,
        diagnostic.severity,
        diagnostic.message.replace(/:.*/, ""),
      ]),
      [
        [12, "warning", "group g"],
        [15, "warning", "rsc_location l1"],
        [16, "warning", "rsc_colocation c1"],
        [17, "warning", "rsc_ticket t"],
        [20, "warning", "tags"],
      ],
    );
    assert.match(result.report[1]!.message, /date expressions in rules are not supported; not imported/);
    assert.deepEqual(withoutLines(result.constraints), [
      { type: "location", id: "l2", vm: "b", node: "n2", score: 7 },
    ]);
  });

  it("names XML errors and a document that is not a CIB with line and column", () => {
    assert.deepEqual(
      parseCib("<cib>\n  <configuration>\n</cib>").diagnostics.map((d) => [d.line, d.severity]),
      [[3, "error"]],
    );
    const notCib = parseCib("<domain/>").diagnostics;
    assert.deepEqual(
      notCib.map((d) => [d.line, d.column, d.message]),
      [[1, 1, "<domain> is not a CIB: expected <cib> or <configuration>"]],
    );
  });
});
