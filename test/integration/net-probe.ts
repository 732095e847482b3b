// What a network client of a guest sees: a client inside the cluster's guest network asks the canary for its
// last ack every 20 ms on a connection it keeps open (net-probe-client.ts), and the outage of an event is the
// longest time between two answers around it.
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { labNetworkFor } from "../../src/setup/local-network.js";
import type { VmView } from "../../src/core/model.js";
import { eventually, REPO_ROOT, type TestCluster } from "./harness.js";

export interface Answer {
  /** When the request was sent. */
  askedAt: number;
  /** When its answer came. */
  at: number;
  seq: number;
}

/** The longest silence around an event: the last answer before it and the first after it. */
export interface Silence {
  ms: number;
  before: Answer;
  after: Answer;
}

export class NetProbe {
  readonly answers: Answer[] = [];
  private buffered = "";

  private constructor(private readonly child: ChildProcess) {
    child.stdout!.on("data", (chunk: Buffer) => {
      const lines = (this.buffered + chunk.toString()).split("\n");
      this.buffered = lines.pop() ?? "";
      for (const line of lines) {
        const [askedAt, at, seq] = line.split(" ").map(Number);
        if ([askedAt, at, seq].every(Number.isFinite))
          this.answers.push({ askedAt: askedAt!, at: at!, seq: seq! });
      }
    });
  }

  /** Starts asking `address` (the canary's DHCP address) from the guest network of the cluster in stateDir. */
  static start(stateDir: string, address: string): NetProbe {
    const client = join(REPO_ROOT, "dist", "test", "integration", "net-probe-client.js");
    const { namespace } = labNetworkFor(stateDir);
    const child = spawn(
      "ip",
      ["netns", "exec", namespace, process.execPath, client, address, "81", "20", stateDir],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    return new NetProbe(child);
  }

  /** Waits for the first answer at or after `time`. */
  /** Waits for the first card of `vm` to have an address, then starts asking it; returns that card too. */
  static async startOn(
    cluster: TestCluster,
    vm: string,
  ): Promise<{ probe: NetProbe; nic: VmView["nics"][number] }> {
    const nic = await eventually(`${vm}'s address`, async () => {
      const view = await cluster.json<VmView>(["vm", "show", vm]);
      return view.nics[0]?.addresses.length ? view.nics[0] : undefined;
    });
    return { probe: NetProbe.start(cluster.stateDir, nic.addresses[0]!), nic };
  }

  /** Waits for the first answer at or after `time`. */
  answerAfter(time: number, what = "an answer over the network"): Promise<Answer> {
    return eventually(
      what,
      () => Promise.resolve(this.answers.find((answer) => answer.at >= time)),
      120_000,
      50,
    );
  }

  /**
   * The longest silence a client saw across an event that began at `from` and was over by `to`: the gap from
   * the last answer before each silence to the first answer after it, for silences that overlap the event.
   */
  outage(from: number, to: number): number {
    return this.silence(from, to)?.ms ?? 0;
  }

  /** The longest silence that overlaps the event from `from` to `to`, with the answers around it. */
  silence(from: number, to: number): Silence | undefined {
    let longest: Silence | undefined;
    for (let i = 1; i < this.answers.length; i++) {
      const [before, after] = [this.answers[i - 1]!, this.answers[i]!];
      const ms = after.at - before.at;
      if (after.at >= from && before.at <= to && ms > (longest?.ms ?? 0)) longest = { ms, before, after };
    }
    return longest;
  }

  stop(): void {
    this.child.kill("SIGKILL");
  }
}
