// What the RBD backend reads from Ceph's tools: zod schemas for their `--format json` answers (lenient where
// Ceph omits fields between releases), and the one mapping from a failed command to Haven's semantic errors.
// Pure functions, so the unit tests can feed them recorded samples.
import { z } from "zod";
import { conflict, HavenError, notFound, unavailable } from "../../core/errors.js";
import { healthChecksSchema } from "../ceph/status.js";
import { CommandError } from "../../lib/command.js";
import type { CephIdentity } from "../ceph/exec.js";

const parentSchema = z.looseObject({
  pool: z.string(),
  pool_namespace: z.string().optional().default(""),
  image: z.string(),
  snapshot: z.string(),
});

/** `rbd info --format json POOL/IMAGE` */
export const rbdInfoSchema = z.looseObject({
  name: z.string(),
  size: z.number().int().nonnegative(),
  features: z.array(z.string()).optional().default([]),
  snapshot_count: z.number().int().optional(),
  parent: parentSchema.optional(),
});
export type RbdInfo = z.infer<typeof rbdInfoSchema>;

/** `rbd ls -l --format json`: images and, with a `snapshot` field, their snapshots. */
export const rbdLsLongSchema = z.array(
  z.looseObject({
    image: z.string(),
    snapshot: z.string().optional(),
    size: z.number().int().nonnegative(),
    parent: parentSchema.optional(),
  }),
);

/** `rbd du --format json [-p POOL | POOL/IMAGE]` */
/** `rbd diff --format json`: the allocated extents ("exists" is the string "true" or "false"). */
export const rbdDiffSchema = z.array(
  z
    .looseObject({
      offset: z.number().int().nonnegative(),
      length: z.number().int().nonnegative(),
      exists: z.enum(["true", "false"]),
    })
    .transform((e) => ({ offset: e.offset, length: e.length, exists: e.exists === "true" })),
);

export const rbdDuSchema = z.looseObject({
  images: z
    .array(
      z.looseObject({
        name: z.string(),
        snapshot: z.string().optional(),
        provisioned_size: z.number().int().nonnegative(),
        used_size: z.number().int().nonnegative(),
      }),
    )
    .optional()
    .default([]),
  total_provisioned_size: z.number().int().nonnegative().optional(),
  total_used_size: z.number().int().nonnegative().optional(),
});
export type RbdDu = z.infer<typeof rbdDuSchema>;

/** `rbd snap ls --format json POOL/IMAGE`; Ceph writes `protected` as the string "true"/"false". */
export const rbdSnapLsSchema = z.array(
  z.looseObject({
    id: z.number().int().optional(),
    name: z.string(),
    size: z.number().int().nonnegative(),
    protected: z.union([z.boolean(), z.enum(["true", "false"])]).optional(),
    timestamp: z.string().optional(),
  }),
);

/** `rbd children --format json POOL/IMAGE@SNAP` */
export const rbdChildrenSchema = z.array(
  z.looseObject({ pool: z.string(), pool_namespace: z.string().optional().default(""), image: z.string() }),
);

/** `rbd status --format json POOL/IMAGE` */
/** `rbd lock ls --format json`: a list in Ceph 16 (older releases answered with an object keyed by lock id). */
export const rbdLocksSchema = z
  .union([
    z.array(z.looseObject({ id: z.string(), locker: z.string(), address: z.string() })),
    z.record(z.string(), z.looseObject({ locker: z.string(), address: z.string() })),
  ])
  .transform((locks) =>
    Array.isArray(locks) ? locks : Object.entries(locks).map(([id, lock]) => ({ id, ...lock })),
  );

export const rbdStatusSchema = z.looseObject({
  watchers: z
    .array(
      z.looseObject({ address: z.string(), client: z.number().optional(), cookie: z.number().optional() }),
    )
    .optional()
    .default([]),
});

/** `ceph health --format json` */
export const cephHealthSchema = z.looseObject({ status: z.string(), checks: healthChecksSchema });
export type CephHealth = z.infer<typeof cephHealthSchema>;

/** `ceph osd pool ls --format json` */
export const cephPoolLsSchema = z.array(z.string());

/** `qemu-img info --output=json FILE` */
export const qemuImgInfoSchema = z.looseObject({
  format: z.string(),
  "virtual-size": z.number().int().nonnegative(),
});

/** Parses a tool's JSON answer with `schema`; a malformed answer is Ceph misbehaving, not a user error. */
export function parseJson<T>(schema: z.ZodType<T>, text: string, what: string): T {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw unavailable(`${what} did not answer JSON: ${oneLine(text).slice(0, 200)}`);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw unavailable(`${what} answered unexpected JSON (${issue?.path.join(".")}: ${issue?.message})`);
  }
  return parsed.data;
}

/** `pool/image@snap` (with the namespace when there is one), as ImageInfo.parent spells it. */
export function parentName(parent: z.infer<typeof parentSchema> | undefined): string | null {
  if (!parent) return null;
  const namespace = parent.pool_namespace ? `${parent.pool_namespace}/` : "";
  return `${parent.pool}/${namespace}${parent.image}@${parent.snapshot}`;
}

export const isProtected = (value: boolean | "true" | "false" | undefined): boolean =>
  value === true || value === "true";

/** Used bytes of the image head (not its snapshots) in a `rbd du` answer. */
export function headUsedBytes(du: RbdDu, image: string): number {
  return du.images.find((entry) => entry.name === image && entry.snapshot === undefined)?.used_size ?? 0;
}

/** Whether the pool can serve I/O: HEALTH_OK, or HEALTH_WARN without unavailable PGs, all OSDs down or a full pool. */
export function healthVerdict(health: CephHealth): { ok: boolean; summary: string } {
  const blocking = ["PG_AVAILABILITY", "OSD_ROOT_DOWN", "OSD_FULL", "POOL_FULL"];
  const ok =
    health.status === "HEALTH_OK" ||
    (health.status === "HEALTH_WARN" && !blocking.some((code) => code in health.checks));
  const reasons = Object.entries(health.checks).map(([code, check]) => check.summary?.message ?? code);
  return { ok, summary: reasons.length > 0 ? `${health.status}: ${reasons.join("; ")}` : health.status };
}

/** Ceph's local-time `Tue Nov 24 13:44:48 2026` as ISO 8601 (null when absent or unparsable). */
export function snapshotTime(timestamp: string | undefined): string | null {
  if (!timestamp) return null;
  const time = new Date(timestamp);
  return Number.isNaN(time.getTime()) ? timestamp : time.toISOString();
}

/** What a failed command means in the place it failed; each field a one-line message. */
export interface ErrorContext {
  pool: string;
  identity: CephIdentity;
  /** The meaning of "(2) No such file or directory" here, e.g. "disk X does not exist". */
  missing?: string;
  /** The meaning of "(17) File exists", e.g. "disk X already exists". */
  exists?: string;
  /** The meaning of "(16) Device or resource busy" / "image still has watchers". */
  busy?: string;
}

/**
 * Turns a failed rbd/ceph/qemu-img run into INPUT/NOT_FOUND/CONFLICT/UNAVAILABLE with one clear line;
 * anything it does not recognise is returned unchanged (a bug to look at, with its stack).
 */
export function mapCephError(err: unknown, context: ErrorContext): unknown {
  if (err instanceof HavenError || !(err instanceof CommandError)) return err;
  const { pool, identity } = context;
  const text = meaningfulStderr(err.stderr);
  const detail = lastLine(text);
  const tool = err.command.split(" ")[0] ?? "ceph";
  if (err.exitCode === -1) return unavailable(`cannot run ${tool}: ${detail}`, err);
  if (err.exitCode === null)
    return unavailable(`Ceph is unreachable: ${tool} got no answer in time (${detail})`, err);
  if (/unable to open config file|did not load config file/.test(text))
    return unavailable(`Ceph is unreachable: cannot read the Ceph config ${identity.conf}`, err);
  // librados' "unable to find a keyring" line can be lost before the tool exits; the errno line stays.
  if (
    /unable to find a keyring|keyring not found|no keyring found|\[errno 2\][^\n]*error connecting to the cluster/.test(
      text,
    )
  )
    return unavailable(
      `Ceph refused the credentials in ${identity.keyring}: the keyring cannot be read`,
      err,
    );
  if (
    /authenticate timed out|^timed out$|couldn't connect to the cluster/m.test(text) &&
    /timed out|\(110\)/.test(text)
  )
    return unavailable(
      `Ceph is unreachable: the monitors in ${identity.conf} did not answer (${detail})`,
      err,
    );
  if (/timed out|\(110\)|errno 110|\(108\)|Cannot send after transport endpoint shutdown/.test(text))
    return unavailable(`Ceph is unreachable: requests to pool ${pool} timed out (${detail})`, err);
  if (
    /handle_auth_bad_method|\(1\) Operation not permitted|\(13\) Permission denied|permission denied|authenticat|\bauth\b/i.test(
      text,
    )
  )
    return unavailable(
      `Ceph refused the credentials in ${identity.keyring} for client.${identity.id} (${detail})`,
      err,
    );
  if (/error opening pool|pool .* does not exist|\(2\) No such file or directory.*pool/i.test(text))
    return notFound(`pool ${pool} does not exist`);
  if (/\(2\) No such file or directory|No such snapshot/.test(text) && context.missing)
    return notFound(context.missing);
  if (/\(17\) File exists|already exists/.test(text) && context.exists) return conflict(context.exists);
  if (/still has watchers|\(16\) Device or resource busy/.test(text) && context.busy)
    return conflict(context.busy);
  if (/couldn't connect to the cluster/.test(text))
    return unavailable(`Ceph is unreachable: ${tool} could not connect (${detail})`, err);
  return err;
}

/** Stderr without the noise the `ceph` CLI always prints about the default keyring search list. */
export function meaningfulStderr(stderr: string): string {
  return stderr
    .split("\n")
    .map((line) => line.replace(/^\d{4}-\d\d-\d\dT\S+ [0-9a-f]+ +-?\d+ /, "").trim())
    .filter((line) => line !== "" && !line.includes("/etc/ceph/keyring.bin"))
    .join("\n");
}

const lastLine = (text: string): string => oneLine(text.split("\n").at(-1) ?? "") || "no error output";

const oneLine = (text: string): string => text.replace(/\s+/g, " ").trim();
