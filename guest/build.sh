#!/usr/bin/env bash
# Build the Haven canary guest from installed Debian packages only:
#   OUT_DIR/vmlinuz        copy of the newest /boot/vmlinuz-*-cloud-amd64 (linux-image-cloud-amd64)
#   OUT_DIR/initramfs.img  gzip'd newc cpio: busybox-static + applet symlinks, the virtio-blk and
#                          virtio-net modules (with their modules.dep dependencies), guest/init,
#                          guest/canary.sh, guest/bench.sh, guest/udhcpc.sh, guest/ack-server.sh
# Usage: guest/build.sh OUT_DIR
# Idempotent: when the inputs (kernel version, busybox, this script and the files it copies) are
# unchanged, OUT_DIR/.stamp matches and nothing is rebuilt.
set -euo pipefail

die() {
  echo "guest/build.sh: error: $*" >&2
  exit 1
}

[ $# -eq 1 ] && [ -n "$1" ] || die "usage: guest/build.sh OUT_DIR"
OUT=$1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# Modules needed for /dev/vda (virtio-blk on PCI), loaded at boot (/etc/haven-modules), and for eth0
# (virtio-net on PCI), loaded only when the VM has a NIC (/etc/haven-net-modules: those not already
# loaded, here failover net_failover virtio_net). Dependencies are added from modules.dep.
WANT_MODULES=(virtio virtio_ring virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk)
WANT_NET_MODULES=(virtio_net)

# --- inputs ---------------------------------------------------------------------------------------
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || die "$BUSYBOX not found: install the Debian package busybox-static"
if ldd "$BUSYBOX" >/dev/null 2>&1; then
  die "$BUSYBOX is dynamically linked (package busybox?): install the Debian package busybox-static"
fi
command -v cpio >/dev/null || die "cpio not found: install the Debian package cpio"
command -v gzip >/dev/null || die "gzip not found: install the Debian package gzip"

shopt -s nullglob
kernels=(/boot/vmlinuz-*-cloud-amd64)
shopt -u nullglob
[ ${#kernels[@]} -gt 0 ] || die "no /boot/vmlinuz-*-cloud-amd64: install the Debian package linux-image-cloud-amd64"
VMLINUZ=$(printf '%s\n' "${kernels[@]}" | sort -V | tail -n 1)
KVER=${VMLINUZ#/boot/vmlinuz-}
[ -r "$VMLINUZ" ] || die "$VMLINUZ is not readable by $(id -un)"
MODDIR=/lib/modules/$KVER
[ -r "$MODDIR/modules.dep" ] || die "$MODDIR/modules.dep missing: reinstall the Debian package linux-image-$KVER"
GUEST_FILES=(init canary.sh bench.sh udhcpc.sh ack-server.sh) # what goes into the initramfs
for f in "${GUEST_FILES[@]}"; do
  [ -f "$HERE/$f" ] || die "guest/$f missing in $HERE"
done

stamp=$(
  {
    echo "haven-guest 1 $KVER $(stat -c '%s %Y' "$VMLINUZ")"
    sha256sum "$BUSYBOX" "$HERE/build.sh" "${GUEST_FILES[@]/#/$HERE/}" | cut -d' ' -f1
  } | sha256sum | cut -d' ' -f1
)
if [ -f "$OUT/vmlinuz" ] && [ -f "$OUT/initramfs.img" ] && [ -f "$OUT/.stamp" ] &&
  [ "$(cat "$OUT/.stamp")" = "$stamp" ]; then
  echo "guest: $OUT is up to date (kernel $KVER)"
  exit 0
fi

# --- build ----------------------------------------------------------------------------------------
mkdir -p "$OUT"
tmp=$(mktemp -d "$OUT/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,etc,"lib/modules/$KVER"}

cp "$BUSYBOX" "$root/bin/busybox"
while IFS= read -r applet; do
  [ -e "$root/$applet" ] || [ -L "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done < <("$BUSYBOX" --list-full)

# Resolve module dependencies (depth first, dependencies before dependants).
declare -A modpath moddeps state
modname() { # path -> canonical module name
  local n=${1##*/}
  n=${n%%.ko*}
  echo "${n//-/_}"
}
while IFS= read -r line; do
  p=${line%%:*}
  n=$(modname "$p")
  modpath[$n]=$p
  moddeps[$n]=${line#*:}
done <"$MODDIR/modules.dep"
builtin=$(sed -e 's#.*/##' -e 's#\.ko.*##' -e 's#-#_#g' "$MODDIR/modules.builtin" 2>/dev/null || true)
order=()
visit() {
  local n=$1 d
  [ -z "${state[$n]+x}" ] || return 0
  state[$n]=1
  if [ -z "${modpath[$n]+x}" ]; then
    grep -qx "$n" <<<"$builtin" && return 0 # built into this kernel: nothing to load
    die "kernel module $n not found in $MODDIR (package linux-image-$KVER)"
  fi
  for d in ${moddeps[$n]}; do
    visit "$(modname "$d")"
  done
  order+=("$n")
}
for m in "${WANT_MODULES[@]}"; do visit "$m"; done
nboot=${#order[@]}
for m in "${WANT_NET_MODULES[@]}"; do visit "$m"; done

: >"$root/etc/haven-modules"
: >"$root/etc/haven-net-modules"
list=haven-modules
for i in "${!order[@]}"; do
  n=${order[$i]}
  [ "$i" -lt "$nboot" ] || list=haven-net-modules
  src=$MODDIR/${modpath[$n]}
  dst=$root/lib/modules/$KVER/$n.ko
  case $src in
  *.ko.xz) xz -dc "$src" >"$dst" ;;
  *.ko.zst)
    command -v zstd >/dev/null || die "$src is zstd-compressed: install the Debian package zstd"
    zstd -qdc "$src" >"$dst"
    ;;
  *.ko.gz) gzip -dc "$src" >"$dst" ;;
  *) cp "$src" "$dst" ;;
  esac
  echo "$KVER/$n.ko" >>"$root/etc/$list"
done

install -m 0755 "$HERE/init" "$root/init"
install -m 0755 "$HERE/canary.sh" "$root/canary.sh"
install -m 0755 "$HERE/bench.sh" "$root/bench.sh"
install -m 0755 "$HERE/udhcpc.sh" "$root/etc/udhcpc.sh"
install -m 0755 "$HERE/ack-server.sh" "$root/ack-server.sh"
# /www: what the guest serves on port 80 (the canary's last ack); as plain text, not the HTML busybox
# httpd assumes for index.html.
mkdir "$root/www"
echo '.html:text/plain' >"$root/etc/httpd.conf"
cat >"$root/etc/fstab" <<'EOF'
proc /proc proc defaults 0 0
sysfs /sys sysfs defaults 0 0
devtmpfs /dev devtmpfs defaults 0 0
EOF
find "$root" -exec touch -h -d @0 {} +

# A second, hand-made newc archive holding /dev/console (c 5 1), so the kernel can give /init its
# console before anything is mounted; making device nodes with cpio would need root.
newc() { # name mode rdevmajor rdevminor ino
  local name=$1 pad
  printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
    "$5" "$2" 0 0 1 0 0 0 0 "$3" "$4" $((${#name} + 1)) 0
  printf '%s\0' "$name"
  pad=$(((4 - (110 + ${#name} + 1) % 4) % 4))
  [ "$pad" -eq 0 ] || head -c "$pad" /dev/zero
}

(
  cd "$root"
  find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible
  newc dev/console $((0020600)) 5 1 1
  newc TRAILER!!! 0 0 0 0
) | gzip -9n >"$tmp/initramfs.img"
cp "$VMLINUZ" "$tmp/vmlinuz"
echo "$stamp" >"$tmp/stamp"
mv -f "$tmp/vmlinuz" "$OUT/vmlinuz"
mv -f "$tmp/initramfs.img" "$OUT/initramfs.img"
mv -f "$tmp/stamp" "$OUT/.stamp"

echo "guest: built $OUT/vmlinuz and $OUT/initramfs.img ($(($(stat -c %s "$OUT/initramfs.img") / 1024)) KiB;" \
  "kernel $KVER; modules: ${order[*]})"
