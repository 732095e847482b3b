// Scenario files: one statement per line, `#` starts a comment. See docs/simulator.md for the language.
//   cluster nodes=3 ttl=5 margin=1.5s memory=4096 vcpus=4
//   node node3 memory=1024
//   vm web memory=512 restart-limit=2 relocate-limit=1 priority=10 stickiness=100 ha=on migrate=live
//   constraint web-on-node2 location web node2 200
//   at 10s power-off node1
//   run until 60s
// Errors carry the line and column of the offending word.
import { NAME_PATTERN, type MigrationDefaults } from "../core/model.js";
import { constraintSchema, type Constraint } from "../core/scheduler/types.js";
import { LEADER_FAULTS, parseCommand, type StepParser } from "./scenario-commands.js";
import {
  duration,
  formatTime,
  isOption,
  Options,
  ScenarioError,
  tokenize,
  valueToken,
  type Token,
} from "./scenario-words.js";
import { DEFAULT_TIMING, type FenceBehaviour, type VmTiming } from "./world.js";

export { formatTime, ScenarioError };

export interface ScenarioNode {
  name: string;
  memoryMb: number;
  vcpus: number;
}

export interface ScenarioVm {
  name: string;
  memoryMb: number;
  vcpus: number;
  disks: number;
  restartLimit: number;
  relocateLimit: number;
  failureTimeoutSeconds: number;
  priority: number;
  stickiness: number;
  ha: boolean;
  allowMigrate: boolean;
  /** A canary guest: it writes and acknowledges records (the lost-write oracle). */
  canary: boolean;
  initial: InitialState;
  timing: VmTiming;
}

/** The constraints a scenario can state: those of `haven constraint`, and start order. */
export type ScenarioConstraint = Exclude<Constraint, { type: "colocation-set" }>;

export type PolicyChange =
  | {
      key: "restartLimit" | "relocateLimit" | "failureTimeoutSeconds" | "priority" | "stickiness";
      value: number;
    }
  | { key: "ha" | "allowMigrate"; value: boolean };

export type SimCommand =
  | { type: "start" | "stop"; vm: string }
  | { type: "set"; vm: string; changes: PolicyChange[] }
  | { type: "crash"; vm: string; node?: string }
  | { type: "fail-start" | "fail-stop"; vm: string; times: number; node?: string; message: string }
  /** `node` may be "leader": the node that leads when the step runs. */
  | { type: NodeFault; node: string }
  | { type: "reboot"; node: string; downMs: number }
  | { type: "etcd-kill" | "etcd-start"; member: string }
  | { type: "etcd-slow"; node: string | null; latencyMs: number }
  | { type: "quorum-loss" | "quorum-back" }
  | { type: "fence-agent"; node: string; behaviour: FenceBehaviour | null; timeoutSeconds: number }
  | { type: "fence-result"; node: string; behaviour: FenceBehaviour }
  | { type: "storage-fence"; ok: boolean; message: string }
  | { type: "migrate"; vm: string; to?: string; timeoutSeconds?: number; transport?: "tls" | "tcp" }
  | { type: "migration-cancel" | "kill-target" | "kill-source"; vm: string }
  | { type: "migration-fail"; vm: string; times: number; message: string }
  | { type: "show"; vm: string }
  | { type: "maintenance"; node: string; on: boolean }
  | { type: "migration-defaults"; changes: Partial<MigrationDefaults> }
  | { type: "constraint"; constraint: ScenarioConstraint }
  | { type: "constraint-delete"; id: string }
  | { type: "attribute"; node: string; attributes: Record<string, string> };

/** Faults of one node; those that take a node down may name "leader" instead. */
export type NodeFault =
  | "power-off"
  | "power-on"
  | "net-cut"
  | "net-restore"
  | "freeze"
  | "thaw"
  | "shutdown"
  | "havend-kill"
  | "havend-start";

/** Where a VM is when the run begins. */
export type InitialState = { state: "stopped" | "started" } | { state: "running" | "error"; node: string };

export interface ScenarioStep {
  /** Simulated ms. */
  at: number;
  line: number;
  /** The command as written, for the log. */
  text: string;
  command: SimCommand;
}

export interface Scenario {
  ttlSeconds: number;
  marginMs: number;
  /** etcd members (quorum needs more than half of them). */
  etcdMembers: number;
  nodes: ScenarioNode[];
  vms: ScenarioVm[];
  /**
   * Placement constraints and node attributes when the run begins, as `haven constraint` and `haven import
   * crm` record them; steps may change them later.
   */
  rules: { constraints: ScenarioConstraint[]; nodeAttributes: Map<string, Record<string, string>> };
  steps: ScenarioStep[];
  until: number;
}

export function parseScenario(source: string): Scenario {
  return new Parser().parse(source);
}

class Parser implements StepParser {
  private readonly scenario: Scenario = {
    ttlSeconds: 5,
    marginMs: 1500,
    etcdMembers: 3,
    nodes: [],
    vms: [],
    rules: { constraints: [], nodeAttributes: new Map() },
    steps: [],
    until: -1,
  };
  private clusterSeen = false;
  line = 0;

  get etcdMembers(): number {
    return this.scenario.etcdMembers;
  }

  parse(source: string): Scenario {
    const lines = source.split("\n");
    for (const [i, text] of lines.entries()) {
      this.line = i + 1;
      const tokens = tokenize(text, this.line);
      if (tokens.length === 0) continue;
      if (this.scenario.until >= 0) throw this.error(tokens[0]!, "nothing may follow 'run until'");
      this.statement(tokens);
    }
    const last = source.endsWith("\n") ? lines.length - 1 : lines.length;
    if (this.scenario.until < 0)
      throw new ScenarioError(Math.max(last, 1), 1, "missing 'run until TIME' at the end");
    return this.scenario;
  }

  error(token: Token, reason: string): ScenarioError {
    return new ScenarioError(this.line, token.column, reason);
  }

  private statement(tokens: Token[]): void {
    const [keyword, ...rest] = tokens;
    const word = keyword!.text;
    if (word !== "cluster" && !this.clusterSeen)
      throw this.error(keyword!, "the scenario must begin with 'cluster nodes=N ...'");
    if (word === "cluster") return this.cluster(keyword!, rest);
    if (word === "node") return this.nodeOverride(keyword!, rest);
    if (word === "vm") return this.vm(keyword!, rest);
    if (word === "constraint") return this.constraint(keyword!, rest);
    if (word === "attribute") return this.attribute(keyword!, rest);
    if (word === "at") return this.at(keyword!, rest);
    if (word === "run") return this.run(keyword!, rest);
    throw this.error(
      keyword!,
      `unknown statement '${word}' (expected cluster, node, vm, constraint, attribute, at or run)`,
    );
  }

  private cluster(keyword: Token, rest: Token[]): void {
    if (this.clusterSeen) throw this.error(keyword, "'cluster' may appear only once");
    this.clusterSeen = true;
    const o = this.options(rest, ["nodes", "ttl", "margin", "memory", "vcpus", "etcd"]);
    const count = o.int("nodes", 3, 1, 64);
    this.scenario.etcdMembers = o.int("etcd", 3, 1, 9);
    this.scenario.ttlSeconds = o.int("ttl", 5, 1, 3600);
    this.scenario.marginMs = o.duration("margin", 1500);
    const memoryMb = o.int("memory", 4096, 16, 1 << 20);
    const vcpus = o.int("vcpus", 4, 1, 1024);
    if (this.scenario.marginMs >= this.scenario.ttlSeconds * 1000)
      throw this.error(o.token("margin") ?? keyword, "the margin must be shorter than the TTL");
    for (let i = 1; i <= count; i++) this.scenario.nodes.push({ name: `node${i}`, memoryMb, vcpus });
  }

  private nodeOverride(keyword: Token, rest: Token[]): void {
    const [name, ...options] = rest;
    const node = this.scenario.nodes.find((n) => n.name === name?.text);
    if (!name || !node) throw this.error(name ?? keyword, `expected a node name (${this.nodeNames()})`);
    const o = this.options(options, ["memory", "vcpus"]);
    node.memoryMb = o.int("memory", node.memoryMb, 16, 1 << 20);
    node.vcpus = o.int("vcpus", node.vcpus, 1, 1024);
  }

  /** `constraint ID …`: a constraint in place when the run begins. */
  private constraint(keyword: Token, rest: Token[]): void {
    const constraint = this.parseConstraint(keyword, rest);
    if (this.scenario.rules.constraints.some((c) => c.id === constraint.id))
      throw this.error(rest[0]!, `constraint ${constraint.id} is declared twice`);
    this.scenario.rules.constraints.push(constraint);
  }

  /**
   * `ID location VM NODE SCORE`, `ID rule VM SCORE RULE…`, `ID colocation VM WITH-VM SCORE`,
   * `ID order FIRST THEN [mandatory|optional]`: checked with the scheduler's own schemas.
   */
  parseConstraint(keyword: Token, rest: Token[]): ScenarioConstraint {
    const [id, kind, ...args] = rest;
    const form = kind && Object.hasOwn(CONSTRAINT_FORMS, kind.text) ? CONSTRAINT_FORMS[kind.text] : undefined;
    if (!id || !kind || !form)
      throw this.error(kind ?? id ?? keyword, "expected: constraint ID location|rule|colocation|order ...");
    const usage = `expected: constraint ID ${kind.text} ${form.usage}`;
    if (args.length < form.required) throw this.error(args.at(-1) ?? kind, usage);
    if (args.length > form.fields.length && form.type !== "location-rule")
      throw this.error(args[form.fields.length]!, `unexpected '${args[form.fields.length]!.text}'`);
    const tokens = new Map<string, Token>([["id", id]]);
    for (const [i, field] of form.fields.entries()) if (args[i]) tokens.set(field, args[i]);
    const input: Record<string, string> = { type: form.type };
    for (const [field, token] of tokens) input[field] = token.text;
    if (form.type === "location-rule")
      input.rule = args
        .slice(2)
        .map((t) => t.text)
        .join(" ");
    const parsed = constraintSchema.safeParse(input);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw this.error(tokens.get(String(issue?.path[0])) ?? kind, issue?.message ?? "bad constraint");
    }
    for (const field of ["vm", "withVm", "first", "then"]) {
      const token = tokens.get(field);
      if (token) this.vmName(token);
    }
    const constraint = parsed.data;
    if (constraint.type === "colocation-set") throw this.error(kind, usage); // no form makes one
    return constraint;
  }

  /** `attribute NODE KEY=VALUE…`: node attributes that location rules match, at the start. */
  private attribute(keyword: Token, rest: Token[]): void {
    const { node, attributes } = this.parseAttributes(keyword, rest);
    const known = this.scenario.rules.nodeAttributes.get(node);
    this.scenario.rules.nodeAttributes.set(node, { ...known, ...attributes });
  }

  parseAttributes(keyword: Token, rest: Token[]) {
    const [name, ...pairs] = rest;
    if (!name || !this.scenario.nodes.some((n) => n.name === name.text))
      throw this.error(name ?? keyword, `expected a node name (${this.nodeNames()})`);
    if (pairs.length === 0) throw this.error(name, "expected KEY=VALUE after the node name");
    const attributes: Record<string, string> = {};
    for (const pair of pairs) {
      const eq = pair.text.indexOf("=");
      if (eq <= 0) throw this.error(pair, "expected KEY=VALUE");
      attributes[pair.text.slice(0, eq)] = pair.text.slice(eq + 1);
    }
    return { node: name.text, attributes };
  }

  private vm(keyword: Token, rest: Token[]): void {
    const [name, ...options] = rest;
    if (!name || name.text.includes("=")) throw this.error(name ?? keyword, "expected a VM name");
    if (!NAME_PATTERN.test(name.text)) throw this.error(name, `'${name.text}' is not a valid VM name`);
    if (this.scenario.vms.some((vm) => vm.name === name.text))
      throw this.error(name, `VM ${name.text} is declared twice`);
    const o = this.options(options, [
      "memory",
      "vcpus",
      "disks",
      "restart-limit",
      "relocate-limit",
      "failure-timeout",
      "priority",
      "stickiness",
      "ha",
      "migrate",
      "canary",
      "state",
      "on",
      "start-time",
      "incoming-time",
      "stop-time",
      "migrate-time",
      "downtime",
    ]);
    this.scenario.vms.push({
      name: name.text,
      memoryMb: o.int("memory", 512, 16, 1 << 20),
      vcpus: o.int("vcpus", 1, 1, 256),
      disks: o.int("disks", 1, 0, 16),
      restartLimit: o.int("restart-limit", 3, 0, 100),
      relocateLimit: o.int("relocate-limit", 1, 0, 100),
      failureTimeoutSeconds: Math.ceil(o.duration("failure-timeout", 600_000) / 1000),
      priority: o.int("priority", 0, -1_000_000, 1_000_000),
      stickiness: o.score("stickiness", 0),
      ha: o.onOff("ha", true),
      allowMigrate: o.choice("migrate", ["live", "cold"], "live") === "live",
      canary: o.onOff("canary", false),
      initial: this.initialState(o, name),
      timing: {
        startMs: o.duration("start-time", DEFAULT_TIMING.startMs),
        incomingMs: o.duration("incoming-time", DEFAULT_TIMING.incomingMs),
        stopMs: o.duration("stop-time", DEFAULT_TIMING.stopMs),
        migrateMs: o.duration("migrate-time", DEFAULT_TIMING.migrateMs),
        downtimeMs: o.duration("downtime", DEFAULT_TIMING.downtimeMs),
      },
    });
  }

  /** `state=stopped|started|running|error [on=NODE]`: where the VM is when the run begins. */
  private initialState(o: Options, name: Token): InitialState {
    const state = o.choice("state", ["stopped", "started", "running", "error"], "stopped");
    const on = o.token("on");
    if (state === "stopped" || state === "started") {
      if (on) throw this.error(on, `'on' goes with state=running or state=error`);
      return { state };
    }
    if (!on) throw this.error(o.token("state") ?? name, `state=${state} needs on=NODE`);
    return { state: state as "running" | "error", node: this.nodeName(valueToken(on)) };
  }

  private run(keyword: Token, rest: Token[]): void {
    if (rest[0]?.text !== "until" || !rest[1] || rest.length > 2)
      throw this.error(rest[0] ?? keyword, "expected 'run until TIME'");
    const until = duration(rest[1], this.line);
    const last = this.scenario.steps.at(-1);
    if (last && last.at > until)
      throw this.error(rest[1], `the scenario has steps after ${formatTime(until)} (line ${last.line})`);
    this.scenario.until = until;
  }

  private at(keyword: Token, rest: Token[]): void {
    const [time, verb, ...args] = rest;
    if (!time) throw this.error(keyword, "expected 'at TIME COMMAND ...'");
    const at = duration(time, this.line);
    if (!verb) throw this.error(time, "expected a command after the time");
    const previous = this.scenario.steps.at(-1);
    if (previous && previous.at > at)
      throw this.error(
        time,
        `steps must be in time order (line ${previous.line} is at ${formatTime(previous.at)})`,
      );
    const command = parseCommand(this, verb, args);
    const text = [verb, ...args].map((t) => (/\s/.test(t.text) ? `"${t.text}"` : t.text)).join(" ");
    this.scenario.steps.push({ at, line: this.line, text, command });
  }

  arg(args: Token[], index: number, after: Token, what: string): Token {
    const token = args[index];
    if (!token) throw this.error(after, `expected ${what} after '${after.text}'`);
    return token;
  }

  split(tokens: Token[]): { options: Token[]; words: Token[] } {
    return {
      options: tokens.filter((t) => isOption(t)),
      words: tokens.filter((t) => !isOption(t)),
    };
  }

  /** A node name, or `leader` (resolved when the step runs) for the faults that take a node down. */
  faultNode(verb: string, token: Token): string {
    if (token.text === "leader") {
      if (!LEADER_FAULTS.includes(verb)) throw this.error(token, `'${verb}' needs a node name, not 'leader'`);
      return "leader";
    }
    return this.nodeName(token);
  }

  vmName(token: Token): string {
    if (!this.scenario.vms.some((vm) => vm.name === token.text))
      throw this.error(token, `unknown VM '${token.text}' (declare it with 'vm ${token.text} ...' first)`);
    return token.text;
  }

  nodeName(token: Token): string {
    if (!this.scenario.nodes.some((node) => node.name === token.text))
      throw this.error(token, `unknown node '${token.text}' (the cluster has ${this.nodeNames()})`);
    return token.text;
  }

  private nodeNames(): string {
    const names = this.scenario.nodes.map((n) => n.name);
    return names.length > 3 ? `${names[0]} … ${names.at(-1)}` : names.join(", ");
  }

  options(tokens: Token[], allowed: string[]): Options {
    const byKey = new Map<string, Token>();
    for (const token of tokens) {
      const eq = token.text.indexOf("=");
      if (eq <= 0) throw this.error(token, `expected key=value, got '${token.text}'`);
      const key = token.text.slice(0, eq);
      if (!allowed.includes(key))
        throw this.error(token, `unknown setting '${key}' (expected one of: ${allowed.join(", ")})`);
      if (byKey.has(key)) throw this.error(token, `'${key}' is given twice`);
      byKey.set(key, token);
    }
    return new Options(byKey, this.line);
  }
}

/** The constraint statements: the scheduler's type, its fields in the order written, and how many are needed. */
const CONSTRAINT_FORMS: Record<
  string,
  { type: ScenarioConstraint["type"]; fields: string[]; required: number; usage: string }
> = {
  location: { type: "location", fields: ["vm", "node", "score"], required: 3, usage: "VM NODE SCORE" },
  rule: { type: "location-rule", fields: ["vm", "score", "rule"], required: 3, usage: "VM SCORE RULE…" },
  colocation: {
    type: "colocation",
    fields: ["vm", "withVm", "score"],
    required: 3,
    usage: "VM WITH-VM SCORE",
  },
  order: {
    type: "order",
    fields: ["first", "then", "kind"],
    required: 2,
    usage: "FIRST THEN [mandatory|optional]",
  },
};
