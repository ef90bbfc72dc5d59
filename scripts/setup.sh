#!/usr/bin/env bash
# Installs what lcow needs on a fresh Debian 12 + Node 20 machine (run as root): the real tools
# the tests validate images with, a C compiler for the HCS stand-in library, pnpm, and the
# workspace's npm packages. Safe to run again.
set -euo pipefail

# Debian packages: e2fsprogs (e2fsck, debugfs, mkfs.ext4, dumpe2fs), qemu-utils (qemu-img),
# libarchive-tools (bsdtar), zstd/gzip, attr + libcap2-bin (xattr and capability fixtures),
# util-linux (losetup, mount), gcc + libc6-dev (the HCS shim), python3 (fixtures, manifests),
# qemu-system-common (qemu-storage-daemon: VHDX exported through FUSE) with fuse3, xfsprogs
# (the sandbox benchmark measures reflink copies on a scratch XFS), docker.io (dockerd 20.10 with
# containerd and runc: the plugin's end-to-end tests run a real dockerd).
PACKAGES=(e2fsprogs qemu-utils qemu-system-common fuse3 xfsprogs docker.io libarchive-tools zstd gzip tar attr libcap2-bin util-linux gcc libc6-dev python3 ca-certificates)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v pnpm >/dev/null 2>&1 || ! pnpm --version | grep -q '^10\.'; then
  npm install -g pnpm@10 >/dev/null
fi

cd "$(dirname "$0")/.."
pnpm install --frozen-lockfile
