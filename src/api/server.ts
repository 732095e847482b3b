// The HTTP API of havend: JSON over HTTP on the node's own loopback address, behind a bearer token.
// Errors map to status codes in one place (core/errors.ts); user errors carry one clear message.
import { timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createTlsServer } from "node:https";
import { connect } from "node:net";
import type { Duplex } from "node:stream";
import { z } from "zod";
import { HavenError, httpStatusOf, inputError, notFound } from "../core/errors.js";
import { fenceAgentSchema } from "../core/model.js";
import { EtcdUnavailableError } from "../adapters/etcd/port.js";
import type { Logger } from "../lib/log.js";
import {
  cloneRequest,
  createDiskRequest,
  createVmRequest,
  maintenanceRequest,
  manualConstraintRequest,
  migrateRequest,
  migrationDefaultsChange,
  placementStrategyRequest,
  shutdownPolicyRequest,
  updateVmRequest,
  resizeDiskRequest,
  snapshotRequest,
} from "./requests.js";
import { poolNameSchema } from "../core/names.js";
import type { HavenService } from "./service.js";
import type { ImportService } from "./import-service.js";
import { importCibRequest, importCrmRequest, importLibvirtRequest, joinTokenRequest } from "./requests.js";
import type { JoinService } from "./join-service.js";
import { joinRequestSchema } from "../core/join.js";

const MAX_BODY_BYTES = 64 * 1024;
/** An imported crm file with all its libvirt domains. */
const MAX_IMPORT_BYTES = 8 * 1024 * 1024;

type Handler = (params: string[], body: () => Promise<unknown>, query: URLSearchParams) => Promise<unknown>;
interface Route {
  method: string;
  pattern: RegExp;
  handler: Handler;
  /** Larger bodies than MAX_BODY_BYTES, for routes that carry whole configuration files. */
  maxBodyBytes?: number;
  /** Served without the bearer token: what a joining server needs before it has any credentials. */
  open?: boolean;
}

export interface ApiOptions {
  service: HavenService;
  token: string;
  log: Logger;
  /** Serial console socket of a VM running on this node, or undefined when it does not run here. */
  consoleSocket: (vm: string) => string | undefined;
  /** Imports of Pacemaker (crm) and libvirt configuration; without it, /v1/import/* answers 404. */
  imports?: ImportService;
  /** Join tokens and the joining of servers; without it, those routes answer 404. */
  joins?: JoinService;
  /** The node's key and certificate (PEM): the API is served over HTTPS with them, else over plain HTTP. */
  tls?: { key: string; cert: string };
}

export function createApiServer(options: ApiOptions): Server {
  const routes = buildRoutes(options.service);
  if (options.imports) routes.push(...importRoutes(options.imports));
  if (options.joins) routes.push(...joinRoutes(options.joins));
  const listener = (req: IncomingMessage, res: ServerResponse) => void handle(req, res, routes, options);
  const server = options.tls ? createTlsServer(options.tls, listener) : createServer(listener);
  server.on("upgrade", (req: IncomingMessage, socket: Duplex) => upgradeConsole(req, socket, options));
  return server;
}

function buildRoutes(service: HavenService): Route[] {
  const parse = async <T>(schema: z.ZodType<T>, body: () => Promise<unknown>): Promise<T> => {
    const result = schema.safeParse(await body());
    if (!result.success) throw inputError(describeIssues(result.error));
    return result.data;
  };
  const route = (method: string, path: string, handler: Handler): Route => ({
    method,
    pattern: new RegExp(`^${path.replace(/:name/g, "([^/]+)")}$`),
    handler,
  });
  return [
    route("GET", "/v1/status", () => service.status()),
    route("GET", "/v1/nodes", () => service.listNodes()),
    route("GET", "/v1/vms", () => service.listVms()),
    route("POST", "/v1/vms", async (_, body) => service.createVm(await parse(createVmRequest, body))),
    route("GET", "/v1/vms/:name", ([name]) => service.showVm(name!)),
    route("DELETE", "/v1/vms/:name", async ([name]) => {
      await service.deleteVm(name!);
      return { deleted: name };
    }),
    route("PATCH", "/v1/vms/:name", async ([name], body) =>
      service.updateVm(name!, await parse(updateVmRequest, body)),
    ),
    route("POST", "/v1/vms/:name/start", ([name]) => service.setDesiredState(name!, "started")),
    route("POST", "/v1/vms/:name/stop", ([name]) => service.setDesiredState(name!, "stopped")),
    route("POST", "/v1/vms/:name/reboot", ([name]) => service.guestAction(name!, "reboot")),
    route("POST", "/v1/vms/:name/reset", ([name]) => service.guestAction(name!, "reset")),
    route("GET", "/v1/vms/:name/explain", ([name]) => service.explainVm(name!)),
    route("GET", "/v1/vms/:name/canary", ([name]) => service.verifyCanary(name!)),
    route("GET", "/v1/disks", (_, __, query) => service.listDisks(poolOf(query))),
    route("POST", "/v1/disks", async (_, body, query) => {
      const { name, sizeMb } = await parse(createDiskRequest, body);
      return service.createDisk(name, sizeMb, poolOf(query));
    }),
    route("GET", "/v1/disks/:name", ([name], __, query) => service.diskInfo(name!, poolOf(query))),
    route("POST", "/v1/disks/:name/resize", async ([name], body, query) => {
      const { sizeMb, allowShrink } = await parse(resizeDiskRequest, body);
      return service.resizeDisk(name!, sizeMb, allowShrink, poolOf(query));
    }),
    route("DELETE", "/v1/disks/:name", async ([name], __, query) => {
      await service.deleteDisk(name!, poolOf(query));
      return { deleted: name };
    }),
    route("GET", "/v1/disks/:name/snapshots", ([name], __, query) =>
      service.listSnapshots(name!, poolOf(query)),
    ),
    route("POST", "/v1/disks/:name/snapshots", async ([name], body, query) => {
      const { snapshot } = await parse(snapshotRequest, body);
      return service.createSnapshot(name!, snapshot, poolOf(query));
    }),
    route("POST", "/v1/disks/:name/snapshots/:name/rollback", async ([name, snapshot], __, query) => {
      await service.rollbackSnapshot(name!, snapshot!, poolOf(query));
      return { rolledBack: `${name}@${snapshot}` };
    }),
    route("DELETE", "/v1/disks/:name/snapshots/:name", async ([name, snapshot], __, query) => {
      await service.deleteSnapshot(name!, snapshot!, poolOf(query));
      return { deleted: `${name}@${snapshot}` };
    }),
    route("POST", "/v1/disks/:name/clone", async ([name], body, query) => {
      const { snapshot, target } = await parse(cloneRequest, body);
      return service.cloneDisk(name!, snapshot, target, poolOf(query));
    }),
    route("GET", "/v1/storage/ceph", () => service.cephStatus()),
    route("POST", "/v1/vms/:name/migrate", async ([name], body) =>
      service.requestMigration(name!, await parse(migrateRequest, body)),
    ),
    route("POST", "/v1/vms/:name/migrate/cancel", ([name]) => service.cancelMigration(name!)),
    route("GET", "/v1/migration/defaults", () => service.migrationDefaults()),
    route("PATCH", "/v1/migration/defaults", async (_, body) =>
      service.setMigrationDefaults(await parse(migrationDefaultsChange, body)),
    ),
    route("PUT", "/v1/nodes/:name/maintenance", async ([node], body) =>
      service.setMaintenance(node!, (await parse(maintenanceRequest, body)).on),
    ),
    route("GET", "/v1/shutdown-policy", () => service.shutdownPolicy()),
    route("PUT", "/v1/shutdown-policy", async (_, body) =>
      service.setShutdownPolicy((await parse(shutdownPolicyRequest, body)).policy),
    ),
    route("GET", "/v1/placement/strategy", () => service.placementStrategy()),
    route("PUT", "/v1/placement/strategy", async (_, body) =>
      service.setPlacementStrategy((await parse(placementStrategyRequest, body)).strategy),
    ),
    route("GET", "/v1/constraints", () => service.listConstraints()),
    route("POST", "/v1/constraints", async (_, body) =>
      service.addConstraint(await parse(manualConstraintRequest, body)),
    ),
    route("DELETE", "/v1/constraints/:name", async ([id]) => {
      await service.deleteConstraint(id!);
      return { deleted: id };
    }),
    route("GET", "/v1/fencing", () => service.fencing()),
    route("PUT", "/v1/fencing/agents/:name", async ([node], body) =>
      service.setFenceAgent(node!, await parse(fenceAgentSchema.strict(), body)),
    ),
    route("DELETE", "/v1/fencing/agents/:name", async ([node]) => {
      await service.clearFenceAgent(node!);
      return { deleted: node };
    }),
    route("GET", "/v1/events", (_, __, query) =>
      service.events(limitOf(query), query.get("after") ?? undefined),
    ),
  ];
}

/**
 * `haven node add NAME` and `haven node remove NAME` (behind the token) and what `haven join` asks (open: the CA
 * certificate, which the joining server checks against the token's fingerprint, and the join itself,
 * authorised by the token's secret).
 */
function joinRoutes(joins: JoinService): Route[] {
  return [
    {
      method: "POST",
      pattern: /^\/v1\/nodes\/([^/]+)\/join-token$/,
      handler: async ([node], body) => {
        const parsed = joinTokenRequest.safeParse(await body());
        if (!parsed.success) throw inputError(describeIssues(parsed.error));
        return joins.issueToken(node!, parsed.data.ttlSeconds);
      },
    },
    {
      method: "DELETE",
      pattern: /^\/v1\/nodes\/([^/]+)$/,
      handler: ([node], _, query) => joins.removeNode(node!, query.get("force") === "true"),
    },
    {
      method: "GET",
      pattern: /^\/v1\/ca$/,
      open: true,
      handler: () => Promise.resolve(joins.caCertificate()),
    },
    {
      method: "POST",
      pattern: /^\/v1\/join$/,
      open: true,
      handler: async (_, body) => {
        const parsed = joinRequestSchema.safeParse(await body());
        if (!parsed.success) throw inputError(describeIssues(parsed.error));
        return joins.join(parsed.data);
      },
    },
  ];
}

/** `haven import crm FILE` and `haven vm create NAME --from-libvirt FILE` (docs/import.md). */
function importRoutes(imports: ImportService): Route[] {
  const post = <T>(path: string, schema: z.ZodType<T>, handler: (request: T) => Promise<unknown>): Route => ({
    method: "POST",
    pattern: new RegExp(`^${path}$`),
    maxBodyBytes: MAX_IMPORT_BYTES,
    handler: async (_, body) => {
      const result = schema.safeParse(await body());
      if (!result.success) throw inputError(describeIssues(result.error));
      return handler(result.data);
    },
  });
  return [
    post("/v1/import/crm", importCrmRequest, (request) => imports.importCrm(request)),
    post("/v1/import/cib", importCibRequest, (request) => imports.importCib(request)),
    post("/v1/import/libvirt", importLibvirtRequest, (request) => imports.importLibvirt(request)),
  ];
}

async function handle(req: IncomingMessage, res: ServerResponse, routes: Route[], options: ApiOptions) {
  const url = new URL(req.url ?? "/", "http://haven");
  try {
    // Liveness of this havend, for clients choosing a node and for monitoring: no token, no etcd round trip.
    if (url.pathname === "/healthz" && req.method === "GET") return send(res, 200, { ok: true });
    const matches = routes.filter((r) => r.pattern.test(url.pathname));
    const route = matches.find((r) => r.method === req.method);
    if (!route?.open && !authorized(req, options.token)) {
      return send(res, 401, { error: { code: "UNAUTHORIZED", message: "missing or wrong bearer token" } });
    }
    if (matches.length === 0) throw notFound(`no API route ${url.pathname}`);
    if (!route)
      return send(res, 405, { error: { code: "METHOD", message: `${req.method} not allowed here` } });
    const params = (route.pattern.exec(url.pathname) ?? []).slice(1).map(decodeURIComponent);
    const body = () => readJson(req, route.maxBodyBytes ?? MAX_BODY_BYTES);
    send(res, 200, await route.handler(params, body, url.searchParams));
  } catch (err) {
    if (err instanceof HavenError)
      return send(res, httpStatusOf(err.code), { error: { code: err.code, message: err.message } });
    // This node cannot reach etcd (a cut link, a lost quorum): another node may, so 503, not a defect.
    if (err instanceof EtcdUnavailableError)
      return send(res, httpStatusOf("UNAVAILABLE"), { error: { code: "UNAVAILABLE", message: err.message } });
    options.log.error("request failed", { method: req.method, path: url.pathname, err });
    send(res, 500, { error: { code: "INTERNAL", message: (err as Error).message } });
  }
}

function authorized(req: IncomingMessage, token: string): boolean {
  const given = Buffer.from(req.headers.authorization ?? "");
  const expected = Buffer.from(`Bearer ${token}`);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

async function readJson(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw inputError(`request body larger than ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  if (text.trim() === "") return {};
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw inputError("request body is not valid JSON");
  }
}

function send(res: ServerResponse, status: number, body: unknown) {
  const text = JSON.stringify(body ?? null);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function limitOf(query: URLSearchParams): number {
  const limit = Number(query.get("limit") ?? 100);
  if (!Number.isInteger(limit) || limit < 1 || limit > 10000) throw inputError("limit must be 1-10000");
  return limit;
}

function poolOf(query: URLSearchParams): string | undefined {
  const pool = query.get("pool");
  if (pool === null) return undefined;
  const parsed = poolNameSchema.safeParse(pool);
  if (!parsed.success) throw inputError(describeIssues(parsed.error));
  return parsed.data;
}

export function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => (issue.path.length > 0 ? `${issue.path.join(".")}: ${issue.message}` : issue.message))
    .join("; ");
}

/** `GET /v1/vms/NAME/console` with `Upgrade: haven-console` turns the connection into the raw serial line. */
function upgradeConsole(req: IncomingMessage, socket: Duplex, options: ApiOptions): void {
  const refuse = (status: number, message: string) => {
    socket.end(`HTTP/1.1 ${status} ${message}\r\ncontent-type: text/plain\r\n\r\n${message}\n`);
  };
  const match = /^\/v1\/vms\/([^/]+)\/console$/.exec(new URL(req.url ?? "/", "http://haven").pathname);
  if (!authorized(req, options.token)) return refuse(401, "missing or wrong bearer token");
  if (!match || req.headers.upgrade !== "haven-console") return refuse(404, "no such upgrade");
  const vm = decodeURIComponent(match[1]!);
  const path = options.consoleSocket(vm);
  if (!path) return refuse(409, `VM ${vm} is not running on this node`);
  const guest = connect(path);
  guest.once("error", (err) => refuse(409, `console of ${vm} is not available: ${err.message}`));
  guest.once("connect", () => {
    socket.write("HTTP/1.1 101 Switching Protocols\r\nupgrade: haven-console\r\nconnection: Upgrade\r\n\r\n");
    socket.pipe(guest).pipe(socket);
    socket.on("error", () => guest.destroy());
    guest.on("close", () => socket.end());
  });
}
