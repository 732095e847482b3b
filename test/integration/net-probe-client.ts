// Runs inside a local cluster's guest network (`ip netns exec`): keeps one TCP connection open to a canary
// guest's ack line service (port 81, guest/ack-server.sh) and asks it for its last ack every INTERVAL_MS,
// printing "<asked at> <answered at> <seq>" (epoch ms) for every answer — what a client with a long-lived
// connection (ssh, a database session) sees. An answer costs the guest no fork, so asking often does not
// load the TCG guest and the gaps between answers are what the guest and the network made them.
// A connection that leaves a question unanswered for a second (its guest died; the new one on another node
// does not know it) is dropped and a new one opened, each attempt bounded so a guest that is down does
// not stall the clock.
// Usage: net-probe-client.js ADDRESS PORT INTERVAL_MS [MARKER]   (MARKER only tags the process)
import { connect, type Socket } from "node:net";

const [address = "", port = "81", interval = "20"] = process.argv.slice(2);
const CONNECT_TIMEOUT_MS = 500;
const UNANSWERED_MS = 1000;

let open: Socket | undefined;
/** When each question on the open connection was asked, oldest first: answers come in order. */
let asked: number[] = [];

function reconnect(): void {
  const socket = connect({ host: address, port: Number(port), noDelay: true });
  const attempt = setTimeout(() => socket.destroy(), CONNECT_TIMEOUT_MS);
  let buffered = "";
  socket.on("connect", () => {
    clearTimeout(attempt);
    open = socket;
    asked = [];
  });
  socket.on("data", (chunk: Buffer) => {
    const lines = (buffered + chunk.toString("latin1")).split("\n");
    buffered = lines.pop() ?? "";
    for (const line of lines) {
      const askedAt = asked.shift();
      const seq = /^ack (\d+)/.exec(line)?.[1];
      if (askedAt !== undefined && seq !== undefined)
        process.stdout.write(`${askedAt} ${Date.now()} ${seq}\n`);
    }
  });
  socket.on("error", () => undefined);
  socket.on("close", () => {
    clearTimeout(attempt);
    if (open === socket) open = undefined;
    setTimeout(reconnect, Number(interval));
  });
}

setInterval(() => {
  if (!open) return;
  if (asked.length > 0 && Date.now() - asked[0]! > UNANSWERED_MS) {
    open.destroy();
    return;
  }
  asked.push(Date.now());
  open.write("?\n");
}, Number(interval));
reconnect();
