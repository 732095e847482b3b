// Names of VMs, nodes and disk images: safe as etcd key parts, file names and RBD image names.
import { z } from "zod";

export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
export const nameSchema = (what: string) =>
  z
    .string({ error: `${what} name is required` })
    .min(1, `${what} name is empty`)
    .regex(
      NAME_PATTERN,
      `${what} name must be 1-63 characters of letters, digits, '.', '_' or '-', starting with a letter or digit`,
    )
    .refine((name) => !name.includes(".."), `${what} name must not contain '..'`);

export const vmNameSchema = nameSchema("VM");
export const nodeNameSchema = nameSchema("node");
export const imageNameSchema = nameSchema("disk");

export const poolNameSchema = nameSchema("pool");
