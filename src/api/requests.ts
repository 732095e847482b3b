// Request bodies of the HTTP API, validated at the boundary.
import { z } from "zod";
import {
  diskSizeMbSchema,
  imageNameSchema,
  memoryMbSchema,
  nameSchema,
  vcpusSchema,
  vmNameSchema,
} from "../core/model.js";

export const createVmRequest = z
  .object({
    name: vmNameSchema,
    canary: z.boolean().default(false),
    kernel: z.string().min(1, "kernel path is empty").optional(),
    initrd: z.string().min(1, "initrd path is empty").optional(),
    append: z.string().optional(),
    memoryMb: memoryMbSchema.optional(),
    vcpus: vcpusSchema.optional(),
    diskSizeMb: diskSizeMbSchema.optional(),
    restartLimit: z.number().int().min(0).max(100).default(3),
    relocateLimit: z.number().int().min(0).max(100).default(1),
    ha: z.boolean().default(true),
    stopGraceSeconds: z.number().int().min(0).max(3600).optional(),
    start: z.boolean().default(false),
  })
  .strict()
  .refine((body) => body.canary !== (body.kernel !== undefined), {
    message: "give either canary or kernel (with optional initrd and append), not both and not neither",
  });
export type CreateVmRequest = z.infer<typeof createVmRequest>;

export const createDiskRequest = z.object({ name: imageNameSchema, sizeMb: diskSizeMbSchema }).strict();
export const resizeDiskRequest = z
  .object({ sizeMb: diskSizeMbSchema, allowShrink: z.boolean().default(false) })
  .strict();

export const poolNameSchema = nameSchema("pool");
export const snapshotNameSchema = nameSchema("snapshot");
export const snapshotRequest = z.object({ snapshot: snapshotNameSchema }).strict();
export const cloneRequest = z.object({ snapshot: snapshotNameSchema, target: imageNameSchema }).strict();
