// The CLI's API client against small local HTTP(S) servers standing in for nodes: a frozen node is skipped, a
// live node gets the time its request needs, and a request a live node did not finish is not sent elsewhere.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { createServer as createTlsServer } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import { after, describe, test } from "node:test";
import { ApiClient } from "../../src/cli/api-client.js";
import { createClusterCa, issueNodeCredentials, nodeFiles } from "../../src/setup/pki.js";

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

const timeouts = { liveMs: 200, requestMs: 1000 };

void describe("ApiClient", () => {
  test("a frozen node is skipped; a live one gets longer than the liveness check for its answer", async () => {
    const [frozen, slow] = [await node(Infinity), await node(600)];
    const client = new ApiClient([frozen.url, slow.url], "t", undefined, timeouts);
    assert.deepEqual(await client.get("/v1/status"), { from: "/v1/status" });
    assert.equal(frozen.asked.get("/v1/status"), undefined, "the frozen node was not given the work");
    assert.equal(slow.asked.get("/healthz"), 1);
  });

  test("a request may take longer than the default when it says so", async () => {
    const slower = await node(1500);
    const client = new ApiClient([slower.url], "t", undefined, timeouts);
    assert.deepEqual(await client.get("/v1/verify", { timeoutMs: 10_000 }), { from: "/v1/verify" });
  });

  test("a request a live node did not finish in time is not sent to another node", async () => {
    const [slower, other] = [await node(2000), await node(0)];
    const client = new ApiClient([slower.url, other.url], "t", undefined, timeouts);
    await assert.rejects(client.post("/v1/vms/a/start"), {
      code: "UNAVAILABLE",
      message: new RegExp(`^${slower.url} did not finish POST /v1/vms/a/start within 1 s`),
    });
    assert.equal(other.asked.get("/v1/vms/a/start"), undefined);
  });

  test("a node that refuses connections is skipped", async () => {
    const [gone, live] = [await node(0), await node(0)];
    servers.at(-2)!.close();
    servers.at(-2)!.closeAllConnections();
    const client = new ApiClient([gone.url, live.url], "t", undefined, timeouts);
    assert.deepEqual(await client.get("/v1/vms"), { from: "/v1/vms" });
  });

  test("over HTTPS it trusts the cluster CA it is given, and no other", async () => {
    const dir = await mkdtemp(join(tmpdir(), "haven-api-tls-"));
    try {
      const ca = await createClusterCa(join(dir, "ca"), "test");
      const other = await createClusterCa(join(dir, "other"), "other");
      const creds = await issueNodeCredentials(ca.dir, "node1", ["127.0.0.1"], join(dir, "node1"));
      const read = (file: string) => readFile(join(creds.dir, file), "utf8");
      const server = createTlsServer(
        { key: await read(nodeFiles.serverKey), cert: await read(nodeFiles.serverCert) },
        (req, res) => res.end(JSON.stringify({ from: req.url })),
      );
      servers.push(server);
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const trusting = new ApiClient([url], "t", await readFile(ca.certFile, "utf8"), timeouts);
      assert.deepEqual(await trusting.get("/v1/vms"), { from: "/v1/vms" });
      for (const pem of [undefined, await readFile(other.certFile, "utf8")]) {
        const client = new ApiClient([url], "t", pem, timeouts);
        await assert.rejects(client.get("/v1/vms"), { code: "UNAVAILABLE", message: /certificate/ });
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
