#!/usr/bin/env bash
# Build the optional Prometheus image (default mpc-prometheus:latest) from Debian's `prometheus` package:
#   1. the .deb files: prometheus and whatever the base image lacks for it, fetched once by apt-get in a
#      throwaway container of the base image (which reaches the Debian mirror, like debootstrap did),
#      into build/prometheus/debs; cached until this script or the base image changes;
#   2. docker build --network none from them (compose/prometheus/Dockerfile).
# Needs the base image (scripts/build-base-image.sh). Env: PROMETHEUS_IMAGE, BASE_IMAGE.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PROMETHEUS_IMAGE=${PROMETHEUS_IMAGE:-mpc-prometheus:latest}
BASE_IMAGE=${BASE_IMAGE:-mpc-base:bookworm}
CTX=build/prometheus
DEBS=$CTX/debs

if [[ -z ${DOCKER_BUILDKIT:-} ]] && ! docker buildx version >/dev/null 2>&1; then
  export DOCKER_BUILDKIT=0
fi

base_id=$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE" 2>/dev/null) \
  || { echo "prometheus image: base image $BASE_IMAGE missing: run scripts/build-base-image.sh (make image)" >&2; exit 1; }
key=$( { echo "$base_id"; cat "${BASH_SOURCE[0]}"; } | sha256sum | cut -c1-64)
if [[ ! -f $DEBS/.key || $(cat "$DEBS/.key") != "$key" ]]; then
  echo "==> [prometheus] fetching Debian's prometheus .debs into $DEBS"
  rm -rf "$DEBS" && mkdir -p "$DEBS"
  docker run --rm -u 0 -v "$PWD/$DEBS:/out" "$BASE_IMAGE" bash -euc \
    'mkdir -p /tmp/a/partial && apt-get update -qq \
     && apt-get install -y -qq --download-only --no-install-recommends -o Dir::Cache::archives=/tmp/a prometheus >/dev/null \
     && cp /tmp/a/*.deb /out/ && chown -R '"$(id -u):$(id -g)"' /out'
  ls "$DEBS"/prometheus_*.deb >/dev/null
  echo "$key" > "$DEBS/.key"
fi
cp compose/prometheus/prometheus.yml "$CTX/prometheus.yml"
docker build --network none --build-arg "BASE_IMAGE=$BASE_IMAGE" -f compose/prometheus/Dockerfile \
  -t "$PROMETHEUS_IMAGE" "$CTX"
echo "==> $PROMETHEUS_IMAGE ready ($(docker image inspect -f '{{.Id}}' "$PROMETHEUS_IMAGE" | cut -c8-19))"
