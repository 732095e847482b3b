// The scheduler's building blocks: Pacemaker score arithmetic, rules over node attributes, and the
// schemas that read constraints as users write them.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { evaluateRule, formatRule, parseRule, type RuleExpression } from "../../src/core/scheduler/rules.js";
import {
  addScores,
  formatScore,
  INFINITY,
  isMandatory,
  MINUS_INFINITY,
  parseScore,
} from "../../src/core/scheduler/scores.js";
import { constraintSchema, placementPolicySchema, scoreSchema } from "../../src/core/scheduler/types.js";

const score = (input: string | number) => {
  const parsed = parseScore(input);
  assert.ok(parsed.ok, `expected ${input} to parse`);
  return parsed.score;
};
const scoreError = (input: string | number) => {
  const parsed = parseScore(input);
  assert.ok(!parsed.ok, `expected ${input} to be rejected`);
  return parsed.error;
};

describe("score parsing", () => {
  test("integers, with sign and spaces", () => {
    assert.equal(score("100"), 100);
    assert.equal(score("+25"), 25);
    assert.equal(score(" -7 "), -7);
    assert.equal(score("0"), 0);
    assert.equal(score("-0"), 0);
    assert.equal(score(42), 42);
  });

  test("INFINITY in its spellings, case-insensitive", () => {
    for (const text of ["INFINITY", "+INFINITY", "infinity", "inf", "+inf", "Inf"])
      assert.equal(score(text), INFINITY);
    for (const text of ["-INFINITY", "-infinity", "-inf", "-INF"]) assert.equal(score(text), MINUS_INFINITY);
    assert.equal(INFINITY, 1_000_000);
  });

  test("the range ends are scores; beyond them is an error, not a silent clamp", () => {
    assert.equal(score(1_000_000), INFINITY);
    assert.equal(score("-1000000"), MINUS_INFINITY);
    assert.match(scoreError(1_000_001), /out of range/);
    assert.match(scoreError("-2000000"), /out of range/);
  });

  test("anything else is rejected with the input in the message", () => {
    assert.match(scoreError("1.5"), /"1.5" is not an integer/);
    assert.match(scoreError(1.5), /not an integer/);
    assert.match(scoreError("high"), /"high"/);
    assert.match(scoreError(""), /not an integer/);
    assert.match(scoreError(Number.NaN), /not an integer/);
    assert.match(scoreError("1e3"), /not an integer/);
  });
});

describe("score arithmetic (Pacemaker's)", () => {
  test("-INFINITY wins over everything, even +INFINITY", () => {
    assert.equal(addScores(MINUS_INFINITY, INFINITY), MINUS_INFINITY);
    assert.equal(addScores(INFINITY, MINUS_INFINITY), MINUS_INFINITY);
    assert.equal(addScores(MINUS_INFINITY, 500), MINUS_INFINITY);
  });

  test("+INFINITY absorbs finite scores", () => {
    assert.equal(addScores(INFINITY, -999_999), INFINITY);
    assert.equal(addScores(5, INFINITY), INFINITY);
  });

  test("finite sums saturate at the range ends", () => {
    assert.equal(addScores(600_000, 600_000), INFINITY);
    assert.equal(addScores(-600_000, -600_000), MINUS_INFINITY);
    assert.equal(addScores(100, -250), -150);
  });

  test("formatting and mandatory scores", () => {
    assert.equal(formatScore(INFINITY), "INFINITY");
    assert.equal(formatScore(MINUS_INFINITY), "-INFINITY");
    assert.equal(formatScore(-5), "-5");
    assert.ok(isMandatory(INFINITY) && isMandatory(MINUS_INFINITY));
    assert.ok(!isMandatory(999_999) && !isMandatory(0));
  });
});

const onNode = (name: string, attributes: Record<string, string> = {}) => ({ name, attributes });
const holds = (rule: string, node = onNode("node1", { hw: "vm", cores: "16", zone: "b" })) => {
  const parsed = parseRule(rule);
  assert.ok(parsed.ok, parsed.ok ? "" : parsed.error);
  return evaluateRule(parsed.rule, node);
};
const ruleError = (rule: string) => {
  const parsed = parseRule(rule);
  assert.ok(!parsed.ok, `expected "${rule}" to be rejected`);
  return parsed.error;
};

describe("rules over node attributes", () => {
  test("eq and ne compare text", () => {
    assert.ok(holds("hw eq vm"));
    assert.ok(!holds("hw eq gpu"));
    assert.ok(holds("hw ne gpu"));
    assert.ok(!holds("cores eq 16.0"), "eq compares text, as Pacemaker's default type does");
  });

  test("lt, gt, lte, gte compare numbers when both sides are numbers, text otherwise", () => {
    assert.ok(holds("cores gt 9"), "16 > 9 numerically (as text it would be smaller)");
    assert.ok(holds("cores gte 16") && holds("cores lte 16") && !holds("cores lt 16"));
    assert.ok(holds("zone gt a") && holds("zone lt c"));
  });

  test("text compares without regard to case, as Pacemaker compares it", () => {
    assert.ok(holds("hw eq VM"));
    assert.ok(!holds("hw ne Vm"));
    assert.ok(holds("#uname eq NODE1"));
    assert.ok(holds("zone gt A") && holds("zone lt C"));
  });

  test("a comparison may name Pacemaker's type: string, integer, number or version", () => {
    const node = onNode("n", { ver: "2.10", cores: "16", ratio: "0.5" });
    assert.ok(holds("ver version:gt 2.9", node), "2.10 is a later version than 2.9");
    assert.ok(!holds("ver gt 2.9", node), "without a type, a value with a dot compares as a number");
    assert.ok(holds("cores number:eq 16.0", node) && !holds("cores eq 16.0", node));
    assert.ok(holds("cores string:lt 9", node), "as text, 16 sorts before 9");
    assert.ok(holds("ratio lt 1", node) && holds("cores integer:gte 16", node));
    assert.ok(holds("cores gt 9kg", node), "the leading number counts, as strtoll reads it");
    assert.match(ruleError("hw bool:eq x"), /"bool" is not a value type/);
  });

  test("#uname is the node name", () => {
    assert.ok(holds("#uname eq node1"));
    assert.ok(!holds("#uname ne node1"));
  });

  test("a missing attribute satisfies only ne and not_defined", () => {
    assert.ok(holds("gpu ne yes"));
    assert.ok(!holds("gpu eq yes"));
    assert.ok(!holds("gpu lt 5") && !holds("gpu gte 5"));
    assert.ok(holds("not_defined gpu") && !holds("defined gpu"));
    assert.ok(holds("defined hw") && !holds("not_defined hw"));
  });

  test("inherited object properties are not attributes", () => {
    assert.ok(holds("not_defined constructor"));
    assert.ok(holds("toString ne x"));
  });

  test("and binds tighter than or; parentheses group", () => {
    assert.ok(holds("hw eq gpu or hw eq vm and zone eq b"));
    assert.ok(!holds("(hw eq gpu or hw eq vm) and zone eq a"));
    assert.ok(holds("hw eq vm and (zone eq a or zone eq b)"));
  });

  test("quoted values may hold spaces and keywords", () => {
    const node = onNode("n", { rack: "row 2", role: "and" });
    assert.ok(holds('rack eq "row 2"', node));
    assert.ok(holds('role eq "and"', node));
  });

  test("syntax errors are reported with the rule", () => {
    assert.match(ruleError(""), /expected an expression/);
    assert.match(ruleError("hw eq"), /expected a value/);
    assert.match(ruleError("hw is vm"), /"is" is not a comparison/);
    assert.match(ruleError("(hw eq vm"), /expected "\)"/);
    assert.match(ruleError("hw eq vm)"), /unexpected "\)"/);
    assert.match(ruleError("and hw eq vm"), /unexpected "and"/);
    assert.match(ruleError("hw eq vm or"), /expected an expression/);
    assert.match(ruleError('hw eq "vm'), /cannot read/);
    assert.match(ruleError("defined"), /expected an attribute name/);
  });

  test("formatting gives a rule that parses to the same tree", () => {
    for (const text of [
      "hw eq vm",
      "a eq 1 or b eq 2 and c eq 3",
      "(a eq 1 or b eq 2) and not_defined c",
      'r eq "row 2"',
      "v version:gte 2.1 or c integer:lt 8",
    ]) {
      const first = parseRule(text) as { ok: true; rule: RuleExpression };
      const again = parseRule(formatRule(first.rule)) as { ok: true; rule: RuleExpression };
      assert.deepEqual(again.rule, first.rule);
    }
  });
});

describe("constraint schemas", () => {
  test("scores may be written as text", () => {
    assert.equal(scoreSchema.parse("-INFINITY"), MINUS_INFINITY);
    assert.equal(scoreSchema.parse(150), 150);
    const error = scoreSchema.safeParse("2000000");
    assert.ok(!error.success);
    assert.match(error.error.issues[0]!.message, /out of range/);
  });

  test("each kind of constraint parses", () => {
    const parsed = [
      { type: "location", id: "l1", vm: "web", node: "node1", score: "INFINITY" },
      { type: "location-rule", id: "l2", vm: "web", rule: "hw eq vm", score: -100 },
      { type: "colocation", id: "c1", vm: "web", withVm: "db", score: "-inf" },
      { type: "colocation-set", id: "s1", vms: ["a", "b", "c"], score: -500 },
      { type: "order", id: "o1", first: "db", then: "web" },
    ].map((input) => constraintSchema.parse(input));
    assert.equal(parsed[0]!.type === "location" && parsed[0]!.score, INFINITY);
    assert.equal(parsed[2]!.type === "colocation" && parsed[2]!.score, MINUS_INFINITY);
    assert.equal(parsed[4]!.type === "order" && parsed[4]!.kind, "mandatory", "Pacemaker's default kind");
  });

  test("bad rules, names and small sets are rejected", () => {
    const rule = constraintSchema.safeParse({
      type: "location-rule",
      id: "r",
      vm: "v",
      rule: "hw eq",
      score: 1,
    });
    assert.ok(!rule.success);
    assert.match(rule.error.issues[0]!.message, /expected a value/);
    assert.ok(
      !constraintSchema.safeParse({ type: "location", id: "x", vm: "../etc", node: "n", score: 1 }).success,
    );
    assert.ok(!constraintSchema.safeParse({ type: "colocation-set", id: "s", vms: ["a"], score: 1 }).success);
    assert.ok(!constraintSchema.safeParse({ type: "affinity", id: "s" }).success);
  });

  test("the placement policy has Pacemaker's defaults", () => {
    assert.deepEqual(placementPolicySchema.parse({}), {
      allowMigrate: true,
      stickiness: 0,
      priority: 0,
      migrationThreshold: INFINITY,
      failureTimeoutS: 0,
    });
    assert.equal(placementPolicySchema.parse({ stickiness: "INFINITY" }).stickiness, INFINITY);
  });
});
