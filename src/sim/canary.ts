// Canary guests on the simulated storage: a running canary QEMU that can write appends one sequence record a
// second to its disk and then prints `ack N` on its node's console log (kept across runs, as QEMU's
// logappend). A QEMU resumes after the highest record on disk when it boots, and from its memory when it is
// thawed or receives a live migration. A record overwritten after it was acknowledged is a lost write: the
// oracle of the design brief's invariant 4, which a second writer (or a resumed, unfenced one) would break.

export interface LostWrite {
  vm: string;
  seq: number;
  ackedBy: number;
  overwrittenBy: number;
}

export class CanaryDisks {
  /** Per VM: the pid of the QEMU whose record is on disk, by sequence number. */
  private readonly disks = new Map<string, Map<number, number>>();
  /** Per VM: the pid that acknowledged each sequence number (the first one to). */
  private readonly acked = new Map<string, Map<number, number>>();
  private readonly consoles = new Map<string, string>();
  private readonly highestSeq = new Map<string, number>();

  constructor(private readonly onLost: (lost: LostWrite) => void) {}

  /** The sequence number a QEMU booting now resumes after. */
  highest(vm: string): number {
    return this.highestSeq.get(vm) ?? 0;
  }

  /** One record written, fsynced and acknowledged by QEMU `pid` on `node`. */
  write(node: string, vm: string, seq: number, pid: number): void {
    const disk = mapOf(this.disks, vm);
    const acked = mapOf(this.acked, vm);
    const before = disk.get(seq);
    if (before !== undefined && before !== pid && acked.get(seq) === before)
      this.onLost({ vm, seq, ackedBy: before, overwrittenBy: pid });
    disk.set(seq, pid);
    this.highestSeq.set(vm, Math.max(seq, this.highest(vm)));
    if (!acked.has(seq)) acked.set(seq, pid);
    const key = `${node}/${vm}`;
    this.consoles.set(key, `${this.consoles.get(key) ?? ""}ack ${seq}\n`);
  }

  /** The guest's serial console log on `node`. */
  console(node: string, vm: string): string {
    return this.consoles.get(`${node}/${vm}`) ?? "";
  }

  /** How many records of `vm` were acknowledged. */
  acks(vm: string): number {
    return this.acked.get(vm)?.size ?? 0;
  }
}

function mapOf<K, V>(maps: Map<string, Map<K, V>>, key: string): Map<K, V> {
  let map = maps.get(key);
  if (!map) maps.set(key, (map = new Map<K, V>()));
  return map;
}
