// The crm shell parser: the seed's configuration item by item, every statement kind, positions of tokens
// and errors (also inside continuation lines), what is refused as unsupported, and recovery after errors.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  colocationPairs,
  orderPairs,
  parseBoolean,
  parseCrm,
  parseDuration,
  parseScore,
  tokenizeCrm,
  type CrmItem,
  type Diagnostic,
} from "../../src/core/import/crm.js";

// The test runner starts in the repository root; dist/ and other output directories do not hold fixtures.
const fixture = (name: string) => readFileSync(join(process.cwd(), "test/fixtures/import", name), "utf8");

/** The items of one kind, typed. */
function itemsOf<K extends CrmItem["kind"]>(items: CrmItem[], kind: K): Array<Extract<CrmItem, { kind: K }>> {
  return items.filter((item): item is Extract<CrmItem, { kind: K }> => item.kind === kind);
}

function only<K extends CrmItem["kind"]>(text: string, kind: K): Extract<CrmItem, { kind: K }> {
  const { items, diagnostics } = parseCrm(text);
  assert.deepEqual(diagnostics, [], `unexpected diagnostics for: ${text}`);
  assert.equal(items.length, 1);
  return itemsOf(items, kind)[0]!;
}

const errors = (diagnostics: Diagnostic[]) =>
  diagnostics.filter((diagnostic) => diagnostic.severity === "error");
const brief = (diagnostics: Diagnostic[]) =>
  diagnostics.map((diagnostic) => `${diagnostic.line}:${diagnostic.column} ${diagnostic.severity}`);

/** Parses one bad statement and returns its single error. */
function errorOf(text: string): Diagnostic {
  const { items, diagnostics } = parseCrm(text);
  assert.equal(items.length, 0, `no item expected for: ${text}`);
  assert.equal(diagnostics.length, 1, `one diagnostic expected for: ${text}: ${JSON.stringify(diagnostics)}`);
  assert.equal(diagnostics[0]!.severity, "error");
  return diagnostics[0]!;
}

describe("crm: the seed configuration", () => {
  const { items, diagnostics } = parseCrm(fixture("seed.crm"));

  it("parses without a finding", () => {
    assert.deepEqual(diagnostics, []);
    assert.deepEqual(
      items.map((item) => item.kind),
      [
        "node",
        "node",
        "node",
        "primitive",
        "primitive",
        "primitive",
        "location-rule",
        "location-rule",
        "location",
        "colocation",
        "order",
        "property",
        "rsc_defaults",
      ],
    );
  });

  it("reads the seed's VirtualDomain primitive exactly, ops at their own lines and columns", () => {
    const guest1 = itemsOf(items, "primitive")[0]!;
    assert.deepEqual(guest1, {
      kind: "primitive",
      id: "guest1",
      agent: { class: "ocf", provider: "heartbeat", type: "VirtualDomain" },
      params: {
        config: "/etc/libvirtcfg/guest1.xml",
        hypervisor: "qemu:///system",
        migration_transport: "tls",
      },
      meta: { "allow-migrate": "true" },
      utilization: {},
      line: 7,
      column: 1,
      ops: [
        { name: "start", attrs: { timeout: "300" }, line: 10, column: 6 },
        { name: "stop", attrs: { timeout: "300" }, line: 10, column: 29 },
        { name: "monitor", attrs: { depth: "0", timeout: "30", interval: "10" }, line: 11, column: 6 },
        { name: "migrate_from", attrs: { timeout: "300" }, line: 12, column: 6 },
        { name: "migrate_to", attrs: { timeout: "300" }, line: 13, column: 6 },
      ],
    });
  });

  it("merges repeated params and meta sections and reads tab-indented continuations", () => {
    const guest2 = itemsOf(items, "primitive")[1]!;
    assert.deepEqual(guest2.params, {
      config: "/etc/libvirtcfg/guest2.xml",
      hypervisor: "qemu:///system",
      migration_transport: "tcp",
    });
    assert.deepEqual(guest2.meta, {
      "allow-migrate": "false",
      "target-role": "Stopped",
      "resource-stickiness": "200",
      priority: "10",
      "failure-timeout": "5min",
    });
    assert.deepEqual(
      guest2.ops.map((op) => [op.name, op.line, op.column]),
      [
        ["start", 19, 5],
        ["stop", 20, 5],
        ["monitor", 21, 5],
      ],
    );
  });

  it("keeps quoted values with spaces and reads a stonith agent without provider", () => {
    const stonith = itemsOf(items, "primitive")[2]!;
    assert.deepEqual(stonith.agent, { class: "stonith", type: "fence_ipmilan" });
    assert.equal(stonith.params.pcmk_host_list, "vmhost1 vmhost2");
  });

  it("reads nodes, constraints and cluster options", () => {
    assert.deepEqual(
      itemsOf(items, "node").map((node) => [node.name, node.attributes, node.line]),
      [
        ["vmhost1", { hw: "vm" }, 2],
        ["vmhost2", { hw: "vm" }, 3],
        ["diskhost1", { hw: "disk" }, 5],
      ],
    );
    const rule = itemsOf(items, "location-rule")[0]!;
    assert.deepEqual(rule, {
      kind: "location-rule",
      id: "guest1-on-vm-hw",
      rsc: "guest1",
      options: {},
      line: 27,
      column: 1,
      rules: [
        {
          score: -1_000_000,
          expression: { join: "and", conditions: [{ attribute: "hw", op: "ne", value: "vm" }] },
          line: 28,
          column: 3,
        },
      ],
    });
    const location = itemsOf(items, "location")[0]!;
    assert.deepEqual([location.rsc, location.score, location.node], ["guest1", 100, "vmhost1"]);
    const colocation = itemsOf(items, "colocation")[0]!;
    assert.deepEqual([colocation.score, colocation.resources], [-1_000_000, ["guest1", "guest2"]]);
    const order = itemsOf(items, "order")[0]!;
    assert.deepEqual([order.orderKind, order.resources], ["Optional", ["guest1", "guest2"]]);
    assert.deepEqual(itemsOf(items, "property")[0]!.values, {
      "stonith-enabled": "true",
      "no-quorum-policy": "stop",
      "cluster-name": "seed",
    });
    assert.deepEqual(itemsOf(items, "rsc_defaults")[0]!.values, {
      "resource-stickiness": "100",
      "migration-threshold": "3",
    });
  });
});

describe("crm: tokens", () => {
  it("joins continuations and keeps every token's line and column", () => {
    const { statements } = tokenizeCrm("primitive a \\\n   ocf:heartbeat:Dummy\\\n\tparams x=1");
    assert.equal(statements.length, 1);
    assert.deepEqual(
      statements[0]!.tokens.map((token) => [token.text, token.line, token.column, token.endColumn]),
      [
        ["primitive", 1, 1, 10],
        ["a", 1, 11, 12],
        ["ocf:heartbeat:Dummy", 2, 4, 23],
        ["params", 3, 2, 8],
        ["x=1", 3, 9, 12],
      ],
    );
  });

  it("strips quotes, keeps escaped quotes and spaces, and marks quoted tokens", () => {
    const { statements } = tokenizeCrm(`x a="b c" 'd "e"' f="g \\"h\\"" "meta"`);
    assert.deepEqual(
      statements[0]!.tokens.map((token) => [token.text, token.quoted]),
      [
        ["x", false],
        ["a=b c", true],
        ['d "e"', true],
        ['f=g "h"', true],
        ["meta", true],
      ],
    );
  });

  it("drops comments and blank lines, keeps #uname, and accepts CRLF and blanks after a backslash", () => {
    const text = "# a comment\r\n\r\nlocation l a \\  \r\n  rule 5: #uname eq n1 # trailing\r\n#x\r\n";
    const { statements, diagnostics } = tokenizeCrm(text);
    assert.deepEqual(diagnostics, []);
    assert.deepEqual(
      statements.map((statement) => statement.tokens.map((token) => token.text)),
      [["location", "l", "a", "rule", "5:", "#uname", "eq", "n1"]],
    );
  });

  it("warns when the file ends inside a continuation and still parses the statement", () => {
    const { items, diagnostics } = parseCrm("node n1 \\\n");
    assert.equal(items.length, 1);
    assert.deepEqual(brief(diagnostics), ["1:1 warning"]);
  });

  it("reports an unterminated quote at the quote, and skips the rest of that statement", () => {
    const { items, diagnostics } = parseCrm(fixture("broken.crm"));
    const quote = diagnostics.find((diagnostic) => diagnostic.message.includes("quote"))!;
    assert.deepEqual([quote.line, quote.column, quote.message], [15, 17, 'unterminated " quote']);
    // The continuation line after the broken one is not mistaken for a statement of its own.
    assert.ok(!diagnostics.some((diagnostic) => diagnostic.line === 16));
    assert.deepEqual(
      items.map((item) => item.kind),
      ["order"],
    );
  });
});

describe("crm: syntax errors carry line and column", () => {
  it("reports each broken statement of a file and carries on", () => {
    const { diagnostics } = parseCrm(fixture("broken.crm"));
    assert.deepEqual(
      diagnostics.map((diagnostic) => [diagnostic.line, diagnostic.column, diagnostic.message]),
      [
        [5, 3, 'primitive guest1: expected an operation name, found "op"'],
        [
          6,
          29,
          "location l-bad-score: score 1000001 is out of range (-INFINITY..INFINITY, INFINITY = 1000000)",
        ],
        [8, 5, 'location l-no-colon: expected "<score>:", found "100"'],
        [9, 31, "colocation c-mixed: expected at least two resources"],
        [10, 1, 'unknown keyword "primitiv"'],
        [13, 15, 'location l-rule: a rule uses one operator: "and" or "or", not both'],
        [15, 17, 'unterminated " quote'],
      ],
    );
    assert.ok(diagnostics.every((diagnostic) => diagnostic.severity === "error"));
  });

  const cases: Array<[string, string, number, number, RegExp]> = [
    ["missing agent", "primitive p1", 1, 13, /expected resource agent/],
    ["bad agent", "primitive p1 ocf:heartbeat:Virtual/Domain", 1, 14, /is not a resource agent/],
    ["ocf without provider", "primitive p1 ocf:VirtualDomain", 1, 14, /needs a provider/],
    ["bad resource id", "primitive 1p ocf:heartbeat:Dummy", 1, 11, /"1p" is not a valid resource id/],
    [
      "bare word in params",
      "primitive p ocf:heartbeat:Dummy \\\n  params a=1 oops",
      2,
      14,
      /expected name=value/,
    ],
    ["op without name", "primitive p ocf:heartbeat:Dummy op", 1, 35, /expected operation name/],
    ["op_params first", "primitive p ocf:heartbeat:Dummy op_params a=1", 1, 33, /must follow an op/],
    ["operations without id", "primitive p ocf:heartbeat:Dummy operations x", 1, 44, /expected \$id=/],
    ["score without colon", "location l p 100 n1", 1, 14, /expected "<score>:"/],
    ["score too low", "location l p -1000001: n1", 1, 14, /out of range/],
    ["score not a number", "location l p 1.5: n1", 1, 14, /not an integer or INFINITY/],
    ["location without node", "location l p 100:", 1, 18, /expected node name/],
    ["bad node name", "location l p 100: -n1", 1, 19, /not a valid node name/],
    ["unknown location option", "location l p foo=bar 100: n1", 1, 14, /unexpected "foo=bar"/],
    ["unknown role", "location l p role=Boss 100: n1", 1, 14, /unknown role "Boss"/],
    ["trailing word after node", "location l p 100: n1 extra", 1, 22, /unexpected "extra"/],
    ["rule without score", "location l p rule", 1, 18, /expected "<score>:"/],
    ["rule with unknown operator", "location l p rule 1: hw is vm", 1, 25, /unknown operator "is"/],
    ["rule with unknown type", "location l p rule 1: hw float:gt 3", 1, 25, /unknown value type "float"/],
    ["rule without value", "location l p \\\n  rule 1: hw eq", 2, 16, /expected value after "eq"/],
    ["rule with bad joiner", "location l p rule 1: hw eq vm xor b", 1, 31, /expected "and", "or" or "rule"/],
    ["rule with bad attribute", "location l p rule 1: h/w eq vm", 1, 22, /is not a node attribute/],
    ["colocation without colon", "colocation c inf a b", 1, 14, /expected "<score>:"/],
    ["colocation with bad role", "colocation c inf: a:Boss b", 1, 19, /unknown role "Boss"/],
    ["colocation unknown option", "colocation c inf: a b color=red", 1, 23, /unknown option "color"/],
    ["order with bad kind", "order o Sometimes: a b", 1, 9, /neither an order kind/],
    ["order with bad action", "order o a:boot b", 1, 9, /unknown action "boot"/],
    [
      "order with bad symmetrical",
      "order o a b symmetrical=maybe",
      1,
      30,
      /symmetrical must be true or false/,
    ],
    ["order with one resource", "order o Mandatory: a", 1, 21, /expected at least two resources/],
    ["empty property", "property", 1, 9, /expected name=value/],
    ["property with a bare word", "property stonith-enabled", 1, 10, /expected name=value/],
    ["node with bad section", "node n1 attrs hw=vm", 1, 9, /expected "attributes" or "utilization"/],
    ["node of unknown type", "node n1:ghost", 1, 6, /unknown node type "ghost"/],
    ["prototype key", "property __proto__=x", 1, 10, /not a valid name/],
  ];
  for (const [name, text, line, column, message] of cases) {
    it(name, () => {
      const error = errorOf(text);
      assert.deepEqual([error.line, error.column], [line, column], error.message);
      assert.match(error.message, message);
    });
  }

  it("does not mistake Object.prototype's names for keywords, kinds or time units", () => {
    const { items, diagnostics } = parseCrm("constructor x\ntoString y\norder o constructor: a b");
    assert.deepEqual(items, []);
    assert.deepEqual(
      diagnostics.map((diagnostic) => diagnostic.message),
      [
        'unknown keyword "constructor"',
        'unknown keyword "toString"',
        'order o: "constructor" is neither an order kind (Mandatory, Optional, Serialize) nor a score',
      ],
    );
    assert.ok(typeof parseDuration("5constructor") === "object");
  });

  it("never throws, whatever the input", () => {
    const inputs = [
      "\\",
      '"',
      "'",
      "#",
      ":",
      "=",
      "primitive",
      "location l",
      "order",
      "\u0000\u00ff",
      "a\\\\\n",
    ];
    for (const input of inputs) assert.doesNotThrow(() => parseCrm(input));
    const garbage = Array.from({ length: 200 }, (_, index) =>
      String.fromCharCode(32 + ((index * 37) % 95)),
    ).join("");
    assert.doesNotThrow(() => parseCrm(`location ${garbage}\nprimitive ${garbage}\norder ${garbage}`));
  });

  it("warns on a name given twice and keeps the later value", () => {
    const { items, diagnostics } = parseCrm("primitive p ocf:heartbeat:Dummy params a=1 \\\n  params a=2");
    assert.equal(itemsOf(items, "primitive")[0]!.params.a, "2");
    assert.deepEqual(brief(diagnostics), ["2:10 warning"]);
    assert.match(diagnostics[0]!.message, /"a" is given twice/);
  });
});

describe("crm: statement forms", () => {
  it("reads nodes in crm's other spellings", () => {
    assert.equal(only("node 1: vmhost1 attributes hw=vm", "node").name, "vmhost1");
    assert.equal(only('node $id="1234" vmhost2', "node").name, "vmhost2");
    assert.equal(only("node vmhost3:member", "node").name, "vmhost3");
    const node = only(
      'node n4 description="rack 4" attributes $id=n4-attrs hw=vm utilization memory=64',
      "node",
    );
    assert.deepEqual([node.attributes, node.utilization], [{ hw: "vm" }, { memory: "64" }]);
  });

  it("reads a primitive's parameters before any section, op_params, and $id", () => {
    const primitive = only(
      "primitive p VirtualDomain description=x config=/a.xml meta $id=m target-role=Started " +
        "op monitor interval=10 op_params OCF_CHECK_LEVEL=10 operations $id=p-ops",
      "primitive",
    );
    assert.deepEqual(primitive.agent, { class: "ocf", provider: "heartbeat", type: "VirtualDomain" });
    assert.deepEqual(primitive.params, { config: "/a.xml" });
    assert.deepEqual(primitive.meta, { "target-role": "Started" });
    assert.deepEqual(primitive.ops[0]!.attrs, { interval: "10", OCF_CHECK_LEVEL: "10" });
  });

  it("reads every score spelling", () => {
    const scores = [
      "0",
      "+5",
      "-5",
      "1000000",
      "-1000000",
      "inf",
      "+inf",
      "-inf",
      "INFINITY",
      "+INFINITY",
      "-INFINITY",
      "Inf",
    ];
    const expected = [0, 5, -5, 1e6, -1e6, 1e6, 1e6, -1e6, 1e6, 1e6, -1e6, 1e6];
    assert.deepEqual(
      scores.map((score) => only(`location l p ${score}: n1`, "location").score),
      expected,
    );
    assert.deepEqual(parseScore("1000001"), {
      error: "score 1000001 is out of range (-INFINITY..INFINITY, INFINITY = 1000000)",
    });
    assert.equal(parseScore("-0"), 0);
    assert.ok(Object.is(parseScore("-0"), 0));
  });

  it("reads location options, before or (old crm) after the node", () => {
    const before = only("location l p role=Started resource-discovery=never -inf: n1", "location");
    assert.deepEqual(before.options, { role: "Started", "resource-discovery": "never" });
    assert.deepEqual(only("location l p 10: n1 role=Stopped", "location").options, { role: "Stopped" });
  });

  it("reads rules: and, or, defined, not_defined, #uname, typed operators, several rules, $id and $role", () => {
    const location = only(
      "location l p \\\n  rule $id=r1 50: #uname eq node1 and defined pingd \\\n" +
        '  rule $role=Started -inf: not_defined pingd or pingd number:lte 0 or name eq "a b"',
      "location-rule",
    );
    assert.deepEqual(location.rules, [
      {
        score: 50,
        expression: {
          join: "and",
          conditions: [
            { attribute: "#uname", op: "eq", value: "node1" },
            { attribute: "pingd", op: "defined" },
          ],
        },
        line: 2,
        column: 3,
      },
      {
        score: -1_000_000,
        role: "Started",
        expression: {
          join: "or",
          conditions: [
            { attribute: "pingd", op: "not_defined" },
            { attribute: "pingd", op: "lte", value: "0", type: "number" },
            { attribute: "name", op: "eq", value: "a b" },
          ],
        },
        line: 3,
        column: 3,
      },
    ]);
    for (const op of ["eq", "ne", "lt", "gt", "lte", "gte"]) {
      const rule = only(`location l p rule 1: a ${op} 2`, "location-rule").rules[0]!;
      assert.deepEqual(rule.expression.conditions, [{ attribute: "a", op, value: "2" }]);
    }
    const typed = only("location l p rule 1: v version:gt 1.2 and s string:eq x", "location-rule").rules[0]!;
    assert.deepEqual(
      typed.expression.conditions.map((condition) => ("type" in condition ? condition.type : undefined)),
      ["version", "string"],
    );
  });

  it("reads colocations with roles and node-attribute; documents the direction of each pair", () => {
    const two = only("colocation c inf: a:Started b node-attribute=rack", "colocation");
    assert.deepEqual(
      [two.resources, two.roles, two.options],
      [["a", "b"], ["Started", undefined], { "node-attribute": "rack" }],
    );
    assert.equal(only("collocation c -100: a b", "colocation").score, -100);
    // Two resources: the first is placed relative to the second (rsc with with-rsc).
    assert.deepEqual(colocationPairs(["a", "b"]), [{ rsc: "a", withRsc: "b" }]);
    // More: crm writes a sequential set, each member placed relative to the one before it.
    assert.deepEqual(colocationPairs(["a", "b", "c"]), [
      { rsc: "b", withRsc: "a" },
      { rsc: "c", withRsc: "b" },
    ]);
  });

  it("reads orders: kinds, deprecated scores, the default kind, actions and symmetrical", () => {
    const kinds: Array<[string, string, number | undefined]> = [
      ["Mandatory:", "Mandatory", undefined],
      ["optional:", "Optional", undefined],
      ["Serialize:", "Serialize", undefined],
      ["advisory:", "Optional", undefined],
      ["inf:", "Mandatory", 1e6],
      ["100:", "Mandatory", 100],
      ["0:", "Optional", 0],
      ["", "Mandatory", undefined],
    ];
    for (const [written, kind, score] of kinds) {
      const order = only(`order o ${written} a b`, "order");
      assert.deepEqual([order.orderKind, order.score], [kind, score], written);
    }
    const order = only("order o Mandatory: a:start b c:stop symmetrical=false", "order");
    assert.deepEqual(
      [order.resources, order.actions, order.symmetrical],
      [["a", "b", "c"], ["start", undefined, "stop"], false],
    );
    assert.deepEqual(orderPairs(["a", "b", "c"]), [
      { first: "a", then: "b" },
      { first: "b", then: "c" },
    ]);
  });

  it("reads property, rsc_defaults and op_defaults with a set name or $id", () => {
    assert.deepEqual(only("property cib-bootstrap-options: stonith-enabled=false", "property").values, {
      "stonith-enabled": "false",
    });
    assert.deepEqual(only("rsc_defaults $id=rsc-options resource-stickiness=100", "rsc_defaults").values, {
      "resource-stickiness": "100",
    });
    assert.deepEqual(only("op_defaults timeout=60s record-pending=true", "op_defaults").values, {
      timeout: "60s",
      "record-pending": "true",
    });
  });
});

describe("crm: unsupported constructs are items with a warning, not crashes", () => {
  const cases: Array<[string, string, string | undefined, number, number, RegExp]> = [
    ["group g1 a b", "group", "g1", 1, 1, /groups are not supported/],
    ["clone cl-fence p-stonith", "clone", "cl-fence", 1, 1, /clones/],
    ["ms ms-drbd drbd meta notify=true", "ms", "ms-drbd", 1, 1, /promotable/],
    ["rsc_template vm-tpl ocf:heartbeat:VirtualDomain", "rsc_template", "vm-tpl", 1, 1, /templates/],
    ["fencing_topology vmhost1: p-stonith", "fencing_topology", undefined, 1, 1, /blocklisting/],
    ["primitive p @vm-tpl config=/a.xml", "primitive", "p", 1, 13, /templates/],
    ["node n1:remote", "node", undefined, 1, 6, /remote nodes/],
    ["location l { a b } 100: n1", "location", "l", 1, 12, /resource sets/],
    ["location l /guest.*/ 100: n1", "location", "l", 1, 12, /patterns/],
    ["location l a \\\n  rule 1: date gt 2024-01-01", "location", "l", 2, 11, /date expressions/],
    ["location l a rule pingd: defined pingd", "location", "l", 1, 19, /score-attribute/],
    ["location l a rule $id-ref=r1", "location", "l", 1, 19, /shared rules/],
    ["colocation c inf: a ( b c )", "colocation", "c", 1, 21, /resource sets/],
    ["colocation c inf: a b sequential=false", "colocation", "c", 1, 23, /resource sets/],
    ["order o Mandatory: a [ b c ]", "order", "o", 1, 22, /resource sets/],
    [
      "primitive p ocf:heartbeat:Dummy params 2: rule #uname eq n1 a=1",
      "primitive",
      "p",
      1,
      40,
      /rule-based params/,
    ],
    ["primitive p ocf:heartbeat:Dummy meta $id-ref=other", "primitive", "p", 1, 38, /shared attribute sets/],
    [
      "primitive p ocf:heartbeat:Dummy operations $id-ref=ops",
      "primitive",
      "p",
      1,
      44,
      /shared operation sets/,
    ],
  ];
  for (const [text, keyword, id, line, column, reason] of cases) {
    it(text.split("\n")[0], () => {
      const { items, diagnostics } = parseCrm(text);
      assert.equal(items.length, 1);
      const item = items[0]!;
      assert.equal(item.kind, "unsupported");
      if (item.kind !== "unsupported") return;
      assert.deepEqual([item.keyword, item.id, item.line, item.column], [keyword, id, 1, 1]);
      assert.match(item.reason, reason);
      assert.equal(errors(diagnostics).length, 0);
      assert.deepEqual(brief(diagnostics), [`${line}:${column} warning`]);
      assert.match(diagnostics[0]!.message, /not imported$/);
    });
  }
});

describe("crm: value syntaxes", () => {
  it("reads Pacemaker's time values in seconds", () => {
    const cases: Array<[string, number]> = [
      ["300", 300],
      ["300s", 300],
      ["20sec", 20],
      ["5min", 300],
      ["5m", 300],
      ["1h", 3600],
      ["2hr", 7200],
      ["30000ms", 30],
      ["1500msec", 1.5],
      ["2000000us", 2],
      ["PT5M", 300],
      ["PT1H30S", 3630],
    ];
    for (const [text, seconds] of cases) assert.equal(parseDuration(text), seconds, text);
    for (const bad of ["", "5 minutes", "-3", "1d", "PT", "ten"]) {
      assert.ok(typeof parseDuration(bad) === "object", bad);
    }
  });

  it("reads Pacemaker's booleans", () => {
    for (const yes of ["true", "TRUE", "yes", "on", "1", "y"]) assert.equal(parseBoolean(yes), true, yes);
    for (const no of ["false", "no", "off", "0", "n"]) assert.equal(parseBoolean(no), false, no);
    assert.equal(parseBoolean("maybe"), null);
  });
});
