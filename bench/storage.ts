// bench:storage — sequential write and read throughput seen by a guest on a Haven RBD disk, against
// `rbd bench` on the same pool, in one run. Both use 1 MiB sequential I/O with one request in flight
// (the guest runs dd with O_DIRECT), so the ratio shows what QEMU + librbd + Haven's cache settings cost.
// BENCH_MB sets the amount written and read (default 256).
import { execFileSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { RbdStorageConfig } from "../src/adapters/storage/config.js";
import type { VmView } from "../src/core/model.js";
import { eventually, REPO_ROOT, TestCluster } from "../test/integration/harness.js";

const MB = Number(process.env.BENCH_MB ?? 256);

interface Throughput {
  write: number;
  read: number;
}

async function guestThroughput(cluster: TestCluster): Promise<Throughput> {
  const guest = join(REPO_ROOT, "guest", "build");
  const created = await cluster.haven([
    "vm",
    "create",
    "bench",
    "--start",
    "--kernel",
    join(guest, "vmlinuz"),
    "--initrd",
    join(guest, "initramfs.img"),
    "--append",
    `console=ttyS0 quiet cryptomgr.notests haven.bench=${MB}`,
    "--disk-size",
    String(MB + 16),
    "--memory",
    "256",
  ]);
  if (created.code !== 0) throw new Error(`vm create failed: ${created.stderr}`);
  const view = await cluster.json<VmView>(["vm", "show", "bench"]);
  const log = join(cluster.stateDir, "nodes", view.node!, "guests", "bench", "serial.log");
  const text = await eventually(
    "the guest benchmark",
    async () => {
      const content = await readFile(log, "latin1").catch(() => "");
      return content.includes("haven-bench: done") ? content : undefined;
    },
    600_000,
  );
  const rate = (phase: string) => {
    const match = new RegExp(`haven-bench: ${phase} (\\d+) ([\\d.]+)`).exec(text);
    if (!match) throw new Error(`guest did not report ${phase}: ${text.slice(-500)}`);
    return Number(match[1]) / Math.max(Number(match[2]), 0.01) / 1024 / 1024;
  };
  return { write: rate("write"), read: rate("read") };
}

function rbdBenchThroughput(ceph: RbdStorageConfig): Throughput {
  const rbd = (...args: string[]) =>
    execFileSync(
      "rbd",
      ["--conf", ceph.conf, "--keyring", ceph.adminKeyring, "--id", ceph.adminId, ...args],
      {
        encoding: "utf8",
      },
    );
  rbd("create", "--size", `${MB + 16}M`, `${ceph.pool}/bench-rbd`);
  try {
    const run = (type: string) => {
      // The guest's QEMU runs librbd without its write-back cache (cache.direct=on: every write reaches the
      // OSDs before it completes), so rbd bench runs without it too.
      const out = rbd(
        "--rbd_cache=false",
        "bench",
        "--io-type",
        type,
        "--io-size",
        "1M",
        "--io-threads",
        "1",
        "--io-pattern",
        "seq",
        "--io-total",
        `${MB}M`,
        `${ceph.pool}/bench-rbd`,
      );
      // Ceph 16 prints e.g. "elapsed: 2   ops: 256   ops/sec: 104.3   bytes/sec: 104 MiB/s".
      const match = /elapsed:\s*([\d.]+)\s+ops:\s*(\d+)\s+ops\/sec:\s*([\d.]+)/.exec(out);
      if (!match) throw new Error(`cannot parse rbd bench output: ${out}`);
      return Number(match[3]); // 1 MiB per op
    };
    return { write: run("write"), read: run("read") };
  } finally {
    rbd("rm", "--no-progress", `${ceph.pool}/bench-rbd`);
  }
}

async function main(): Promise<void> {
  process.stderr.write(`bench:storage: starting a 3-node cluster on a local Ceph (${MB} MiB per phase)…\n`);
  const cluster = await TestCluster.start({ nodes: 3, storage: "rbd" });
  try {
    const file = JSON.parse(await readFile(join(cluster.stateDir, "cluster.json"), "utf8")) as {
      storage: RbdStorageConfig;
    };
    const rbd = rbdBenchThroughput(file.storage);
    const guest = await guestThroughput(cluster);
    const row = (name: string, t: Throughput) =>
      `${name.padEnd(26)}${t.write.toFixed(1).padStart(12)}${t.read.toFixed(1).padStart(12)}`;
    console.log(`\nsequential 1 MiB I/O, queue depth 1, ${MB} MiB, pool ${file.storage.pool} (size 2)`);
    console.log(`${"".padEnd(26)}${"write MB/s".padStart(12)}${"read MB/s".padStart(12)}`);
    console.log(row("guest on Haven RBD disk", guest));
    console.log(row("rbd bench (same pool)", rbd));
    console.log(
      `${"ratio guest / rbd bench".padEnd(26)}${(guest.write / rbd.write).toFixed(2).padStart(12)}${(guest.read / rbd.read).toFixed(2).padStart(12)}`,
    );
  } finally {
    await cluster.stop();
  }
}

await main();
