#!/usr/bin/env bash
# Haven's one setup: Debian packages, npm dependencies, the TypeScript build and the canary guest.
# Idempotent, non-interactive, and quick when everything is already in place. Both `npm run demo` and
# `npm test` call it first.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*" >&2; }

# --- Debian packages -------------------------------------------------------------------------------
PACKAGES=(etcd-server etcd-client openssl nftables qemu-system-x86 qemu-utils qemu-block-extra busybox-static cpio gzip xz-utils zstd
  linux-image-cloud-amd64 procps iproute2 ceph-mon ceph-osd ceph-mgr ceph-common dnsmasq-base genisoimage ovmf
  pacemaker-cli-utils # crm_simulate: the differential test against Pacemaker, bench:scheduler
  # the Debian guest image (guest/debian/build.sh, which the test command runs), its smoke test and ssh to it
  mmdebstrap fdisk e2fsprogs util-linux grub-pc-bin grub2-common openssh-client curl
  systemd) # systemd-analyze verify checks havend's unit
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]} > 0)); then
  if [[ $(id -u) -ne 0 ]]; then
    say "missing Debian packages: ${missing[*]}; run the setup as root (or: sudo apt-get install ${missing[*]})"
    exit 1
  fi
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq </dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
fi

# --- npm dependencies (pinned Node 24 LTS comes with them) ----------------------------------------
lock_hash=$(sha256sum package-lock.json package.json | sha256sum | cut -c1-16)
if [[ ! -f node_modules/.haven-setup || $(cat node_modules/.haven-setup) != "$lock_hash" ]]; then
  say "installing npm dependencies"
  npm ci --no-audit --no-fund --loglevel=error </dev/null
  echo "$lock_hash" >node_modules/.haven-setup
fi

# --- TypeScript -------------------------------------------------------------------------------------
say "building TypeScript"
node_modules/.bin/tsc -p tsconfig.json --incremental --tsBuildInfoFile dist/.tsbuildinfo

# --- canary guest -----------------------------------------------------------------------------------
bash guest/build.sh guest/build
