// Quorum with a 3-member etcd (Pacemaker's no-quorum-policy=stop): losing one member changes nothing;
// losing two stops every guest and starts none; restoring quorum brings the guests back, with no lost write.
import assert from "node:assert/strict";
import { after, afterEach, before, beforeEach, describe, test } from "node:test";
import type { CanaryReport } from "../../src/core/canary.js";
import type { VmView } from "../../src/core/model.js";
import { isAlive, processesMatching } from "../../src/lib/process.js";
import { eventually, SUITE_TIMEOUT, TestCluster } from "./harness.js";

const LEASE_TTL_MS = 5000;

describe("etcd quorum", SUITE_TIMEOUT, () => {
  let cluster: TestCluster;
  const show = (vm: string) => cluster.json<VmView>(["vm", "show", vm]);
  const ok = (args: string[]) => cluster.ok(args);
  const acking = (floor: number) =>
    eventually(
      `canary acking past ${floor}`,
      async () => {
        const view = await show("canary");
        return view.state === "running" && (view.lastAck ?? 0) > floor ? view : undefined;
      },
      90_000,
    );

  before(async () => {
    cluster = await TestCluster.start({ nodes: 3, extraArgs: ["--etcd-members", "3"] });
  });
  beforeEach(async () => {
    await ok(["vm", "create", "canary", "--canary", "--start"]);
  });
  afterEach(async () => {
    await cluster.reset();
  });
  after(async () => {
    await cluster?.stop();
  });

  test("one member lost: the same guest keeps running past a lease TTL", async () => {
    const before = await acking(3);
    await ok(["etcd", "kill", "etcd3"]);
    await new Promise((r) => setTimeout(r, LEASE_TTL_MS + 2000));
    const after = await acking(before.lastAck! + 10);
    assert.equal(after.pid, before.pid);
    assert.equal(after.restarts, 0);
    await ok(["etcd", "start", "etcd3"]);
  });

  test("quorum lost: every guest is stopped and none starts; quorum back: guests run again", async (t) => {
    const before = await acking(0);
    const lostAt = Date.now();
    await ok(["etcd", "kill", "etcd2"]);
    await ok(["etcd", "kill", "etcd3"]);
    await eventually(
      "guest stopped without quorum",
      () => Promise.resolve(isAlive(before.pid!) ? undefined : true),
      60_000,
    );
    t.diagnostic(`guest stopped ${Date.now() - lostAt} ms after quorum was lost`);
    await new Promise((r) => setTimeout(r, 2000));
    const guests = (await processesMatching(cluster.stateDir)).filter((p) =>
      p.cmdline.includes("qemu-system"),
    );
    assert.deepEqual(guests, [], "no guest runs anywhere without quorum");
    await ok(["etcd", "start", "etcd2"]);
    await ok(["etcd", "start", "etcd3"]);
    const back = await eventually(
      "guest back",
      async () => {
        const view = await show("canary");
        return view.state === "running" && view.pid !== before.pid && (view.lastAck ?? 0) > before.lastAck!
          ? view
          : undefined;
      },
      120_000,
    );
    t.diagnostic(`guest acking again on ${back.node}`);
    const report = await cluster.json<CanaryReport>(["canary", "verify", "canary"]);
    assert.deepEqual([report.gaps, report.corrupt, report.forks], [[], [], []]);
    const events = await cluster.json<Array<{ type: string; reason: string; time: string }>>([
      "events",
      "--limit",
      "200",
    ]);
    const fenced = events.filter((e) => e.type === "self-fenced" && Date.parse(e.time) >= lostAt);
    assert.ok(fenced.length > 0, "the guest's node self-fenced it");
    for (const event of fenced) assert.match(event.reason, /killed \d+ ms before the lease could expire/);
  });
});
