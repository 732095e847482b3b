// The QEMU guest agent (qemu-guest-agent inside the guest), over the VM's virtio-serial channel that QEMU
// exposes as a unix socket. Unlike QMP there is no greeting, and a guest without the agent simply never
// answers: every exchange has a timeout, and each one first syncs (guest-sync-delimited with a random id),
// which also discards any stale reply left in the channel by an earlier client that gave up.
import { randomInt } from "node:crypto";
import { connect, type Socket } from "node:net";
import { z } from "zod";
import type { GuestInfo } from "../../core/hardware.js";

const DEFAULT_TIMEOUT_MS = 3000;

const osInfoSchema = z.looseObject({
  "pretty-name": z.string().optional(),
  name: z.string().optional(),
  "kernel-release": z.string().optional(),
});

const interfacesSchema = z.array(
  z.looseObject({
    name: z.string(),
    "hardware-address": z.string().optional(),
    "ip-addresses": z
      .array(z.looseObject({ "ip-address": z.string(), "ip-address-type": z.string() }))
      .optional(),
  }),
);

/** The guest's OS and its addresses per MAC, or undefined when no agent answers in time. */
export async function readGuestInfo(
  socket: string,
  timeoutMs = DEFAULT_TIMEOUT_MS,
): Promise<GuestInfo | undefined> {
  return withAgent(socket, timeoutMs, async (ask) => {
    const os = osInfoSchema.parse(await ask("guest-get-osinfo"));
    const interfaces = interfacesSchema.parse(await ask("guest-network-get-interfaces"));
    const addresses: Record<string, string[]> = {};
    for (const nic of interfaces) {
      const mac = nic["hardware-address"]?.toLowerCase();
      if (!mac || mac === "00:00:00:00:00:00") continue;
      // Link-local IPv6 addresses say nothing an administrator can use.
      const ips = (nic["ip-addresses"] ?? [])
        .map((ip) => ip["ip-address"])
        .filter((ip) => !ip.toLowerCase().startsWith("fe80:"));
      if (ips.length > 0) addresses[mac] = ips;
    }
    const name = os["pretty-name"] ?? os.name;
    return { ...(name !== undefined && { os: name }), addresses };
  }).catch(() => undefined);
}

/** Asks the guest to reboot (`mode: reboot`) or power off; rejects when no agent answers. */
export async function guestShutdown(
  socket: string,
  mode: "reboot" | "powerdown",
  timeoutMs = DEFAULT_TIMEOUT_MS,
): Promise<void> {
  await withAgent(socket, timeoutMs, async (ask) => {
    // guest-shutdown sends no reply on success: the agent is busy shutting the guest down.
    await ask("guest-shutdown", { mode }, false);
  });
}

type Ask = (command: string, args?: Record<string, unknown>, reply?: boolean) => Promise<unknown>;

async function withAgent<T>(path: string, timeoutMs: number, work: (ask: Ask) => Promise<T>): Promise<T> {
  const socket = await open(path, timeoutMs);
  let buffer = "";
  const waiting: Array<(line: string) => void> = [];
  // latin1 keeps the 0xFF sentinel a single character; each line is decoded as UTF-8 once complete.
  socket.setEncoding("latin1").on("data", (chunk: string) => {
    buffer += chunk;
    for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
      const raw = buffer.slice(0, nl).replace(/^\xff/, "");
      const line = Buffer.from(raw, "latin1").toString("utf8").trim();
      buffer = buffer.slice(nl + 1);
      if (line !== "") waiting.shift()?.(line);
    }
  });
  const nextLine = () =>
    new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("the guest agent did not answer in time")), timeoutMs);
      waiting.push((line) => {
        clearTimeout(timer);
        resolve(line);
      });
    });
  const send = (message: object) => socket.write(JSON.stringify(message) + "\n");
  try {
    // The 0xFF sentinel makes the agent drop any half-read input; replies before ours are skipped by id.
    const id = randomInt(1, 2 ** 31);
    socket.write(Buffer.from([0xff]));
    send({ execute: "guest-sync-delimited", arguments: { id } });
    for (;;) {
      const reply = JSON.parse(await nextLine()) as { return?: unknown };
      if (reply.return === id) break;
    }
    const ask: Ask = async (command, args, reply = true) => {
      send(args ? { execute: command, arguments: args } : { execute: command });
      if (!reply) return undefined;
      const answer = JSON.parse(await nextLine()) as { return?: unknown; error?: { desc?: string } };
      if (answer.error) throw new Error(`guest agent ${command}: ${answer.error.desc ?? "failed"}`);
      return answer.return;
    };
    return await work(ask);
  } finally {
    socket.destroy();
  }
}

function open(path: string, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error("the guest agent channel did not open in time"));
    }, timeoutMs);
    socket.once("connect", () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}
