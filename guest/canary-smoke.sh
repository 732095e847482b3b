#!/usr/bin/env bash
# Smoke test of the canary guest (guest/build.sh) with plain QEMU: boots it twice on a fresh 64 MiB
# disk, as Haven does (q35, direct kernel boot, virtio-blk, serial console):
#   1. without a NIC: it must ack and must not bring up a network;
#   2. with a virtio-net NIC on QEMU user-mode networking (whose DHCP server hands out 10.0.2.15;
#      ports 80 and 81 forwarded from 127.0.0.1 only): it must print "haven-guest: net <ip>", answer
#      GET / on port 80 with "ack <seq>", a seq it has acknowledged on its console, and answer each
#      line asked on one connection to port 81 with its last ack.
# Prints each run's time from QEMU's start to the first "ack" line.
#
#   guest/canary-smoke.sh [BUILD_DIR]   (default guest/build, made by scripts/setup.sh)
#
# SMOKE_TIMEOUT (seconds, default 120) bounds each boot. QEMUs are killed and the temporary directory
# removed however the test ends.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/free-port.sh"
BUILD=${1:-$HERE/build}
TIMEOUT=${SMOKE_TIMEOUT:-120}

say() { echo "canary smoke: $*" >&2; }
fail() {
  say "FAILED: $*"
  [ -s "${log:-/nonexistent}" ] && tr -d '\r' <"$log" | grep -v '^ack ' | tail -n 20 >&2
  exit 1
}
if [ ! -f "$BUILD/vmlinuz" ] || [ ! -f "$BUILD/initramfs.img" ]; then
  fail "no canary in $BUILD: run scripts/setup.sh"
fi
for cmd in qemu-system-x86_64 curl; do
  command -v "$cmd" >/dev/null || fail "$cmd not found: run scripts/setup.sh"
done

tmp=$(mktemp -d /tmp/haven-canary-smoke.XXXXXX)
stop_qemu() {
  local pid
  [ -s "$tmp/qemu.pid" ] || return 0
  read -r pid <"$tmp/qemu.pid"
  # Only our QEMU: its command line names our temporary directory.
  if grep -qF "$tmp/" "/proc/$pid/cmdline" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$tmp/qemu.pid"
}
trap 'stop_qemu; rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# boot NAME [QEMU ARGS…]: start the canary on a fresh disk; log=its serial log, start=its start (ns).
boot() {
  local name=$1
  shift
  log=$tmp/$name.log
  truncate -s 64M "$tmp/$name.disk"
  start=$(date +%s%N)
  qemu-system-x86_64 -name "haven-canary-smoke-$name" -machine q35 -accel tcg -cpu max -m 128 \
    -nodefaults -no-user-config -display none \
    -kernel "$BUILD/vmlinuz" -initrd "$BUILD/initramfs.img" -append "console=ttyS0 quiet cryptomgr.notests" \
    -serial "file:$log" \
    -blockdev "driver=raw,node-name=disk0,file.driver=file,file.filename=$tmp/$name.disk,cache.direct=on" \
    -device virtio-blk-pci,drive=disk0 "$@" -pidfile "$tmp/qemu.pid" -daemonize
}

# wait_for REGEX: until the serial log has a line matching REGEX, bounded by SMOKE_TIMEOUT.
wait_for() {
  local until=$((SECONDS + TIMEOUT))
  until tr -d '\r' <"$log" 2>/dev/null | grep -qE "$1"; do
    [ $SECONDS -lt $until ] || fail "no line matching '$1' within ${TIMEOUT} s"
    sleep 0.05
  done
}

first_ack() {
  wait_for '^ack 1$'
  echo $((($(date +%s%N) - start) / 1000000))
}

# --- 1. no NIC ---------------------------------------------------------------------------------------
boot plain
ms=$(first_ack)
say "without a NIC: first ack after $ms ms"
wait_for '^ack 20$'
! grep -qE 'haven-guest: (net|no address)' "$log" || fail "a network came up without a NIC"
stop_qemu

# --- 2. with a NIC -------------------------------------------------------------------------------------
port=$(free_port) || fail "no free port"
line_port=$(free_port) || fail "no free port"
boot net -netdev "user,id=net0,hostfwd=tcp:127.0.0.1:$port-:80,hostfwd=tcp:127.0.0.1:$line_port-:81" \
  -device virtio-net-pci,netdev=net0
ms=$(first_ack)
say "with a NIC: first ack after $ms ms"
wait_for '^haven-guest: (net |no address)'
ip=$(tr -d '\r' <"$log" | sed -n 's/^haven-guest: net //p' | head -n 1)
[ -n "$ip" ] || fail "the guest got no address"
say "with a NIC: $(tr -d '\r' <"$log" | grep -m1 '^haven-guest: net')"
answer=$(curl -fsS --max-time 10 "http://127.0.0.1:$port/") || fail "no answer on port 80"
seq=${answer#ack }
case $answer in "ack "[1-9]*) ;; *) fail "port 80 answered '$answer', want 'ack <seq>'" ;; esac
tr -d '\r' <"$log" | grep -qx "ack $seq" || fail "port 80 answered '$answer', which the console never acked"
say "with a NIC: GET / on port 80 answered '$answer'"
# Port 81: two questions on one connection, two answers, the second no older than the first.
exec 3<>"/dev/tcp/127.0.0.1/$line_port" || fail "no connection to port 81"
printf '?\n' >&3 && IFS= read -r -t 10 first <&3 || fail "port 81 did not answer"
sleep 0.5
printf '?\n' >&3 && IFS= read -r -t 10 second <&3 || fail "port 81 did not answer a second time"
exec 3<&-
case "$first/$second" in "ack "[1-9]*"/ack "[1-9]*) ;; *) fail "port 81 answered '$first', '$second'" ;; esac
[ "${second#ack }" -ge "${first#ack }" ] || fail "port 81 went back from '$first' to '$second'"
say "with a NIC: one connection to port 81 answered '$first', then '$second'"
stop_qemu
say "ok"
