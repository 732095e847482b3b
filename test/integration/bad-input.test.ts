// Bad input through the CLI and the HTTP API: one clear line, the right exit code or HTTP status, and
// nothing half-created.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { readCa } from "../../src/cli/context.js";
import { tlsDispatcher, type Dispatcher } from "../../src/lib/tls.js";
import { requireClusterFile } from "../../src/setup/cluster-file.js";
import { readToken } from "../../src/setup/local-cluster.js";
import { SUITE_TIMEOUT, TestCluster } from "./harness.js";

describe("bad input", SUITE_TIMEOUT, () => {
  let cluster: TestCluster;
  let api: string;
  let token: string;
  let dispatcher: Dispatcher;

  before(async () => {
    cluster = await TestCluster.start({ nodes: 1 });
    const file = await requireClusterFile(cluster.stateDir);
    api = file.nodes[0]!.api;
    token = await readToken(file);
    dispatcher = tlsDispatcher({ ca: (await readCa(file))! });
  });
  afterEach(async () => {
    await cluster.reset();
  });
  after(async () => {
    await cluster?.stop();
  });

  const disks = async () =>
    (await cluster.json<Array<{ name: string }>>(["disk", "list"])).map((d) => d.name);

  async function refused(args: string[], exitCode: number, message: RegExp): Promise<void> {
    const result = await cluster.haven(args);
    assert.equal(result.code, exitCode, `haven ${args.join(" ")}: ${result.stderr}`);
    assert.match(result.stderr, message);
    assert.doesNotMatch(result.stderr, /\n\s+at /, "no stack trace for user errors");
  }

  test("sizes: missing, zero, negative, absurd, not a number", async () => {
    await refused(["disk", "create", "d1"], 2, /--size/);
    await refused(["disk", "create", "d1", "--size", "0"], 2, /greater than zero/);
    await refused(["disk", "create", "d1", "--size=-5"], 2, /greater than zero/);
    await refused(["disk", "create", "d1", "--size", "100000T"], 2, /at most/);
    await refused(["disk", "create", "d1", "--size", "lots"], 2, /not a number/);
    await refused(["vm", "create", "v1", "--canary", "--memory", "-1"], 2, /memory must be at least/);
    assert.deepEqual(await disks(), []);
  });

  test("names with '/', '..', spaces or nothing", async () => {
    await refused(["disk", "create", "a/b", "--size", "8"], 2, /name/);
    await refused(["disk", "create", "a..b", "--size", "8"], 2, /'\.\.'/);
    await refused(["disk", "create", "a b", "--size", "8"], 2, /name/);
    await refused(["vm", "create", "", "--canary"], 2, /name/);
    assert.deepEqual(await disks(), []);
  });

  test("HA policy and fence agents: nothing to change, bad durations and scores, missing commands, unknown names", async () => {
    await refused(
      ["vm", "create", "v1", "--canary", "--failure-timeout", "5 parsecs"],
      2,
      /--failure-timeout: duration/,
    );
    await refused(["vm", "set", "ghost", "--priority", "3"], 3, /VM ghost does not exist/);
    await refused(
      ["vm", "create", "v1", "--canary", "--stickiness", "lots"],
      2,
      /--stickiness: score "lots" is not an integer, INFINITY or -INFINITY/,
    );
    await refused(
      ["vm", "set", "ghost", "--stickiness", "2000000"],
      2,
      /--stickiness: score 2000000 is out of range/,
    );
    await refused(["vm", "set", "ghost"], 2, /nothing to change/);
    await refused(
      ["fence", "agent", "set", "node1", "--", "/nonexistent/fence_x"],
      2,
      /fence_x is not an executable/,
    );
    await refused(["fence", "agent", "set", "bad/name", "--", "true"], 2, /node name/);
    await refused(["fence", "agent", "clear", "node1"], 3, /node node1 has no fence agent/);
    const fencing = await cluster.json<{ agents: unknown[] }>(["fence", "list"]);
    assert.deepEqual(fencing.agents, []);
  });

  test("constraints: unknown VM, bad score or rule, duplicate id, unknown id, order cycles; a good one shows in vm explain", async () => {
    await refused(["constraint", "location", "c1", "ghost", "node1", "100"], 3, /VM ghost does not exist/);
    assert.equal((await cluster.haven(["vm", "create", "cv", "--canary", "--stickiness", "inf"])).code, 0);
    const created = await cluster.json<{ spec: { stickiness: number } }>(["vm", "show", "cv"]);
    assert.equal(created.spec.stickiness, 1_000_000, "inf is INFINITY, as for constraint scores");
    await refused(["constraint", "location", "c1", "cv", "node1", "lots"], 2, /score/);
    await refused(["constraint", "location", "c1", "cv", "node1", "--", "-2000000"], 2, /score/);
    await refused(["constraint", "rule", "r1", "cv", "100", "hw", "eq"], 2, /rule/);
    assert.equal(
      (await cluster.haven(["constraint", "location", "c1", "cv", "node1", "--", "-INFINITY"])).code,
      0,
    );
    await refused(["constraint", "location", "c1", "cv", "node1", "5"], 4, /constraint c1 exists/);
    const listed = await cluster.json<Array<{ id: string; score: number }>>(["constraint", "list"]);
    assert.deepEqual(
      listed.map((c) => [c.id, c.score]),
      [["c1", -1_000_000]],
    );
    const explained = await cluster.json<{ chosen: string | null; reason: string }>(["vm", "explain", "cv"]);
    assert.equal(explained.chosen, null);
    assert.match(explained.reason, /placement constraints ban every online node/);
    assert.equal((await cluster.haven(["constraint", "delete", "c1"])).code, 0);
    await refused(["constraint", "delete", "c1"], 3, /constraint c1 does not exist/);
    await refused(["constraint", "order", "o1", "cv", "ghost"], 3, /VM ghost does not exist/);
    await refused(["constraint", "order", "o1", "cv", "cv"], 2, /cannot start after itself/);
    assert.equal((await cluster.haven(["vm", "create", "cw", "--canary"])).code, 0);
    assert.equal((await cluster.haven(["constraint", "order", "o1", "cv", "cw"])).code, 0);
    await refused(
      ["constraint", "order", "o2", "cw", "cv"],
      2,
      /closes a cycle with the recorded orders \(o1\)/,
    );
    assert.equal((await cluster.haven(["constraint", "delete", "o1"])).code, 0);
    assert.equal((await cluster.haven(["vm", "delete", "cw"])).code, 0);
    assert.equal((await cluster.haven(["vm", "delete", "cv"])).code, 0);
  });

  test("unknown VM, unknown disk", async () => {
    await refused(["vm", "show", "ghost"], 3, /VM ghost does not exist/);
    await refused(["vm", "start", "ghost"], 3, /VM ghost does not exist/);
    await refused(["disk", "info", "ghost"], 3, /disk ghost does not exist/);
    await refused(["canary", "verify", "ghost"], 3, /VM ghost does not exist/);
  });

  test("a kernel file that does not exist creates nothing", async () => {
    await refused(
      ["vm", "create", "k1", "--kernel", "/nonexistent/vmlinuz", "--disk-size", "16"],
      2,
      /kernel file .* does not exist/,
    );
    await refused(["vm", "create", "k2", "--canary", "--kernel", "/boot/x"], 2, /either canary or kernel/);
    assert.deepEqual(await disks(), []);
    assert.deepEqual(await cluster.json<unknown[]>(["vm", "list"]), []);
  });

  test("a duplicate name is refused and leaves the first VM and its disk alone", async () => {
    const first = await cluster.haven(["vm", "create", "dup", "--canary"]);
    assert.equal(first.code, 0, first.stderr);
    await refused(["vm", "create", "dup", "--canary"], 4, /already exists/);
    await refused(["disk", "create", "dup-disk0", "--size", "8"], 4, /already exists/);
    assert.deepEqual(await disks(), ["dup-disk0"]);
    await refused(["disk", "delete", "dup-disk0"], 4, /VM dup uses it/);
    const del = await cluster.haven(["vm", "delete", "dup"]);
    assert.equal(del.code, 0, del.stderr);
    assert.deepEqual(await disks(), []);
  });

  test("disk lifecycle: create, grow, refuse to shrink, delete", async () => {
    assert.equal((await cluster.haven(["disk", "create", "data", "--size", "1G"])).code, 0);
    const info = await cluster.json<{ sizeBytes: number; usedBytes: number }>(["disk", "info", "data"]);
    assert.equal(info.sizeBytes, 1024 ** 3);
    assert.ok(info.usedBytes < 1024 * 1024, "thin: a new disk uses almost nothing");
    assert.equal((await cluster.haven(["disk", "resize", "data", "--size", "2048"])).code, 0);
    assert.equal(
      (await cluster.json<{ sizeBytes: number }>(["disk", "info", "data"])).sizeBytes,
      2 * 1024 ** 3,
    );
    await refused(["disk", "resize", "data", "--size", "1024"], 2, /--allow-shrink/);
    assert.equal(
      (await cluster.haven(["disk", "resize", "data", "--size", "1024", "--allow-shrink"])).code,
      0,
    );
    assert.equal((await cluster.haven(["disk", "delete", "data"])).code, 0);
    assert.deepEqual(await disks(), []);
  });

  test("API: HTTPS trusted through the cluster CA only; malformed JSON, unknown fields, no token, unknown route", async () => {
    const post = (body: string, auth = `Bearer ${token}`) =>
      fetch(`${api}/v1/vms`, {
        method: "POST",
        headers: { authorization: auth, "content-type": "application/json" },
        body,
        dispatcher,
      });
    const malformed = await post("{not json");
    assert.equal(malformed.status, 400);
    assert.match(
      ((await malformed.json()) as { error: { message: string } }).error.message,
      /not valid JSON/,
    );
    const unknown = await post(JSON.stringify({ name: "x", canary: true, colour: "red" }));
    assert.equal(unknown.status, 400);
    assert.equal((await post("{}", "Bearer wrong")).status, 401);
    const missing = await fetch(`${api}/v1/nope`, {
      headers: { authorization: `Bearer ${token}` },
      dispatcher,
    });
    assert.equal(missing.status, 404);
    // Only a client that trusts the cluster's CA gets an answer at all, and nothing is served in clear.
    assert.match(api, /^https:\/\//);
    const refusal = (url: string) =>
      fetch(url).then(
        (res) => `answered HTTP ${res.status}`,
        (err: Error) => String((err.cause as Error | undefined)?.message ?? err.message),
      );
    assert.match(await refusal(`${api}/healthz`), /certificate/);
    assert.doesNotMatch(await refusal(`${api.replace(/^https:/, "http:")}/healthz`), /answered/);
    assert.deepEqual(await cluster.json<unknown[]>(["vm", "list"]), []);
  });

  test("commands without a cluster say so", async () => {
    const result = await cluster.haven(["--state-dir", "/nonexistent/haven", "status"]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /no cluster in \/nonexistent\/haven/);
  });
});
