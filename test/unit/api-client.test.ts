// The CLI's API client against small local HTTP servers standing in for nodes: a frozen node is skipped, a
// slow operation gets its time on a node that answers, and is not started again elsewhere when it runs out.
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, describe, test } from "node:test";
import { ApiClient } from "../../src/cli/api-client.js";

const servers: Server[] = [];

/** A node whose routes answer after `delayMs` (never, for Infinity); counts the requests per path. */
async function node(delayMs: number): Promise<{ url: string; asked: Map<string, number> }> {
  const asked = new Map<string, number>();
  const server = createServer((req, res) => {
    asked.set(req.url!, (asked.get(req.url!) ?? 0) + 1);
    if (delayMs === Infinity) return; // accepts the connection, never answers: a frozen havend
    setTimeout(() => res.end(JSON.stringify({ from: req.url })), req.url === "/healthz" ? 0 : delayMs);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, asked };
}

after(() => {
  for (const server of servers) server.closeAllConnections();
  for (const server of servers) server.close();
});

const timeouts = { readMs: 200, writeMs: 1000 };

void describe("ApiClient", () => {
  test("a slow read gets its time on a node that answers /healthz; a frozen node is skipped", async () => {
    const [frozen, slow] = [await node(Infinity), await node(600)];
    const client = new ApiClient([frozen.url, slow.url], "t", timeouts);
    assert.deepEqual(await client.get("/v1/verify", { slowTimeoutMs: 10_000 }), { from: "/v1/verify" });
    assert.equal(frozen.asked.get("/v1/verify"), undefined, "the frozen node was not given the work");
    assert.equal(slow.asked.get("/healthz"), 1);
  });

  test("a plain read that takes longer than the read timeout moves on to the next node", async () => {
    const [slow, quick] = [await node(600), await node(0)];
    const client = new ApiClient([slow.url, quick.url], "t", timeouts);
    assert.deepEqual(await client.get("/v1/vms"), { from: "/v1/vms" });
    assert.equal(quick.asked.get("/v1/vms"), 1);
  });

  test("a slow operation that runs out of time is not started again on another node", async () => {
    const [slower, other] = [await node(2000), await node(0)];
    const client = new ApiClient([slower.url, other.url], "t", timeouts);
    await assert.rejects(client.get("/v1/verify", { slowTimeoutMs: 300 }), {
      code: "UNAVAILABLE",
      message: new RegExp(`^${slower.url} did not finish GET /v1/verify within 0.3 s`),
    });
    assert.equal(other.asked.get("/v1/verify"), undefined);
  });
});
