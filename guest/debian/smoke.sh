#!/usr/bin/env bash
# Smoke test of the Debian guest image (guest/debian/build.sh) with plain QEMU, the way Haven runs a
# guest: q35 + SeaBIOS booting the image's own disk (virtio-blk), a virtio-net NIC on QEMU user-mode
# networking (ssh forwarded from 127.0.0.1 only), a NoCloud seed (ISO 9660, volume label "cidata")
# with an ssh key, a hostname and a network-config, and the guest agent's virtio-serial port.
# Checks: ssh login with the key, the hostname, cloud-init finished without errors, passwordless sudo,
# the guest agent answers guest-ping and guest-get-osinfo; then powers the guest off and prints the
# time from QEMU's start to the first ssh login.
#
#   guest/debian/smoke.sh [IMAGE]   (default: the cached image; built first if missing, which needs root)
#
# Environment: SMOKE_TIMEOUT (seconds, default 900) bounds the whole run; SMOKE_NETWORK_CONFIG = v2
# (default), v1 or none (cloud-init's fallback: DHCP on the first NIC); SMOKE_SEED = virtio-blk
# (default: a read-only virtio disk) or scsi-cd (a CD on virtio-scsi); SMOKE_ACCEL = tcg (default)
# or kvm. The cached image is never written: the guest runs on a qcow2 overlay in a temporary
# directory, which is removed, with QEMU killed, however the test ends.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/../free-port.sh"
TIMEOUT=${SMOKE_TIMEOUT:-900}
NETCFG=${SMOKE_NETWORK_CONFIG:-v2}
ACCEL=${SMOKE_ACCEL:-tcg}
SEED=${SMOKE_SEED:-virtio-blk}
HOSTNAME_WANT=haven-smoke
MAC=52:54:00:4e:5d:01

say() { echo "smoke: $*" >&2; }
fail() {
  say "FAILED: $*"
  if [ -s "${tmp:-/nonexistent}/serial.log" ]; then
    say "last lines of the serial console:"
    tail -n 40 "$tmp/serial.log" | tr -d '\r' >&2
  fi
  exit 1
}
case $NETCFG in v1 | v2 | none) ;; *) fail "SMOKE_NETWORK_CONFIG must be v1, v2 or none" ;; esac
case $SEED in virtio-blk | scsi-cd) ;; *) fail "SMOKE_SEED must be virtio-blk or scsi-cd" ;; esac
for cmd in qemu-system-x86_64 qemu-img genisoimage ssh ssh-keygen; do
  command -v "$cmd" >/dev/null || fail "$cmd not found: run scripts/setup.sh"
done
NODE=$HERE/../../node_modules/.bin/node
[ -x "$NODE" ] || NODE=$(command -v node) || fail "node not found: run scripts/setup.sh"

IMAGE=${1:-$(bash "$HERE/build.sh")}
[ -f "$IMAGE" ] || fail "no image $IMAGE"

tmp=$(mktemp -d /tmp/haven-smoke.XXXXXX)
cleanup() {
  local pid
  if [ -s "$tmp/qemu.pid" ]; then
    read -r pid <"$tmp/qemu.pid"
    # Only our QEMU: its command line names our temporary directory.
    if grep -qF "$tmp/" "/proc/$pid/cmdline" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
      while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
deadline=$((SECONDS + TIMEOUT))
left() { echo $((deadline - SECONDS)); }

# --- the seed: an ssh key for the default user, a hostname, a network-config -----------------------
ssh-keygen -q -t ed25519 -N '' -C haven-smoke -f "$tmp/key"
mkdir "$tmp/seed"
cat >"$tmp/seed/meta-data" <<EOF
instance-id: smoke-$(date +%s)-$$
local-hostname: $HOSTNAME_WANT
EOF
cat >"$tmp/seed/user-data" <<EOF
#cloud-config
ssh_authorized_keys:
  - $(cat "$tmp/key.pub")
EOF
case $NETCFG in
v2)
  cat >"$tmp/seed/network-config" <<EOF
version: 2
ethernets:
  nic0:
    match:
      macaddress: "$MAC"
    dhcp4: true
EOF
  ;;
v1)
  cat >"$tmp/seed/network-config" <<EOF
version: 1
config:
  - type: physical
    name: eth0
    mac_address: "$MAC"
    subnets:
      - type: dhcp
EOF
  ;;
esac
genisoimage -quiet -output "$tmp/seed.iso" -volid cidata -joliet -rock "$tmp/seed"

# A free port on 127.0.0.1 for ssh (nothing answers on it).
port=$(free_port) || fail "no free port"

# --- boot --------------------------------------------------------------------------------------------
qemu-img create -q -f qcow2 -b "$IMAGE" -F qcow2 "$tmp/disk.qcow2" 4G
cpu=max
[ "$ACCEL" = kvm ] && cpu=host
say "booting $IMAGE ($ACCEL, ssh on 127.0.0.1:$port, network-config $NETCFG, seed on $SEED)"
start=$(date +%s%N)
# The seed is a read-only virtio-blk disk or a CD on virtio-scsi: the cloud kernel has no AHCI
# driver, so a CD on q35's built-in SATA controller would be invisible.
seed_device=(-device "virtio-blk-pci,drive=seed")
[ "$SEED" = scsi-cd ] && seed_device=(-device "virtio-scsi-pci,id=scsi0" -device "scsi-cd,bus=scsi0.0,drive=seed")
qemu-system-x86_64 -name "haven-smoke-debian,debug-threads=on" \
  -machine q35 -accel "$ACCEL" -cpu "$cpu" -m 1024 -smp 2 \
  -nodefaults -no-user-config -display none \
  -blockdev "driver=qcow2,node-name=disk0,file.driver=file,file.filename=$tmp/disk.qcow2" \
  -device virtio-blk-pci,drive=disk0,bootindex=0 \
  -blockdev "driver=raw,node-name=seed,read-only=on,file.driver=file,file.filename=$tmp/seed.iso" \
  "${seed_device[@]}" \
  -netdev "user,id=net0,hostfwd=tcp:127.0.0.1:$port-:22" \
  -device "virtio-net-pci,netdev=net0,mac=$MAC" \
  -chardev "socket,id=qga0,path=$tmp/qga.sock,server=on,wait=off" \
  -device virtio-serial-pci -device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0 \
  -serial "file:$tmp/serial.log" \
  -pidfile "$tmp/qemu.pid" -daemonize

SSH=(ssh -q -i "$tmp/key" -p "$port" -o BatchMode=yes -o StrictHostKeyChecking=no
  -o UserKnownHostsFile=/dev/null -o ConnectTimeout=10 debian@127.0.0.1)
guest() { timeout 120 "${SSH[@]}" "$@"; }

until timeout 30 "${SSH[@]}" true 2>/dev/null; do
  [ "$(left)" -gt 0 ] || fail "no ssh login within ${TIMEOUT} s"
  kill -0 "$(cat "$tmp/qemu.pid")" 2>/dev/null || fail "QEMU exited"
  sleep 1
done
boot_ms=$((($(date +%s%N) - start) / 1000000))
say "ssh login after $((boot_ms / 1000)).$(printf '%03d' $((boot_ms % 1000))) s"

# --- checks ------------------------------------------------------------------------------------------
got=$(guest hostname)
[ "$got" = "$HOSTNAME_WANT" ] || fail "hostname is '$got', want '$HOSTNAME_WANT'"
say "hostname: $got"
status=$(guest cloud-init status --wait 2>&1 | tail -n 1) || fail "cloud-init: $status"
[ "$status" = "status: done" ] || fail "cloud-init: $status"
say "cloud-init: done"
guest sudo -n true || fail "passwordless sudo does not work"
say "address: $(guest ip -4 -o addr show scope global | awk '{ print $2, $4 }')"

# The guest agent: guest-sync first (the channel may hold a half-read command from before), then
# guest-ping and guest-get-osinfo; a reply that does not come within 60 s fails the test.
osinfo=$(timeout 90 "$NODE" - "$tmp/qga.sock" <<'EOF'
const net = require("node:net");
const sock = net.connect(process.argv[2]);
const want = [
  { execute: "guest-sync", arguments: { id: 4242 } },
  { execute: "guest-ping" },
  { execute: "guest-get-osinfo" },
];
let buf = "";
let step = 0;
const send = () => sock.write(JSON.stringify(want[step]) + "\n");
const timer = setTimeout(() => {
  console.error("guest agent: no answer to " + want[step].execute);
  process.exit(1);
}, 60000);
sock.on("connect", send);
sock.on("error", (e) => {
  console.error("guest agent: " + e.message);
  process.exit(1);
});
sock.on("data", (d) => {
  buf += d.toString("latin1").replace(/\xff/g, "");
  let nl;
  while ((nl = buf.indexOf("\n")) >= 0) {
    const line = buf.slice(0, nl).trim();
    buf = buf.slice(nl + 1);
    if (!line) continue;
    const msg = JSON.parse(line);
    if (msg.error) {
      console.error("guest agent: " + want[step].execute + ": " + msg.error.desc);
      process.exit(1);
    }
    if (step === 0 && msg.return !== 4242) continue; // a stale reply from before the sync
    if (step === 2) {
      clearTimeout(timer);
      console.log(msg.return["pretty-name"] + ", kernel " + msg.return["kernel-release"]);
      sock.end();
      return;
    }
    step += 1;
    send();
  }
});
EOF
) || fail "the guest agent did not answer"
say "guest agent: guest-ping ok; guest-get-osinfo: $osinfo"

# --- power off -----------------------------------------------------------------------------------------
guest sudo -n systemctl poweroff || true
pid=$(cat "$tmp/qemu.pid")
for _ in $(seq 120); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.5
done
! kill -0 "$pid" 2>/dev/null || fail "the guest did not power off within 60 s"
say "powered off"
echo "boot-to-ssh ${boot_ms} ms"
