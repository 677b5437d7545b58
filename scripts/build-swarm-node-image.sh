#!/usr/bin/env bash
# Build the swarm node image (default mpc-swarm-node:latest) of `make up-swarm NODES=3`: Debian's docker.io
# on the project's base image, so each node container runs its own dockerd. Like the Prometheus image:
#   1. scripts/fetch-debs.sh: docker.io and whatever the base image lacks for it, as .debs in
#      build/swarm-node/debs (cached until this script, the package list or the base image changes);
#   2. docker build --network none from them (compose/swarm-node/Dockerfile).
# Needs the base image (scripts/build-base-image.sh). Env: SWARM_NODE_IMAGE, BASE_IMAGE.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
SWARM_NODE_IMAGE=${SWARM_NODE_IMAGE:-mpc-swarm-node:latest}
export BASE_IMAGE=${BASE_IMAGE:-mpc-base:bookworm}
CTX=build/swarm-node

if [[ -z ${DOCKER_BUILDKIT:-} ]] && ! docker buildx version >/dev/null 2>&1; then
  export DOCKER_BUILDKIT=0
fi

# iptables and iproute2: dockerd's bridge and overlay networking; the rest comes as docker.io's dependencies.
bash scripts/fetch-debs.sh "$CTX/debs" "$(cat "${BASH_SOURCE[0]}")" docker.io iptables iproute2
cp compose/swarm-node/dockerd-entry.sh "$CTX/dockerd-entry.sh"
docker build --network none --build-arg "BASE_IMAGE=$BASE_IMAGE" -f compose/swarm-node/Dockerfile \
  -t "$SWARM_NODE_IMAGE" "$CTX"
echo "==> $SWARM_NODE_IMAGE ready ($(docker image inspect -f '{{.Id}}' "$SWARM_NODE_IMAGE" | cut -c8-19))"
