// The dispatchers every connection to a Haven endpoint goes through: where they connect from.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { clientDispatcher } from "../../src/lib/tls.js";

test("a client dispatcher's connections leave from its local address", async () => {
  const server = createServer((req, res) => res.end(req.socket.remoteAddress));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  try {
    const from = async (localAddress?: string) => {
      const dispatcher = clientDispatcher({ ...(localAddress && { localAddress }) });
      const response = await fetch(`http://127.0.0.1:${port}/`, { dispatcher });
      await dispatcher?.close();
      return response.text();
    };
    assert.equal(await from("127.0.10.7"), "127.0.10.7");
    assert.equal(await from(), "127.0.0.1");
    assert.equal(clientDispatcher({}), undefined, "no dispatcher when nothing is asked for");
  } finally {
    server.close();
  }
});
