// The QEMU launch of a VM on this node: the hardware its spec fixed, with this node's view of the storage
// (its cephx identity) and tap device names that carry the generation.
import type { DriveSource, GuestDisk, GuestLaunch, Accelerator } from "../adapters/qemu/port.js";
import { nvramImageOf, seedImageOf, tapName } from "../core/hardware.js";
import type { VmSpec } from "../core/model.js";

/** What QEMU must run for a VM's spec on this node: its hardware, with this node's view of the storage. */
export function guestLaunch(
  spec: VmSpec,
  generation: number,
  node: { accel: Accelerator; source: (image: string, pool?: string) => DriveSource },
): GuestLaunch {
  const drive = (disk: { image: string; pool?: string; bus?: GuestDisk["bus"] }): GuestDisk => ({
    image: disk.image,
    source: node.source(disk.image, disk.pool),
    ...(disk.bus !== undefined && { bus: disk.bus }),
  });
  return {
    vm: spec.name,
    generation,
    memoryMb: spec.memoryMb,
    vcpus: spec.vcpus,
    ...(spec.kernel !== undefined
      ? { kernel: spec.kernel, initrd: spec.initrd, append: spec.append }
      : {
          firmware:
            spec.firmware === "uefi"
              ? { type: "uefi", vars: node.source(nvramImageOf(spec.name)) }
              : { type: "bios" },
        }),
    ...(spec.cpu !== undefined && { cpu: spec.cpu }),
    ...(spec.machine !== undefined && { machine: spec.machine }),
    disks: spec.disks.map(drive),
    cdroms: spec.cdrom ? [drive(spec.cdrom)] : [],
    ...(spec.cloudInit && { seed: drive({ image: seedImageOf(spec.name) }) }),
    nics: (spec.nics ?? []).map((nic, index) => ({
      tap: tapName(spec.name, generation, index),
      bridge: nic.bridge,
      mac: nic.mac,
      model: nic.model,
      ...(nic.vlan !== undefined && { vlan: nic.vlan }),
    })),
    accel: node.accel,
  };
}
