// Writes a VM's cloud-init NoCloud seed to the cluster's storage: an ISO 9660 volume labelled "cidata"
// (what cloud-init's NoCloud datasource looks for), made by genisoimage and imported as a disk image, so
// that it follows the VM to whichever node runs it.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { SeedFiles } from "../../core/cloud-init.js";
import { run } from "../../lib/command.js";
import type { StorageBackend } from "../storage/port.js";

/** Replaces `image` (if it exists) with a seed holding `files`. */
export async function writeSeedImage(
  storage: StorageBackend,
  image: string,
  files: SeedFiles,
): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "haven-seed-"));
  try {
    const entries = Object.entries(files).filter(
      (entry): entry is [string, string] => entry[1] !== undefined,
    );
    for (const [name, content] of entries) await writeFile(join(dir, name), content);
    const names = entries.map(([name]) => name);
    const iso = join(dir, "seed.iso");
    await run("genisoimage", ["-quiet", "-output", iso, "-volid", "cidata", "-joliet", "-rock", ...names], {
      cwd: dir,
    });
    await storage.delete(image).catch((err: unknown) => {
      if ((err as { code?: string }).code !== "NOT_FOUND") throw err;
    });
    await storage.importFile(iso, image);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
