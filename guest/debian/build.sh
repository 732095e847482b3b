#!/usr/bin/env bash
# Build Haven's Debian 12 cloud-style guest image from Debian's packages, a stand-in for the official
# Debian cloud images (which cannot be downloaded everywhere Haven is tested).
#
#   guest/debian/build.sh               build (root) unless cached; print the image's path on stdout
#   guest/debian/build.sh --print-path  print the path it would use, build nothing
#
# The image: a 2 GiB qcow2 (compressed) with an msdos partition table and one ext4 root partition;
# GRUB (i386-pc) in the MBR, so SeaBIOS boots it from its own disk; Debian 12 with the cloud kernel,
# systemd, cloud-init (NoCloud and the other stock datasources, default user "debian"), ifupdown with
# isc-dhcp-client (cloud-init's "eni" renderer), openssh-server, qemu-guest-agent and sudo. Kernel and
# GRUB talk on ttyS0. No ssh host keys, machine id or hostname are baked in: cloud-init and systemd
# make them on first boot, so every VM made from the image is a distinct machine.
#
# The image is cached outside the clone: ${HAVEN_IMAGE_CACHE:-/var/cache/haven/images}/
# debian-12-<hash>.qcow2, where <hash> is that of this file, which holds the whole recipe: a changed
# recipe builds a new image, an unchanged one is reused by every clone and CI run on the machine. A
# build works in a temporary directory next to the cache entry and renames the image into place only
# when it is complete; on any failure the trap unmounts what mmdebstrap left mounted and deletes it.
# No loop device or mount of our own: mkfs.ext4 fills the partition from the directory tree.
# Needs (scripts/setup.sh installs them): mmdebstrap, fdisk (sfdisk), e2fsprogs, grub-pc-bin,
# grub2-common, qemu-utils, and Debian's mirror (deb.debian.org) over the network.
set -euo pipefail

die() {
  echo "guest/debian/build.sh: error: $*" >&2
  exit 1
}
say() { echo "debian image: $*" >&2; }

SELF=$(readlink -f "${BASH_SOURCE[0]}")
SUITE=bookworm
DISK_SIZE=2G
# Kernel command line, also given to update-grub inside the guest (console on the first serial port).
CMDLINE="console=ttyS0,115200n8"
PACKAGES=(
  linux-image-cloud-amd64 systemd-sysv libpam-systemd dbus
  cloud-init cloud-guest-utils # cloud-guest-utils: growpart, so the root grows with the disk
  ifupdown isc-dhcp-client netbase iproute2
  openssh-server qemu-guest-agent sudo locales grub-pc
)
MIRRORS=(
  "deb http://deb.debian.org/debian $SUITE main"
  "deb http://deb.debian.org/debian $SUITE-updates main"
  "deb http://deb.debian.org/debian-security $SUITE-security main"
)

# --- inside mmdebstrap's customize hook: changes to the finished tree that need a chroot -------------
# (mmdebstrap runs `build.sh --customize ROOT` with /dev, /proc and /sys mounted in ROOT)
customize() {
  local root=$1
  # grub-pc's upgrades reinstall the boot code where the guest's disk is (virtio-blk: /dev/vda).
  echo "grub-pc grub-pc/install_devices multiselect /dev/vda" | chroot "$root" debconf-set-selections
  mkdir -p "$root/etc/default/grub.d"
  cat >"$root/etc/default/grub.d/haven.cfg" <<EOF
# Haven's guest image: boot at once, everything on the serial console (see guest/debian/build.sh).
GRUB_TIMEOUT=0
GRUB_TIMEOUT_STYLE=hidden
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="$CMDLINE"
GRUB_TERMINAL="serial console"
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB_DISABLE_OS_PROBER=true
EOF
  # Timers and services that only cost boot time and CPU in a short-lived VM under TCG: apt's daily
  # download and upgrade, e2scrub (LVM snapshots; there is no LVM), fstrim (the root is mounted
  # with discard).
  chroot "$root" systemctl disable --quiet apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
    e2scrub_reap.service fstrim.timer
  # cloud-init: the hostname resolves (sudo complains otherwise), as in Debian's cloud images; host
  # keys without RSA, whose key generation alone takes ~10 s of a first boot under TCG (ed25519 and
  # ECDSA serve every current client). User-data can override both.
  cat >"$root/etc/cloud/cloud.cfg.d/90_haven.cfg" <<EOF
manage_etc_hosts: true
ssh_genkeytypes: [ed25519, ecdsa]
EOF
  # C.UTF-8 needs no locale-gen (which takes many seconds under TCG on first boot); user-data can
  # still ask for another locale.
  echo "LANG=C.UTF-8" >"$root/etc/default/locale"
  # Nothing of the build machine and nothing that must be unique per VM stays in the image.
  rm -f "$root"/etc/ssh/ssh_host_*_key "$root"/etc/ssh/ssh_host_*_key.pub
  echo localhost >"$root/etc/hostname"
  : >"$root/etc/resolv.conf" # dhclient writes it
  : >"$root/etc/machine-id"  # empty: systemd makes one on first boot
  [ -L "$root/var/lib/dbus/machine-id" ] || rm -f "$root/var/lib/dbus/machine-id"
  rm -f "$root/var/lib/systemd/random-seed"
}

if [ "${1:-}" = --customize ]; then
  customize "$2"
  exit 0
fi

# --- the cache entry ----------------------------------------------------------------------------------
CACHE=${HAVEN_IMAGE_CACHE:-/var/cache/haven/images}
hash=$(sha256sum "$SELF" | cut -c1-16)
IMAGE=$CACHE/debian-12-$hash.qcow2
case ${1:-} in
--print-path)
  echo "$IMAGE"
  exit 0
  ;;
"") ;;
*) die "usage: guest/debian/build.sh [--print-path]" ;;
esac
if [ -f "$IMAGE" ]; then
  echo "$IMAGE"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || die "building the image needs root (mmdebstrap's chroot)"
for cmd in mmdebstrap sfdisk mkfs.ext4 grub-mkimage grub-editenv qemu-img flock; do
  command -v "$cmd" >/dev/null || die "$cmd not found: run scripts/setup.sh (as root)"
done

mkdir -p "$CACHE"
# One build at a time per cache: a second one waits, then finds the image made by the first.
exec 9>"$CACHE/.debian-12.lock"
flock 9
if [ -f "$IMAGE" ]; then
  echo "$IMAGE"
  exit 0
fi

work=$(mktemp -d "$CACHE/.debian-12-$hash.XXXXXX")
chmod 755 "$work" # apt downloads as user _apt, who must reach the tree's apt directories
cleanup() {
  set +e
  # mmdebstrap unmounts what it mounted in the tree, unless it was killed: whatever is still mounted
  # below $work goes, deepest first.
  awk -v w="$work/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m"; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
started=$(date +%s)
say "building $IMAGE"

# --- root filesystem tree ---------------------------------------------------------------------------
say "installing Debian $SUITE with mmdebstrap (several minutes)"
root=$work/root
# merged-usr hook: /bin, /lib… as symlinks, as debootstrap makes them (instead of the usrmerge package
# and its Perl). No man pages, translations or docs but the copyrights: nothing in the image reads them.
mmdebstrap --mode=root --variant=minbase \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --include="$(
    IFS=,
    echo "${PACKAGES[*]}"
  )" \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --customize-hook="bash '$SELF' --customize \"\$1\"" \
  "$SUITE" "$root" "${MIRRORS[@]}"

shopt -s nullglob
kernels=("$root"/boot/vmlinuz-*)
shopt -u nullglob
[ ${#kernels[@]} -eq 1 ] || die "expected one kernel in the image, found ${#kernels[@]}"
kver=${kernels[0]##*/vmlinuz-}
[ -f "$root/boot/initrd.img-$kver" ] || die "no initrd for $kver"
uuid=$(cat /proc/sys/kernel/random/uuid)
echo "UUID=$uuid / ext4 rw,discard,errors=remount-ro 0 1" >"$root/etc/fstab"
echo "debian-12-$hash" >"$root/etc/haven-image" # which recipe made this guest's disk

# --- boot loader -------------------------------------------------------------------------------------
# Done by hand, as grub-install does on a mounted loop device (which not every build host, e.g. a
# container, can partition-scan): the image's own GRUB modules in /boot/grub/i386-pc, a core.img in
# the 1 MiB gap after the MBR that finds the root by its UUID, boot.img in the MBR. grub.cfg says what
# update-grub says with /etc/default/grub.d/haven.cfg; the guest's own update-grub (run on kernel
# upgrades) takes over from there.
say "installing GRUB"
grubdir=$root/usr/lib/grub/i386-pc
mkdir -p "$root/boot/grub/i386-pc"
cp "$grubdir"/*.mod "$grubdir"/*.lst "$grubdir/boot.img" "$root/boot/grub/i386-pc/"
grub-editenv "$root/boot/grub/grubenv" create
# shellcheck disable=SC2016 # $root is GRUB's variable, not the shell's
printf 'search.fs_uuid %s root\nset prefix=($root)/boot/grub\n' "$uuid" >"$work/load.cfg"
grub-mkimage --format=i386-pc --directory="$grubdir" --config="$work/load.cfg" --prefix=/boot/grub \
  --output="$root/boot/grub/i386-pc/core.img" biosdisk part_msdos ext2 search_fs_uuid
{
  echo "# Written by Haven's guest/debian/build.sh; update-grub replaces it (/etc/default/grub.d/haven.cfg)."
  echo "serial --unit=0 --speed=115200"
  echo "terminal_input serial console"
  echo "terminal_output serial console"
  echo "set timeout=0"
  echo "set timeout_style=hidden"
  echo "insmod part_msdos"
  echo "insmod ext2"
  echo "search --no-floppy --fs-uuid --set=root $uuid"
  echo "menuentry 'Debian GNU/Linux 12' {"
  echo "  linux /boot/vmlinuz-$kver root=UUID=$uuid ro $CMDLINE"
  echo "  initrd /boot/initrd.img-$kver"
  echo "}"
} >"$root/boot/grub/grub.cfg"

# --- disk: msdos label, one bootable ext4 partition from 1 MiB, filled from the tree ----------------
say "making the disk"
raw=$work/disk.raw
truncate -s "$DISK_SIZE" "$raw"
printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk --quiet "$raw"
offset=$((2048 * 512))
blocks=$((($(stat -c %s "$raw") - offset) / 4096))
# Inode tables and journal are written now (zeros cost nothing in the qcow2), so the guest's kernel
# does not spend its first minutes initialising them in the background.
mkfs.ext4 -q -F -b 4096 -U "$uuid" -L root -E "offset=$offset,lazy_itable_init=0,lazy_journal_init=0" \
  -d "$root" "$raw" "$blocks"
core=$root/boot/grub/i386-pc/core.img
[ "$(stat -c %s "$core")" -lt $((offset - 512)) ] || die "core.img does not fit before the partition"
# boot.img's first 440 bytes (the rest of sector 0 is the partition table), with its BIOS drive
# check replaced by NOPs as grub-bios-setup does for hard disks; core.img from sector 1, where
# boot.img looks for it (and core.img's first sector for the rest of it).
dd if="$grubdir/boot.img" of="$raw" bs=440 count=1 conv=notrunc status=none
printf '\x90\x90' | dd of="$raw" bs=1 seek=$((0x66)) conv=notrunc status=none
dd if="$core" of="$raw" bs=512 seek=1 conv=notrunc status=none

# --- finish: compress, move into place -----------------------------------------------------------------
say "compressing"
qemu-img convert -f raw -O qcow2 -c "$raw" "$work/image.qcow2"
mv -f "$work/image.qcow2" "$IMAGE"
say "built in $(($(date +%s) - started)) s: $IMAGE ($(du -m "$IMAGE" | cut -f1) MiB)"
echo "$IMAGE"
