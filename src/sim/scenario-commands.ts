// The commands of scenario steps (`at TIME COMMAND …`), each turned into a SimCommand with the same checks
// and errors as the statements of scenario.ts.
import { DEFAULT_MIGRATION, type MigrationDefaults } from "../core/model.js";
import type { PolicyChange, ScenarioConstraint, SimCommand } from "./scenario.js";
import { duration, valueToken, type Options, type ScenarioError, type Token } from "./scenario-words.js";
import type { FenceBehaviour } from "./world.js";

/** What the step commands need of the statement parser. */
export interface StepParser {
  readonly line: number;
  readonly etcdMembers: number;
  error(token: Token, reason: string): ScenarioError;
  arg(args: Token[], index: number, after: Token, what: string): Token;
  split(tokens: Token[]): { options: Token[]; words: Token[] };
  faultNode(verb: string, token: Token): string;
  vmName(token: Token): string;
  nodeName(token: Token): string;
  options(tokens: Token[], allowed: string[]): Options;
  parseConstraint(keyword: Token, rest: Token[]): ScenarioConstraint;
  parseAttributes(keyword: Token, rest: Token[]): { node: string; attributes: Record<string, string> };
}

export const DEFAULT_STORAGE_FENCE_ERROR = "ceph osd blocklist add: timed out after 30 s";
export const DEFAULT_MIGRATION_ERROR = "Unable to write to socket: Connection reset by peer";

export const LEADER_FAULTS: readonly string[] = [
  "power-off",
  "net-cut",
  "freeze",
  "shutdown",
  "havend-kill",
  "reboot",
];

export function parseCommand(p: StepParser, verb: Token, args: Token[]): SimCommand {
  const v = verb.text;
  const arity = (n: number) => {
    if (args.length > n) throw p.error(args[n]!, `unexpected '${args[n]!.text}'`);
    if (args.length < n)
      throw p.error(args.at(-1) ?? verb, `'${v}' needs ${n} argument${n === 1 ? "" : "s"}`);
  };
  switch (v) {
    case "start":
    case "stop":
    case "show":
    case "migration-cancel":
    case "kill-target":
    case "kill-source":
      arity(1);
      return { type: v, vm: p.vmName(args[0]!) };
    case "power-off":
    case "power-on":
    case "net-cut":
    case "net-restore":
    case "freeze":
    case "thaw":
    case "shutdown":
    case "havend-kill":
    case "havend-start":
      arity(1);
      return { type: v, node: p.faultNode(v, args[0]!) };
    case "reboot": {
      const node = p.faultNode(v, p.arg(args, 0, verb, "a node"));
      const o = p.options(args.slice(1), ["down"]);
      return { type: v, node, downMs: o.duration("down", 30_000) };
    }
    case "etcd-kill":
    case "etcd-start": {
      arity(1);
      const members = Array.from({ length: p.etcdMembers }, (_, i) => `etcd${i + 1}`);
      if (!members.includes(args[0]!.text))
        throw p.error(
          args[0]!,
          `unknown etcd member '${args[0]!.text}' (the cluster has ${members.join(", ")})`,
        );
      return { type: v, member: args[0]!.text };
    }
    case "fail-stop":
      return failures(p, verb, args, "QEMU did not power down the guest in time (simulated)");
    case "quorum-loss":
    case "quorum-back":
      arity(0);
      return { type: v };
    case "set":
      return parseSet(p, verb, args);
    case "crash": {
      const vm = p.vmName(p.arg(args, 0, verb, "a VM"));
      if (args.length === 1) return { type: v, vm };
      if (args[1]!.text !== "on" || !args[2] || args.length > 3)
        throw p.error(args[1]!, "expected 'crash VM [on NODE]'");
      return { type: v, vm, node: p.nodeName(args[2]) };
    }
    case "fail-start":
      return failures(p, verb, args, "qemu-system-x86_64: could not start (simulated)");
    case "etcd-slow": {
      arity(2);
      const node = args[0]!.text === "all" ? null : p.nodeName(args[0]!);
      return { type: v, node, latencyMs: duration(args[1]!, p.line) };
    }
    case "fence-agent": {
      const node = p.nodeName(p.arg(args, 0, verb, "a node"));
      const result = p.arg(args, 1, verb, "ok, fail, hang or clear");
      if (result.text === "clear") {
        if (args.length > 2) throw p.error(args[2]!, `unexpected '${args[2]!.text}'`);
        return { type: v, node, behaviour: null, timeoutSeconds: 60 };
      }
      const o = p.options(args.slice(2), ["time", "timeout"]);
      return {
        type: v,
        node,
        behaviour: { result: fenceResult(p, result), durationMs: o.duration("time", 2000) },
        timeoutSeconds: Math.ceil(o.duration("timeout", 60_000) / 1000),
      };
    }
    case "fence-result": {
      const node = p.nodeName(p.arg(args, 0, verb, "a node"));
      const result = fenceResult(p, p.arg(args, 1, verb, "ok, fail or hang"));
      const o = p.options(args.slice(2), ["time"]);
      return { type: v, node, behaviour: { result, durationMs: o.duration("time", 2000) } };
    }
    case "storage-fence": {
      const mode = p.arg(args, 0, verb, "ok or fail");
      if (mode.text !== "ok" && mode.text !== "fail") throw p.error(mode, "expected ok or fail");
      if (args.length > 2) throw p.error(args[2]!, `unexpected '${args[2]!.text}' (quote the message)`);
      if (mode.text === "ok" && args[1]) throw p.error(args[1], "only 'storage-fence fail' takes a message");
      return { type: v, ok: mode.text === "ok", message: args[1]?.text ?? DEFAULT_STORAGE_FENCE_ERROR };
    }
    case "migrate": {
      const vm = p.vmName(p.arg(args, 0, verb, "a VM"));
      let rest = args.slice(1);
      let to: string | undefined;
      if (rest[0]?.text === "to") {
        to = p.nodeName(p.arg(rest, 1, rest[0], "a node"));
        rest = rest.slice(2);
      }
      const o = p.options(rest, ["timeout", "transport"]);
      const timeout = o.token("timeout");
      return {
        type: v,
        vm,
        to,
        timeoutSeconds: timeout ? Math.ceil(o.duration("timeout", 0) / 1000) : undefined,
        transport: o.token("transport")
          ? (o.choice("transport", ["tls", "tcp"], "tls") as "tls" | "tcp")
          : undefined,
      };
    }
    case "migration-fail": {
      const vm = p.vmName(p.arg(args, 0, verb, "a VM"));
      const { options, words } = p.split(args.slice(1));
      if (words.length > 1) throw p.error(words[1]!, `unexpected '${words[1]!.text}' (quote the message)`);
      const o = p.options(options, ["times"]);
      const times = o.int("times", 1, 1, 1000);
      return { type: v, vm, times, message: words[0]?.text ?? DEFAULT_MIGRATION_ERROR };
    }
    case "maintenance": {
      arity(2);
      const mode = args[0]!;
      if (mode.text !== "on" && mode.text !== "off")
        throw p.error(mode, "expected 'maintenance on|off NODE'");
      return { type: v, node: p.nodeName(args[1]!), on: mode.text === "on" };
    }
    case "migration-defaults": {
      const o = p.options(args, [
        "transport",
        "timeout",
        "downtime-limit",
        "bandwidth",
        "max-per-node",
        "max-per-cluster",
      ]);
      if (args.length === 0) throw p.error(verb, "'migration-defaults' needs at least one setting");
      const changes: Partial<MigrationDefaults> = {};
      if (o.token("transport"))
        changes.transport = o.choice("transport", ["tls", "tcp"], "tls") as "tls" | "tcp";
      if (o.token("timeout")) changes.timeoutSeconds = Math.ceil(o.duration("timeout", 0) / 1000);
      if (o.token("downtime-limit")) changes.downtimeLimitMs = o.duration("downtime-limit", 0);
      if (o.token("bandwidth")) changes.maxBandwidthMBps = o.int("bandwidth", 0, 0, 1_000_000);
      if (o.token("max-per-node"))
        changes.maxPerNode = o.int("max-per-node", DEFAULT_MIGRATION.maxPerNode, 1, 64);
      if (o.token("max-per-cluster"))
        changes.maxPerCluster = o.int("max-per-cluster", DEFAULT_MIGRATION.maxPerCluster, 1, 1024);
      return { type: v, changes };
    }
    case "constraint":
      return { type: v, constraint: p.parseConstraint(verb, args) };
    case "constraint-delete":
      arity(1);
      return { type: v, id: args[0]!.text };
    case "attribute":
      return { type: v, ...p.parseAttributes(verb, args) };
    default:
      throw p.error(verb, `unknown command '${v}'`);
  }
}

/** `fail-start|fail-stop VM [times=N] [on=NODE] ["MESSAGE"]`: the next starts or stops of its QEMU fail. */
function failures(p: StepParser, verb: Token, args: Token[], defaultMessage: string): SimCommand {
  const vm = p.vmName(p.arg(args, 0, verb, "a VM"));
  const { options, words } = p.split(args.slice(1));
  if (words.length > 1) throw p.error(words[1]!, `unexpected '${words[1]!.text}' (quote the message)`);
  const o = p.options(options, ["times", "on"]);
  const node = o.token("on");
  return {
    type: verb.text as "fail-start" | "fail-stop",
    vm,
    times: o.int("times", 1, 1, 1000),
    node: node ? p.nodeName(valueToken(node)) : undefined,
    message: words[0]?.text ?? defaultMessage,
  };
}

function parseSet(p: StepParser, verb: Token, args: Token[]): SimCommand {
  const vm = p.vmName(p.arg(args, 0, verb, "a VM"));
  if (args.length < 2) throw p.error(args[0]!, "'set' needs at least one key=value");
  const keys = {
    "restart-limit": "restartLimit",
    "relocate-limit": "relocateLimit",
    "failure-timeout": "failureTimeoutSeconds",
    priority: "priority",
    stickiness: "stickiness",
    ha: "ha",
    "allow-migrate": "allowMigrate",
  } as const;
  const o = p.options(args.slice(1), Object.keys(keys));
  const changes: PolicyChange[] = [];
  for (const token of args.slice(1)) {
    const name = token.text.split("=")[0] as keyof typeof keys;
    const key = keys[name];
    if (key === "ha" || key === "allowMigrate") changes.push({ key, value: o.onOff(name, true) });
    else if (key === "failureTimeoutSeconds")
      changes.push({ key, value: Math.ceil(o.duration(name, 0) / 1000) });
    else if (key === "priority") changes.push({ key, value: o.int(name, 0, -1_000_000, 1_000_000) });
    else if (key === "stickiness") changes.push({ key, value: o.score(name, 0) });
    else changes.push({ key, value: o.int(name, 0, 0, 100) });
  }
  return { type: "set", vm, changes };
}

function fenceResult(p: StepParser, token: Token): FenceBehaviour["result"] {
  if (token.text === "ok" || token.text === "fail" || token.text === "hang") return token.text;
  throw p.error(token, `expected ok, fail or hang, got '${token.text}'`);
}
