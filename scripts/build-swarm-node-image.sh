#!/usr/bin/env bash
# Build the swarm node image (default mpc-swarm-node:latest) of `make up-swarm NODES=3`: Debian's docker.io
# on the project's base image, so each node container runs its own dockerd. Like the Prometheus image:
#   1. the .deb files: docker.io and whatever the base image lacks for it, fetched once by apt-get in a
#      throwaway container of the base image into build/swarm-node/debs; cached until this script, the
#      entry script or the base image changes;
#   2. docker build --network none from them (compose/swarm-node/Dockerfile).
# Needs the base image (scripts/build-base-image.sh). Env: SWARM_NODE_IMAGE, BASE_IMAGE.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
SWARM_NODE_IMAGE=${SWARM_NODE_IMAGE:-mpc-swarm-node:latest}
BASE_IMAGE=${BASE_IMAGE:-mpc-base:bookworm}
CTX=build/swarm-node
DEBS=$CTX/debs

if [[ -z ${DOCKER_BUILDKIT:-} ]] && ! docker buildx version >/dev/null 2>&1; then
  export DOCKER_BUILDKIT=0
fi

base_id=$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE" 2>/dev/null) \
  || { echo "swarm node image: base image $BASE_IMAGE missing: run scripts/build-base-image.sh (make image)" >&2; exit 1; }
key=$( { echo "$base_id"; cat "${BASH_SOURCE[0]}"; } | sha256sum | cut -c1-64)
if [[ ! -f $DEBS/.key || $(cat "$DEBS/.key") != "$key" ]]; then
  echo "==> [swarm-node] fetching Debian's docker.io .debs into $DEBS"
  rm -rf "$DEBS" && mkdir -p "$DEBS"
  # iptables and iproute2: dockerd's bridge and overlay networking; the rest is docker.io's dependencies.
  docker run --rm -u 0 -v "$PWD/$DEBS:/out" "$BASE_IMAGE" bash -euc \
    'mkdir -p /tmp/a/partial && apt-get update -qq \
     && apt-get install -y -qq --download-only --no-install-recommends -o Dir::Cache::archives=/tmp/a \
          docker.io iptables iproute2 >/dev/null \
     && cp /tmp/a/*.deb /out/ && chown -R '"$(id -u):$(id -g)"' /out'
  ls "$DEBS"/docker.io_*.deb >/dev/null
  echo "$key" > "$DEBS/.key"
fi
cp compose/swarm-node/dockerd-entry.sh "$CTX/dockerd-entry.sh"
docker build --network none --build-arg "BASE_IMAGE=$BASE_IMAGE" -f compose/swarm-node/Dockerfile \
  -t "$SWARM_NODE_IMAGE" "$CTX"
echo "==> $SWARM_NODE_IMAGE ready ($(docker image inspect -f '{{.Id}}' "$SWARM_NODE_IMAGE" | cut -c8-19))"
