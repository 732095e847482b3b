// Invariant 2, "run only with a lease", with real processes: when etcd goes away, every agent kills its
// guests before its lease could have expired; when etcd returns, the guests come back and no write was lost.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { CanaryReport } from "../../src/core/canary.js";
import type { VmView } from "../../src/core/model.js";
import { isAlive, processesMatching } from "../../src/lib/process.js";
import { eventually, SUITE_TIMEOUT, TestCluster } from "./harness.js";

describe("self-fencing", SUITE_TIMEOUT, () => {
  let cluster: TestCluster;
  const show = (vm: string) => cluster.json<VmView>(["vm", "show", vm]);

  before(async () => {
    cluster = await TestCluster.start({ nodes: 2 });
  });
  after(async () => {
    await cluster?.stop();
  });

  test("etcd lost: guests are killed within the lease TTL; etcd back: guests run again, disk clean", async (t) => {
    assert.equal((await cluster.haven(["vm", "create", "canary", "--canary", "--start"])).code, 0);
    const running = await eventually("canary acking", async () => {
      const view = await show("canary");
      return view.state === "running" && (view.lastAck ?? 0) > 3 ? view : undefined;
    });

    const etcd = (await processesMatching(cluster.stateDir)).filter(({ cmdline }) =>
      /^\S*etcd /.test(cmdline),
    );
    assert.ok(etcd.length > 0, "found the cluster's etcd");
    const lostAt = Date.now();
    for (const { pid } of etcd) process.kill(pid, "SIGKILL");

    await eventually(
      "QEMU killed by its agent",
      () => Promise.resolve(isAlive(running.pid!) ? undefined : true),
      60_000,
    );
    t.diagnostic(`guest seen killed ${Date.now() - lostAt} ms after etcd was lost`);

    const up = await cluster.haven(["cluster", "up"]);
    assert.equal(up.code, 0, up.stderr);
    const back = await eventually(
      "canary running again",
      async () => {
        const view = await show("canary");
        return view.state === "running" && view.pid !== running.pid && (view.lastAck ?? 0) > running.lastAck!
          ? view
          : undefined;
      },
      90_000,
    );
    assert.equal(back.restarts, 0, "a self-fence is not the guest's crash");
    const report = await cluster.json<CanaryReport>(["canary", "verify", "canary"]);
    assert.deepEqual([report.gaps, report.corrupt, report.forks], [[], [], []]);
    // The agent's own account: its kills ended before etcd could let the lease expire (invariant 2).
    const events = await cluster.json<Array<{ type: string; reason: string }>>(["events", "--limit", "200"]);
    const fenced = events.find((e) => e.type === "self-fenced");
    t.diagnostic(fenced?.reason ?? "no self-fenced event");
    assert.match(fenced?.reason ?? "", /killed \d+ ms before the lease could expire/);
  });
});
