// The files of a NoCloud seed (cloud-init's "cidata" volume) for a VM: meta-data, user-data and, when the VM
// has network cards, network-config. Pure. The documents are written as JSON, which is YAML too, so that no
// value (a key comment, a hostname) can ever be misread.
import type { CloudInit, Nic } from "./hardware.js";

export interface SeedFiles {
  "meta-data": string;
  "user-data": string;
  "network-config"?: string;
}

/**
 * The instance-id follows the seed's content: cloud-init applies per-instance settings (users, keys,
 * hostname) once per instance-id, so a changed seed takes effect at the next boot, while restarts,
 * migrations and failovers with an unchanged seed leave the guest as it is (same SSH host keys).
 */
export function seedFiles(vm: string, cloudInit: CloudInit, nics: readonly Nic[]): SeedFiles {
  const userData =
    cloudInit.userData ?? `#cloud-config\n${JSON.stringify(cloudConfig(cloudInit), null, 2)}\n`;
  const networkConfig =
    cloudInit.networkConfig ??
    (nics.length > 0 ? `${JSON.stringify(dhcpOnFirstNic(nics[0]!), null, 2)}\n` : undefined);
  const instance = `${vm}-${fnv1a64([userData, networkConfig ?? "", cloudInit.hostname ?? ""].join("\0"))}`;
  const metaData = { "instance-id": instance, "local-hostname": cloudInit.hostname ?? vm };
  return {
    "meta-data": `${JSON.stringify(metaData, null, 2)}\n`,
    "user-data": userData,
    ...(networkConfig !== undefined && { "network-config": networkConfig }),
  };
}

/**
 * Without a user, the keys go to the image's default user (`debian` on Debian's cloud images, `ubuntu` on
 * Ubuntu's); with one, that user is created with passwordless sudo, as cloud images do for theirs.
 */
function cloudConfig(cloudInit: CloudInit): Record<string, unknown> {
  const keys = cloudInit.sshKeys.map((key) => key.trim());
  const config: Record<string, unknown> = {};
  if (cloudInit.hostname !== undefined) config.hostname = cloudInit.hostname;
  if (cloudInit.user === undefined) {
    if (keys.length > 0) config.ssh_authorized_keys = keys;
  } else {
    config.users = [
      "default",
      {
        name: cloudInit.user,
        sudo: "ALL=(ALL) NOPASSWD:ALL",
        shell: "/bin/bash",
        lock_passwd: true,
        ssh_authorized_keys: keys,
      },
    ];
  }
  return config;
}

/** Network config v2: the first card, found by its MAC (names differ between images), takes DHCP. */
function dhcpOnFirstNic(nic: Nic): Record<string, unknown> {
  return {
    version: 2,
    ethernets: { nic0: { match: { macaddress: nic.mac }, dhcp4: true } },
  };
}

/** 64-bit FNV-1a as 16 hex digits: a stable fingerprint, not a security measure. */
function fnv1a64(text: string): string {
  let hash = 0xcbf29ce484222325n;
  for (const byte of new TextEncoder().encode(text))
    hash = ((hash ^ BigInt(byte)) * 0x100000001b3n) & 0xffffffffffffffffn;
  return hash.toString(16).padStart(16, "0");
}
