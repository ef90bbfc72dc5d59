#!/usr/bin/env bash
# Builds the managed plugin `lcow` from this repository (Linux, docker with buildx or the classic builder).
#   apps/plugin/packaging/managed/build.sh [plugin-name]   (default: lcow)
# Then: docker plugin enable <name>; restart dockerd with --experimental -s <name>.
set -euo pipefail
name=${1:-lcow}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$repo" && pnpm build && pnpm --filter @lcow/plugin deploy --prod "$work/ctx/lcow-plugin")
cp "$here/Dockerfile" "$work/ctx/Dockerfile"
docker build -t "lcow-plugin-rootfs:build" "$work/ctx"
mkdir -p "$work/plugin/rootfs"
cid=$(docker create lcow-plugin-rootfs:build true)
docker export "$cid" | tar -C "$work/plugin/rootfs" -x
docker rm "$cid" >/dev/null
cp "$here/config.json" "$work/plugin/config.json"
docker plugin create "$name" "$work/plugin"
echo "created plugin $name; enable it with: docker plugin enable $name"
