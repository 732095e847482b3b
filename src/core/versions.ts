// Rolling upgrades: nodes announce their Haven version, and versions may mix within a stated range — the same
// major version and at most one minor version apart (0.1.x runs with 0.2.x, not with 0.3.x or 1.x). A node
// outside the range of any online node refuses to join, so an upgrade goes one minor version at a time.
export const VERSION_RANGE = "the same major version, at most one minor version apart";

interface Version {
  major: number;
  minor: number;
}

function parseVersion(text: string): Version | undefined {
  const match = /^(\d+)\.(\d+)\.\d+(?:[-+].*)?$/.exec(text);
  return match ? { major: Number(match[1]), minor: Number(match[2]) } : undefined;
}

export function versionsCompatible(a: string, b: string): boolean {
  if (a === b) return true;
  const [x, y] = [parseVersion(a), parseVersion(b)];
  return x !== undefined && y !== undefined && x.major === y.major && Math.abs(x.minor - y.minor) <= 1;
}

/** Why a node running `mine` may not join these online nodes; undefined when it may. */
export function versionProblem(
  mine: string,
  online: ReadonlyArray<{ name: string; version: string }>,
): string | undefined {
  const apart = online.filter((node) => !versionsCompatible(mine, node.version));
  if (apart.length === 0) return undefined;
  const theirs = apart.map((node) => `${node.name} runs ${node.version}`).join(", ");
  return `Haven ${mine} cannot join this cluster: ${theirs}; versions may mix only within ${VERSION_RANGE}`;
}

/** Online nodes by version, e.g. { "0.1.0": ["node1", "node2"], "0.2.0": ["node3"] }. */
export function nodesByVersion(
  nodes: ReadonlyArray<{ name: string; version: string }>,
): Record<string, string[]> {
  const byVersion: Record<string, string[]> = {};
  for (const node of nodes) (byVersion[node.version] ??= []).push(node.name);
  return byVersion;
}
