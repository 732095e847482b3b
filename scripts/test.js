// Runs the whole suite with Node's test runner (integration tests one file at a time: they start real
// etcd and QEMU processes, and first the guest images they boot are built or found in their cache), then
// fails if any test process was left behind.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const only = process.argv[2]; // "unit" or "integration"
const dirs = (only ? [only] : ["unit", "integration"]).map((dir) => `dist/test/${dir}`);
const files = dirs.flatMap((dir) =>
  readdirSync(dir)
    .filter((file) => file.endsWith(".test.js"))
    .sort()
    .map((file) => `${dir}/${file}`),
);
// The guest images the integration tests boot, made before any test runs: a cold build of the Debian image takes
// many minutes (a cached one returns at once), too long to hide inside one test file's time limit.
if (dirs.includes("dist/test/integration")) {
  const built = spawnSync("bash", ["guest/debian/build.sh"], { stdio: ["ignore", "ignore", "inherit"] });
  if (built.status !== 0) {
    console.error("test: building the Debian guest image failed (guest/debian/build.sh)");
    process.exit(1);
  }
}

// Every temporary directory of this run lives under one run directory, whose name marks the processes the
// run starts: the leak check then finds this run's processes and never another run's.
const runDir = mkdtempSync(join(tmpdir(), "haven-test-run-"));
const result = spawnSync(
  process.execPath,
  ["--test", "--test-concurrency=1", "--test-timeout=600000", "--test-reporter=spec", ...files],
  {
    stdio: "inherit",
    env: { ...process.env, TMPDIR: runDir },
  },
);

const leaked = readdirSync("/proc")
  .filter((entry) => /^\d+$/.test(entry))
  .map((pid) => {
    try {
      return { pid, cmdline: readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ") };
    } catch {
      return { pid, cmdline: "" };
    }
  })
  .filter(({ cmdline }) => cmdline.includes(runDir));
for (const { pid, cmdline } of leaked) {
  console.error(`test suite leaked process ${pid}: ${cmdline}`);
  try {
    process.kill(Number(pid), "SIGKILL");
  } catch {
    /* gone meanwhile */
  }
}
rmSync(runDir, { recursive: true, force: true });
process.exit(result.status !== 0 || leaked.length > 0 ? 1 : 0);
