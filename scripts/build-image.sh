#!/usr/bin/env bash
# Build the node image (default mpc-node:latest) with no image registry and no network in the build:
#   1. scripts/build-base-image.sh   debootstrap rootfs -> docker import mpc-base:bookworm (cached)
#   2. scripts/build-wheelhouse.sh   pinned wheels -> build/wheelhouse (cached)
#   3. docker build --network none -f compose/Dockerfile .   (docker's layer cache)
# Idempotent: a warm run takes a few seconds. Env: NODE_IMAGE, BASE_IMAGE, plus those of the steps.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
NODE_IMAGE=${NODE_IMAGE:-mpc-node:latest}
export BASE_IMAGE=${BASE_IMAGE:-mpc-base:bookworm}

# This docker CLI uses BuildKit only through the buildx plugin; without it, use the classic builder.
if [[ -z ${DOCKER_BUILDKIT:-} ]] && ! docker buildx version >/dev/null 2>&1; then
  export DOCKER_BUILDKIT=0
fi

step() {
  local name=$1 t0=$EPOCHREALTIME
  shift
  echo "==> [$name] start"
  "$@"
  echo "==> [$name] done in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1fs", b - a}')"
}

T0=$EPOCHREALTIME
OLD_ID=$(docker image inspect -f '{{.Id}}' "$NODE_IMAGE" 2>/dev/null || true)
step base bash scripts/build-base-image.sh
step wheelhouse bash scripts/build-wheelhouse.sh
step image docker build --network none --build-arg "BASE_IMAGE=$BASE_IMAGE" \
  -f compose/Dockerfile -t "$NODE_IMAGE" .
NEW_ID=$(docker image inspect -f '{{.Id}}' "$NODE_IMAGE")
if [[ -n $OLD_ID && $OLD_ID != "$NEW_ID" ]]; then  # our previous build, now untagged; kept if in use
  docker rmi "$OLD_ID" >/dev/null 2>&1 || true
fi
echo "==> $NODE_IMAGE ready (${NEW_ID:7:12})" \
  "in $(awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1fs", b - a}')"
