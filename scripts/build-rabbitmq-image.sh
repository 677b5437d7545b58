#!/usr/bin/env bash
# Build the optional RabbitMQ image (default mpc-rabbitmq:latest) from Debian's `rabbitmq-server`, the way
# scripts/build-prometheus-image.sh builds Prometheus's: the .debs fetched once by apt-get in a throwaway
# container of the base image into build/rabbitmq/debs (cached until this script or the base image
# changes), then docker build --network none (compose/rabbitmq/Dockerfile). Env: RABBITMQ_IMAGE, BASE_IMAGE.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
RABBITMQ_IMAGE=${RABBITMQ_IMAGE:-mpc-rabbitmq:latest}
BASE_IMAGE=${BASE_IMAGE:-mpc-base:bookworm}
CTX=build/rabbitmq
DEBS=$CTX/debs

if [[ -z ${DOCKER_BUILDKIT:-} ]] && ! docker buildx version >/dev/null 2>&1; then
  export DOCKER_BUILDKIT=0
fi

base_id=$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE" 2>/dev/null) \
  || { echo "rabbitmq image: base image $BASE_IMAGE missing: run scripts/build-base-image.sh (make image)" >&2; exit 1; }
key=$( { echo "$base_id"; cat "${BASH_SOURCE[0]}"; } | sha256sum | cut -c1-64)
if [[ ! -f $DEBS/.key || $(cat "$DEBS/.key") != "$key" ]]; then
  echo "==> [rabbitmq] fetching Debian's rabbitmq-server .debs into $DEBS"
  rm -rf "$DEBS" && mkdir -p "$DEBS"
  docker run --rm -u 0 -v "$PWD/$DEBS:/out" "$BASE_IMAGE" bash -euc \
    'mkdir -p /tmp/a/partial && apt-get update -qq \
     && apt-get install -y -qq --download-only --no-install-recommends -o Dir::Cache::archives=/tmp/a rabbitmq-server >/dev/null \
     && cp /tmp/a/*.deb /out/ && chown -R '"$(id -u):$(id -g)"' /out'
  ls "$DEBS"/rabbitmq-server_*.deb >/dev/null
  echo "$key" > "$DEBS/.key"
fi
cp compose/rabbitmq/rabbitmq.conf "$CTX/rabbitmq.conf"
docker build --network none --build-arg "BASE_IMAGE=$BASE_IMAGE" -f compose/rabbitmq/Dockerfile \
  -t "$RABBITMQ_IMAGE" "$CTX"
echo "==> $RABBITMQ_IMAGE ready ($(docker image inspect -f '{{.Id}}' "$RABBITMQ_IMAGE" | cut -c8-19))"
