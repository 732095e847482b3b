// The demo: a local 3-node cluster (each node a host of its own) with a running canary guest on the cluster's
// guest network, then what to try next.
// Runs after scripts/setup.sh (see `npm run demo`); safe to run again: it reuses what already runs.
import { spawnSync } from "node:child_process";
import { homedir } from "node:os";
import { join } from "node:path";
import { labNetworkFor } from "../dist/src/setup/local-network.js";

const stateDir = process.env.HAVEN_STATE_DIR ?? join(homedir(), ".local", "state", "haven");
const started = Date.now();

function haven(args, { check = true, quiet = false } = {}) {
  const result = spawnSync(process.execPath, ["bin/haven.js", "--state-dir", stateDir, ...args], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", quiet ? "pipe" : "inherit"],
  });
  if (check && result.status !== 0) {
    process.stderr.write(result.stdout ?? "");
    console.error(`demo: 'haven ${args.join(" ")}' failed (exit ${result.status})`);
    process.exit(1);
  }
  return result;
}

const show = (args) => process.stdout.write(haven(args).stdout);
const vmJson = () => JSON.parse(haven(["vm", "show", "canary", "--json"]).stdout);

console.log(`== Haven demo: a local 3-node cluster in ${stateDir}`);
haven(["cluster", "up", "--nodes", "3"]);

const exists = haven(["vm", "show", "canary", "--json"], { check: false, quiet: true }).status === 0;
const nic = `bridge=${labNetworkFor(stateDir).bridge}`;
if (!exists) haven(["vm", "create", "canary", "--canary", "--nic", nic, "--start"]);
else haven(["vm", "start", "canary"]);

// Show that the guest really writes: its ack counter must advance.
let first = vmJson();
const deadline = Date.now() + 60_000;
while ((first.lastAck ?? 0) < 1 && Date.now() < deadline) {
  spawnSync("sleep", ["0.5"]);
  first = vmJson();
}
spawnSync("sleep", ["2"]);
const second = vmJson();
if (!(second.lastAck > (first.lastAck ?? 0))) {
  console.error(`demo: the canary's ack counter did not advance (${first.lastAck} → ${second.lastAck})`);
  process.exit(1);
}

// And that it is on the network: its DHCP address, asked for its last ack from inside the guest network.
let address;
const networkDeadline = Date.now() + 120_000;
while (!address && Date.now() < networkDeadline) {
  address = vmJson().nics[0]?.addresses[0];
  if (!address) spawnSync("sleep", ["0.5"]);
}
let answer = "";
while (address && !answer.startsWith("ack") && Date.now() < networkDeadline) {
  answer = haven(["network", "exec", "--", "curl", "-s", "-m", "2", `http://${address}/`], {
    check: false,
    quiet: true,
  }).stdout.trim();
  if (!answer.startsWith("ack")) spawnSync("sleep", ["0.5"]);
}

console.log("\n== haven status");
show(["status"]);
console.log("\n== haven node list");
show(["node", "list"]);
console.log("\n== haven host list");
show(["host", "list"]);
console.log("\n== haven network list");
show(["network", "list"]);
console.log("\n== haven vm show canary");
show(["vm", "show", "canary"]);
console.log(
  address && answer
    ? `\n== haven network exec -- curl http://${address}/\n${answer}`
    : "\n(the canary has no network answer yet: see 'haven vm console canary')",
);
console.log(
  `\nThe canary on ${second.node} acknowledged ${first.lastAck} → ${second.lastAck} fsynced records in 2 s.`,
);
console.log(`Demo ready in ${Math.round((Date.now() - started) / 1000)} s. Try next (add --state-dir ${stateDir} or export HAVEN_STATE_DIR=${stateDir}):
  npx haven vm show canary --json        # state, node, pid, last ack
  npx haven vm console canary            # the serial console (leave with Ctrl-])
  ${`npx haven network exec -- curl http://${address ?? "ADDRESS"}/`.padEnd(38)} # its last ack, over the guest network
  docs/guests.md                         # a Debian VM from a cloud image, reached with ssh
  ${`kill -9 ${second.pid}`.padEnd(38)} # crash its QEMU: the controller restarts it, the sequence continues
  npx haven events --follow              # every decision with its reason, as it happens (in a second terminal)
  ${`npx haven node kill ${second.node}`.padEnd(38)} # kill the canary's node: fenced, then recovered on another node
  npx haven vm migrate canary            # move it live to another node over TLS, with progress and downtime
  npx haven node drain NODE              # maintenance: move a node's guests away ('node maintenance off' undoes it)
  npx haven ceph status                  # Ceph health, monitors in quorum, OSDs, pools
  npx haven canary verify canary         # read the disk: highest sequence, gaps, corrupt records, forks
  npx haven cluster down --purge         # stop everything and remove the state`);
