// haven constraint list|location|rule|colocation|order|delete: placement constraints in Pacemaker's terms
// (scores from -INFINITY to INFINITY), applied by the controller from its next round on (docs/placement.md).
import type { Command } from "commander";
import { describeConstraint, type StoredConstraint } from "../../adapters/etcd/constraint-store.js";
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
}
