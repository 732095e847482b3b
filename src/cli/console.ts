// `haven vm console`: an HTTP upgrade to the node that runs the VM, then raw bytes both ways.
// Ctrl-] leaves, as in telnet and virsh.
import { request } from "node:http";
import { request as tlsRequest } from "node:https";
import type { Socket } from "node:net";
import type { NodeView } from "../api/service.js";
import { conflict, unavailable } from "../core/errors.js";
import type { VmView } from "../core/model.js";
import { readCa, type CliContext } from "./context.js";
import { readToken } from "../setup/local-cluster.js";

const LEAVE_KEY = 0x1d; // Ctrl-]

export async function openConsole(ctx: CliContext, vm: string): Promise<void> {
  const api = await ctx.api();
  const view = await api.get<VmView>(`/v1/vms/${encodeURIComponent(vm)}`);
  if (!view.node || view.state !== "running") throw conflict(`VM ${vm} is not running (state ${view.state})`);
  const node = (await api.get<NodeView[]>("/v1/nodes")).find((n) => n.name === view.node);
  if (!node) throw unavailable(`node ${view.node} running ${vm} is not online`);
  const cluster = await ctx.cluster();
  const url = `${node.api}/v1/vms/${encodeURIComponent(vm)}/console`;
  const socket = await upgrade(url, await readToken(cluster), await readCa(cluster));
  process.stderr.write(`Connected to the serial console of ${vm} on ${view.node}. Leave with Ctrl-].\n`);
  await pipeTerminal(socket);
  process.stderr.write("\nConsole closed.\n");
}

/** An HTTP upgrade (fetch cannot do one); over HTTPS it trusts the cluster CA alone. */
function upgrade(url: string, token: string, ca: string | undefined): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const headers = { authorization: `Bearer ${token}`, connection: "Upgrade", upgrade: "haven-console" };
    const req = url.startsWith("https:") ? tlsRequest(url, { headers, ca }) : request(url, { headers });
    req.on("upgrade", (_res, socket) => resolve(socket));
    req.on("response", (res) => {
      let body = "";
      res.on("data", (chunk: Buffer) => (body += chunk.toString()));
      res.on("end", () => reject(conflict(body.trim() || `console refused (HTTP ${res.statusCode})`)));
    });
    req.on("error", (err) => reject(unavailable(`cannot reach ${url}: ${err.message}`)));
    req.end();
  });
}

function pipeTerminal(socket: Socket): Promise<void> {
  const stdin = process.stdin;
  return new Promise((resolve) => {
    const finish = () => {
      if (stdin.isTTY) stdin.setRawMode(false);
      stdin.off("data", onInput);
      stdin.pause();
      socket.destroy();
      resolve();
    };
    const onInput = (chunk: Buffer) => {
      const leaveAt = chunk.indexOf(LEAVE_KEY);
      if (leaveAt >= 0) {
        socket.write(chunk.subarray(0, leaveAt));
        finish();
      } else socket.write(chunk);
    };
    if (stdin.isTTY) stdin.setRawMode(true);
    stdin.on("data", onInput);
    // Scripts that pipe input get a second of output after their input ends.
    stdin.on("end", () => setTimeout(finish, 1000));
    stdin.resume();
    socket.on("data", (chunk: Buffer) => process.stdout.write(chunk));
    socket.on("close", finish);
    socket.on("error", finish);
  });
}
