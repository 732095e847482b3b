// Runs Pacemaker's own scheduler on a CIB: `crm_simulate --simulate --show-scores --output-as=xml`, and
// reads where each resource runs once the transition is carried out, and the allocation scores Pacemaker
// printed for each resource on each node (what "a tie" is judged by).
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseXml, type XmlElement } from "../../src/core/import/xml.js";
import { parseScore } from "../../src/core/scheduler/scores.js";

export interface PacemakerAnswer {
  /** Where each resource runs after the transition; null when stopped. */
  placement: Map<string, string | null>;
  /** Resource → node → Pacemaker's allocation score. */
  scores: Map<string, Map<string, number>>;
  /** Each node's capacity before the first assignment (empty under placement-strategy default). */
  capacity: Map<string, Map<string, number>>;
  /** The assignments in the order Pacemaker made them, with what each took (capacity strategies). */
  assignments: Array<{ resource: string; node: string; takes: Map<string, number> }>;
}

export function hasCrmSimulate(): boolean {
  return spawnSync("crm_simulate", ["--version"], { encoding: "utf8" }).status === 0;
}

/** A scratch directory for CIB files, removed by `done`. */
export function scratch(): { file: (name: string) => string; done: () => void } {
  const directory = mkdtempSync(join(tmpdir(), "haven-pacemaker-"));
  return {
    file: (name) => join(directory, name),
    done: () => rmSync(directory, { recursive: true, force: true }),
  };
}

export function crmSimulate(cib: string, file: string, name = file): PacemakerAnswer {
  writeFileSync(file, cib);
  const options = ["--simulate", "--show-scores", "--show-utilization", "--output-as=xml"];
  const run = spawnSync("crm_simulate", ["--xml-file", file, ...options], {
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
    timeout: 60_000,
  });
  // Pacemaker's decisions are in the output even when simulating the transition fails (exit status 1).
  const { root } = parseXml(run.stdout);
  if (!root || !child(root, "actions")) {
    const why = run.stderr || run.stdout || String(run.error);
    throw new Error(`crm_simulate failed on ${name} (${run.status ?? run.signal}): ${why}`);
  }
  return { placement: placementOf(root), scores: scoresOf(root), ...utilizationOf(root) };
}

/** `<capacity node comment="Original">` and `<utilization resource node>` with one child per resource. */
function utilizationOf(root: XmlElement) {
  const capacity = new Map<string, Map<string, number>>();
  const assignments: PacemakerAnswer["assignments"] = [];
  const amounts = (element: XmlElement) =>
    new Map(element.children.map((child) => [child.name, Number(child.text.trim())]));
  for (const element of child(root, "allocations_utilizations")?.children ?? []) {
    const { node, comment, resource } = element.attributes;
    if (element.name === "capacity" && comment === "Original") capacity.set(node!, amounts(element));
    if (element.name === "utilization")
      assignments.push({ resource: resource!, node: node!, takes: amounts(element) });
  }
  return { capacity, assignments };
}

const child = (element: XmlElement, name: string) => element.children.find((each) => each.name === name);

/** Where each resource runs now (cluster_status), changed by the transition's actions (not blocked ones). */
function placementOf(root: XmlElement): Map<string, string | null> {
  const placement = new Map<string, string | null>();
  for (const resource of child(child(root, "cluster_status") ?? root, "resources")?.children ?? []) {
    if (resource.name !== "resource") continue;
    const nodes = resource.children.filter((each) => each.name === "node");
    const running = resource.attributes.role === "Started" && nodes.length === 1;
    placement.set(resource.attributes.id!, running ? nodes[0]!.attributes.name! : null);
  }
  for (const action of child(root, "actions")?.children ?? []) {
    const { action: kind, resource, node, dest, blocked } = action.attributes;
    if (action.name !== "rsc_action" || blocked === "true") continue;
    if (kind === "start") placement.set(resource!, node!);
    else if (kind === "stop") placement.set(resource!, null);
    else if (kind === "move" || kind === "migrate") placement.set(resource!, dest!);
  }
  return placement;
}

function scoresOf(root: XmlElement): Map<string, Map<string, number>> {
  const scores = new Map<string, Map<string, number>>();
  const weights = [
    ...(child(root, "allocations")?.children ?? []),
    ...(child(root, "allocations_utilizations")?.children ?? []),
  ];
  for (const weight of weights) {
    if (weight.name !== "node_weight" || weight.attributes.function !== "pcmk__primitive_assign") continue;
    const { id, node, score } = weight.attributes;
    const parsed = parseScore(score!);
    if (!parsed.ok) throw new Error(`crm_simulate printed a score Haven cannot read: ${score}`);
    const perNode = scores.get(id!) ?? new Map<string, number>();
    perNode.set(node!, parsed.score);
    scores.set(id!, perNode);
  }
  return scores;
}
