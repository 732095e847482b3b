import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import {
  QmpClient,
  QmpClosedError,
  QmpError,
  QmpTimeoutError,
  type QmpEvent,
} from "../../src/adapters/qemu/qmp.js";

interface Command {
  execute: string;
  arguments?: Record<string, unknown>;
  id?: string;
}

type Reply = (message: unknown) => void;

const dir = mkdtempSync(join(tmpdir(), "haven-test-qmp-"));
let serial = 0;
const servers: Server[] = [];

after(() => {
  for (const server of servers) server.close();
  rmSync(dir, { recursive: true, force: true });
});

/**
 * A fake QEMU monitor: sends the greeting, answers qmp_capabilities, and hands every other command to
 * `handle`. Lines end in \r\n like QEMU's.
 */
async function fakeQmp(
  handle: (command: Command, reply: Reply, socket: Socket) => void = () => undefined,
  options: { greet?: boolean } = {},
) {
  const path = join(dir, `qmp-${++serial}.sock`);
  const received: Command[] = [];
  const sockets: Socket[] = [];
  const server = createServer((socket) => {
    sockets.push(socket);
    const reply: Reply = (message) => socket.write(JSON.stringify(message) + "\r\n");
    if (options.greet !== false) {
      reply({
        QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 }, package: "fake" }, capabilities: ["oob"] },
      });
    }
    let buffer = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      buffer += chunk;
      let newline: number;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const command = JSON.parse(buffer.slice(0, newline)) as Command;
        buffer = buffer.slice(newline + 1);
        received.push(command);
        if (command.execute === "qmp_capabilities") reply({ return: {}, id: command.id });
        else handle(command, reply, socket);
      }
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return { path, received, sockets, server };
}

const event = (name: string, data?: Record<string, unknown>) => ({
  event: name,
  ...(data ? { data } : {}),
  timestamp: { seconds: 1700000000, microseconds: 250000 },
});

void describe("QmpClient", () => {
  void it("reads the greeting and negotiates capabilities", async () => {
    const fake = await fakeQmp((command, reply) => {
      if (command.execute === "query-status")
        reply({ return: { running: true, singlestep: false, status: "running" }, id: command.id });
    });
    const qmp = await QmpClient.connect(fake.path);
    assert.equal(fake.received[0]?.execute, "qmp_capabilities");
    assert.deepEqual(await qmp.queryStatus(), { running: true, status: "running" });
    qmp.close();
    await qmp.closed;
  });

  void it("matches interleaved replies by id and delivers events", async () => {
    const fake = await fakeQmp((command, reply, socket) => {
      if (command.execute === "slow") {
        setTimeout(() => reply({ return: { which: "slow" }, id: command.id }), 50);
      } else if (command.execute === "fast") {
        // An event, then the reply split across two writes, as a stream may deliver it.
        reply(event("RESUME"));
        const text = JSON.stringify({ return: { which: "fast" }, id: command.id }) + "\r\n";
        socket.write(text.slice(0, 7));
        setTimeout(
          () => socket.write(text.slice(7) + JSON.stringify(event("STOP", { reason: "x" })) + "\r\n"),
          10,
        );
      }
    });
    const qmp = await QmpClient.connect(fake.path);
    const events: QmpEvent[] = [];
    const unsubscribe = qmp.onEvent((e) => events.push(e));
    const [slow, fast] = await Promise.all([qmp.execute("slow"), qmp.execute("fast")]);
    assert.deepEqual(slow, { which: "slow" });
    assert.deepEqual(fast, { which: "fast" });
    assert.deepEqual(
      events.map((e) => [e.event, e.data, e.timeMs]),
      [
        ["RESUME", {}, 1700000000250],
        ["STOP", { reason: "x" }, 1700000000250],
      ],
    );
    const ids = fake.received.map((c) => c.id);
    assert.equal(new Set(ids).size, ids.length, "ids are unique");
    unsubscribe();
    qmp.close();
  });

  void it("passes arguments and turns error replies into QmpError", async () => {
    const fake = await fakeQmp((command, reply) =>
      reply({
        error: { class: "DeviceNotFound", desc: `no ${String(command.arguments?.device)}` },
        id: command.id,
      }),
    );
    const qmp = await QmpClient.connect(fake.path);
    await assert.rejects(qmp.execute("eject", { device: "cd0" }), (err: unknown) => {
      assert.ok(err instanceof QmpError);
      assert.equal(err.command, "eject");
      assert.equal(err.errorClass, "DeviceNotFound");
      assert.equal(err.desc, "no cd0");
      return true;
    });
    assert.deepEqual(fake.received.at(-1)?.arguments, { device: "cd0" });
    qmp.close();
  });

  void it("times out a command without breaking the connection", async () => {
    const late: Array<() => void> = [];
    const fake = await fakeQmp((command, reply) => {
      if (command.execute === "hang") late.push(() => reply({ return: "late", id: command.id }));
      else reply({ return: "prompt", id: command.id });
    });
    const qmp = await QmpClient.connect(fake.path);
    await assert.rejects(qmp.execute("hang", undefined, { timeoutMs: 50 }), QmpTimeoutError);
    for (const send of late) send();
    assert.equal(await qmp.execute("other"), "prompt");
    qmp.close();
  });

  void it("fails connect when there is no greeting in time", async () => {
    const fake = await fakeQmp(undefined, { greet: false });
    await assert.rejects(QmpClient.connect(fake.path, { timeoutMs: 100 }), /greeting/);
    await assert.rejects(QmpClient.connect(join(dir, "missing.sock")), /ENOENT/);
  });

  void it("writes a transcript line per message", async () => {
    const transcriptFile = join(dir, "qmp.log");
    const fake = await fakeQmp((command, reply) => {
      reply(event("POWERDOWN"));
      reply({ return: {}, id: command.id });
    });
    const qmp = await QmpClient.connect(fake.path, { transcriptFile });
    await qmp.systemPowerdown();
    qmp.close();
    await qmp.closed;
    const lines = readFileSync(transcriptFile, "utf8")
      .trim()
      .split("\n")
      .map(
        (line) => JSON.parse(line) as { time: string; direction: string; message: Record<string, unknown> },
      );
    assert.deepEqual(
      lines.map((l) => [
        l.direction,
        l.message?.execute ?? l.message?.event ?? Object.keys(l.message ?? {})[0],
      ]),
      [
        ["recv", "QMP"],
        ["send", "qmp_capabilities"],
        ["recv", "return"],
        ["send", "system_powerdown"],
        ["recv", "POWERDOWN"],
        ["recv", "return"],
        ["closed", undefined],
      ],
    );
    for (const line of lines) assert.ok(!Number.isNaN(Date.parse(line.time)));
  });

  void it("resolves closed and fails pending commands when the socket ends", async () => {
    const fake = await fakeQmp((command, _reply, socket) => {
      if (command.execute === "quit") socket.end();
    });
    const qmp = await QmpClient.connect(fake.path);
    const pending = qmp.execute("query-block");
    fake.sockets[0]?.destroy();
    await assert.rejects(pending, QmpClosedError);
    await qmp.closed;
    await assert.rejects(qmp.execute("query-status"), QmpClosedError);
  });

  void it("treats the socket closing during quit as success", async () => {
    const fake = await fakeQmp((command, _reply, socket) => {
      if (command.execute === "quit") socket.end();
    });
    const qmp = await QmpClient.connect(fake.path);
    await qmp.quit();
    await qmp.closed;
  });

  void it("parses query-block minimally", async () => {
    const fake = await fakeQmp((command, reply) =>
      reply({
        return: [
          {
            device: "",
            qdev: "vd0",
            locked: false,
            inserted: { "node-name": "disk0", file: "/d.img", ro: false, drv: "raw" },
          },
          { device: "floppy0", locked: false },
        ],
        id: command.id,
      }),
    );
    const qmp = await QmpClient.connect(fake.path);
    assert.deepEqual(await qmp.queryBlock(), [
      { device: "", qdev: "vd0", nodeName: "disk0", filename: "/d.img", readOnly: false },
      { device: "floppy0", qdev: undefined, nodeName: undefined, filename: undefined, readOnly: undefined },
    ]);
    qmp.close();
  });
});
