// Runs inside a local cluster's guest network (`ip netns exec`): asks a canary guest for its last ack over
// TCP every INTERVAL_MS and prints "<asked at> <answered at> <seq>" (epoch ms) for every answer. A new request does not wait for the
// last one, so a slow answer (busybox httpd forks per request, under TCG) or a lost SYN (retried only after
// a second) does not stop the clock's ticks: the gaps between answers are what the guest made them.
// Usage: net-probe-client.js ADDRESS PORT INTERVAL_MS [MARKER]   (MARKER only tags the process)
import { connect } from "node:net";

const [address = "", port = "80", interval = "20"] = process.argv.slice(2);
const ATTEMPT_TIMEOUT_MS = 2000;
const MAX_OUTSTANDING = 100;
let outstanding = 0;

function ask(): Promise<number | undefined> {
  return new Promise((resolve) => {
    let answer = "";
    const socket = connect({ host: address, port: Number(port) });
    const done = (seq: number | undefined) => {
      socket.destroy();
      resolve(seq);
    };
    socket.setTimeout(ATTEMPT_TIMEOUT_MS, () => done(undefined));
    socket.on("error", () => done(undefined));
    socket.on("connect", () => socket.write("GET / HTTP/1.0\r\n\r\n"));
    socket.on("data", (chunk: Buffer) => (answer += chunk.toString("latin1")));
    socket.on("end", () => {
      const seq = /ack (\d+)/.exec(answer)?.[1];
      done(seq === undefined ? undefined : Number(seq));
    });
  });
}

setInterval(() => {
  if (outstanding >= MAX_OUTSTANDING) return;
  outstanding++;
  const askedAt = Date.now();
  void ask().then((seq) => {
    outstanding--;
    if (seq !== undefined) process.stdout.write(`${askedAt} ${Date.now()} ${seq}\n`);
  });
}, Number(interval));
