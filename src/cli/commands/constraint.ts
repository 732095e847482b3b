// haven constraint list|location|rule|colocation|order|delete: placement constraints in Pacemaker's terms
// (scores from -INFINITY to INFINITY), applied by the controller from its next round on (docs/placement.md).
import type { Command } from "commander";
import { describeConstraint, type StoredConstraint } from "../../adapters/etcd/constraint-store.js";
import type { PlacementStrategyView } from "../../api/service.js";
import { inputError } from "../../core/errors.js";
import { PLACEMENT_STRATEGIES } from "../../core/scheduler/types.js";
import type { CliContext } from "../context.js";
import { progress } from "../context.js";
import { printJson, printTable } from "../output.js";

const SCORE_HELP = "a whole number, INFINITY (must) or -INFINITY (never); put -- before a negative score";

export function registerConstraint(program: Command, ctx: CliContext): void {
  const constraint = program
    .command("constraint")
    .description("placement constraints: where VMs may, should or must not run, and which stay apart");
  constraint
    .command("list")
    .description("every constraint, with where it came from")
    .option("--json", "machine-readable output")
    .action(async (options: { json?: boolean }) => {
      const constraints = await (await ctx.api()).get<StoredConstraint[]>("/v1/constraints");
      if (options.json) return printJson(constraints);
      printTable(
        ["ID", "TYPE", "CONSTRAINT", "FROM"],
        constraints.map((c) => [
          c.id,
          c.type,
          describeConstraint(c),
          c.source ? `${c.source.file}:${c.source.line}` : "by user",
        ]),
      );
    });
  const add = (body: Record<string, unknown>) => async () => {
    const added = await (await ctx.api()).post<StoredConstraint>("/v1/constraints", body);
    progress(`added constraint ${added.id}: ${describeConstraint(added)}`);
  };
  constraint
    .command("location <id> <vm> <node> <score>")
    .description(`score NODE for VM: ${SCORE_HELP}`)
    .action((id: string, vm: string, node: string, score: string) =>
      add({ type: "location", id, vm, node, score })(),
    );
  constraint
    .command("rule <id> <vm> <score> <rule...>")
    .description(
      `score every node whose attributes match RULE, e.g. -- -INFINITY hw ne vm (attributes: eq ne lt gt lte gte, defined, not_defined, and/or, #uname): ${SCORE_HELP}`,
    )
    .action((id: string, vm: string, score: string, rule: string[]) =>
      add({ type: "location-rule", id, vm, score, rule: rule.join(" ") })(),
    );
  constraint
    .command("colocation <id> <vm> <with-vm> <score>")
    .description(
      `place VM relative to WITH-VM: a positive score together, a negative one apart: ${SCORE_HELP}`,
    )
    .action((id: string, vm: string, withVm: string, score: string) =>
      add({ type: "colocation", id, vm, withVm, score })(),
    );
  constraint
    .command("order <id> <first> <then>")
    .description(
      "start THEN only once FIRST runs (its first start, after a stop, and its recovery after a node failure)",
    )
    .option(
      "--optional",
      "only order starts that happen together; THEN starts anyway when FIRST is not starting",
    )
    .action((id: string, first: string, then: string, options: { optional?: boolean }) =>
      add({ type: "order", id, first, then, kind: options.optional ? "optional" : "mandatory" })(),
    );
  constraint
    .command("delete <id>")
    .description("remove a constraint (guests it moved stay where they run)")
    .action(async (id: string) => {
      await (await ctx.api()).delete(`/v1/constraints/${encodeURIComponent(id)}`);
      progress(`deleted constraint ${id}`);
    });

  registerPlacementStrategy(program, ctx);
}

const STRATEGY_HELP = {
  default: "capacity is not counted; ties go to the node with fewer guests",
  utilization: "guests go only where they fit; ties go to the node with fewer guests",
  balanced: "guests go only where they fit; ties go to the node with more room left (Haven's default)",
  minimal: "guests go only where they fit; ties go to the earlier node name, so nodes fill one by one",
};

/** `haven cluster placement-strategy [STRATEGY] [--reset]`: Pacemaker's placement-strategy property. */
function registerPlacementStrategy(program: Command, ctx: CliContext): void {
  const cluster = program.commands.find((command) => command.name() === "cluster")!;
  cluster
    .command("placement-strategy [strategy]")
    .description(
      `show or set how placement counts capacity and breaks ties, as Pacemaker's placement-strategy: ${Object.entries(
        STRATEGY_HELP,
      )
        .map(([name, help]) => `${name}: ${help}`)
        .join("; ")}; whatever the strategy, Haven starts a guest only where its memory and vCPUs fit`,
    )
    .option("--reset", "back to Haven's default (balanced)")
    .option("--json", "machine-readable output")
    .action(async (strategy: string | undefined, options: { reset?: boolean; json?: boolean }) => {
      const api = await ctx.api();
      if (strategy !== undefined && options.reset) throw inputError("give a strategy or --reset, not both");
      if (strategy !== undefined && !(PLACEMENT_STRATEGIES as readonly string[]).includes(strategy))
        throw inputError(`unknown placement strategy "${strategy}" (${PLACEMENT_STRATEGIES.join(", ")})`);
      const view =
        strategy !== undefined || options.reset
          ? await api.request<PlacementStrategyView>("PUT", "/v1/placement/strategy", {
              strategy: strategy ?? null,
            })
          : await api.get<PlacementStrategyView>("/v1/placement/strategy");
      if (options.json) return printJson(view);
      const origin = !view.set
        ? "Haven's default"
        : view.source
          ? `imported from ${view.source.file}:${view.source.line}`
          : "set by a user";
      process.stdout.write(
        `placement-strategy ${view.strategy} (${origin}): ${STRATEGY_HELP[view.strategy]}\n`,
      );
    });
}
