// haven: the command line. Composition root: one commander program, one context, commands by area.
// User errors print one line and exit with the code of their kind; bugs keep their stack.
import { Command, CommanderError } from "commander";
import { exitCodeOf, HavenError } from "../core/errors.js";
import { VERSION } from "../lib/version.js";
import { registerCeph } from "./commands/ceph.js";
import { registerCluster } from "./commands/cluster.js";
import { registerConstraint } from "./commands/constraint.js";
import { registerDisk } from "./commands/disk.js";
import { registerEtcd } from "./commands/etcd.js";
import { registerFence } from "./commands/fence.js";
import { registerHost } from "./commands/host.js";
import { registerImport } from "./commands/import.js";
import { registerMigrate } from "./commands/migrate.js";
import { registerSimulate } from "./commands/simulate.js";
import { registerMisc } from "./commands/misc.js";
import { registerNetwork } from "./commands/network.js";
import { registerNode } from "./commands/node.js";
import { registerInstall } from "./commands/install.js";
import { registerVm } from "./commands/vm.js";
import { CliContext } from "./context.js";

const program = new Command("haven")
  .description("Haven: highly available virtual machines on etcd, QEMU and shared storage")
  .version(VERSION)
  .option(
    "--state-dir <dir>",
    "cluster state directory (default: $HAVEN_STATE_DIR, else ~/.local/state/haven)",
  )
  .showHelpAfterError("(run with --help for usage)")
  .exitOverride();

const ctx = new CliContext(program);
registerCluster(program, ctx);
registerNode(program, ctx);
registerHost(program, ctx);
registerInstall(program, ctx);
registerMisc(program, ctx);
registerVm(program, ctx);
registerNetwork(program, ctx);
registerDisk(program, ctx);
registerCeph(program, ctx);
registerEtcd(program, ctx);
registerFence(program, ctx);
registerMigrate(program, ctx);
registerImport(program, ctx);
registerSimulate(program, ctx);
registerConstraint(program, ctx);
for (const command of program.commands) applyToTree(command);

function applyToTree(command: Command): void {
  command.exitOverride();
  command.commands.forEach(applyToTree);
}

try {
  await program.parseAsync(process.argv);
} catch (err) {
  process.exitCode = exitCodeFor(err);
}

function exitCodeFor(err: unknown): number {
  if (err instanceof CommanderError) {
    // Commander already printed help, the version or the usage error.
    return err.exitCode === 0 ? 0 : 2;
  }
  if (err instanceof HavenError) {
    process.stderr.write(`haven: ${err.message}\n`);
    return exitCodeOf(err.code);
  }
  process.stderr.write(`haven: internal error: ${(err as Error).stack ?? String(err)}\n`);
  return 1;
}
