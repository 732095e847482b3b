// A line diff for golden files: the lines only in the expected log (-) and only in the actual one (+), with
// a little context, from the longest common subsequence. Logs are a few hundred lines, so O(n·m) is fine.

const CONTEXT = 2;

/** Empty when the two are equal. */
export function diffLines(expected: string[], actual: string[]): string[] {
  const n = expected.length;
  const m = actual.length;
  // lcs[i][j]: length of the longest common subsequence of expected[i..] and actual[j..].
  const lcs = Array.from({ length: n + 1 }, () => new Array<number>(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--)
    for (let j = m - 1; j >= 0; j--)
      lcs[i]![j] =
        expected[i] === actual[j] ? lcs[i + 1]![j + 1]! + 1 : Math.max(lcs[i + 1]![j]!, lcs[i]![j + 1]!);
  const ops: Array<{ kind: " " | "-" | "+"; line: string }> = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && expected[i] === actual[j]) {
      ops.push({ kind: " ", line: expected[i++]! });
      j++;
    } else if (j < m && (i === n || lcs[i]![j + 1]! >= lcs[i + 1]![j]!))
      ops.push({ kind: "+", line: actual[j++]! });
    else ops.push({ kind: "-", line: expected[i++]! });
  }
  if (ops.every((op) => op.kind === " ")) return [];
  const shown = new Set<number>();
  ops.forEach((op, k) => {
    if (op.kind === " ") return;
    for (let c = Math.max(0, k - CONTEXT); c <= Math.min(ops.length - 1, k + CONTEXT); c++) shown.add(c);
  });
  const out: string[] = [];
  let last = -1;
  for (const k of [...shown].sort((a, b) => a - b)) {
    if (last >= 0 && k > last + 1) out.push("  ...");
    out.push(`${ops[k]!.kind} ${ops[k]!.line}`);
    last = k;
  }
  return out;
}
