#!/usr/bin/env bash
# Build the optional Prometheus image (default mpc-prometheus:latest) from Debian's `prometheus` package:
#   1. the .deb files: prometheus and whatever the base image lacks for it, fetched by scripts/fetch-debs.sh
#      (apt-get in a throwaway container of the base image) into build/prometheus/debs; cached until this
#      script or the base image changes;
#   2. docker build --network none from them (compose/prometheus/Dockerfile).
# Needs the base image (scripts/build-base-image.sh). Env: PROMETHEUS_IMAGE, BASE_IMAGE.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PROMETHEUS_IMAGE=${PROMETHEUS_IMAGE:-mpc-prometheus:latest}
export BASE_IMAGE=${BASE_IMAGE:-mpc-base:bookworm}
CTX=build/prometheus
DEBS=$CTX/debs

if [[ -z ${DOCKER_BUILDKIT:-} ]] && ! docker buildx version >/dev/null 2>&1; then
  export DOCKER_BUILDKIT=0
fi

bash scripts/fetch-debs.sh "$DEBS" "$(cat "${BASH_SOURCE[0]}")" prometheus
cp compose/prometheus/prometheus.yml "$CTX/prometheus.yml"
docker build --network none --build-arg "BASE_IMAGE=$BASE_IMAGE" -f compose/prometheus/Dockerfile \
  -t "$PROMETHEUS_IMAGE" "$CTX"
echo "==> $PROMETHEUS_IMAGE ready ($(docker image inspect -f '{{.Id}}' "$PROMETHEUS_IMAGE" | cut -c8-19))"
