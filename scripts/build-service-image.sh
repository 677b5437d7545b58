#!/usr/bin/env bash
# Build an optional service's image from Debian's own package, on the same debootstrap'ed base as the nodes:
#   scripts/build-service-image.sh prometheus   -> mpc-prometheus:latest (make image; make up PROMETHEUS=1)
#   scripts/build-service-image.sh rabbitmq     -> mpc-rabbitmq:latest   (make up RABBITMQ=1)
#   1. the .deb files: the package and whatever the base image lacks for it, fetched by scripts/fetch-debs.sh
#      (apt-get in a throwaway container of the base image) into build/NAME/debs; cached until this script
#      or the base image changes;
#   2. docker build --network none from them (compose/NAME/Dockerfile, with compose/NAME's config file).
# Needs the base image (scripts/build-base-image.sh). Env: PROMETHEUS_IMAGE, RABBITMQ_IMAGE, BASE_IMAGE.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
name=${1:-}
case $name in
  prometheus) package=prometheus config=prometheus.yml image=${PROMETHEUS_IMAGE:-mpc-prometheus:latest} ;;
  rabbitmq) package=rabbitmq-server config=rabbitmq.conf image=${RABBITMQ_IMAGE:-mpc-rabbitmq:latest} ;;
  *) echo "usage: $0 prometheus|rabbitmq (got '${name}')" >&2; exit 2 ;;
esac
export BASE_IMAGE=${BASE_IMAGE:-mpc-base:bookworm}
CTX=build/$name

if [[ -z ${DOCKER_BUILDKIT:-} ]] && ! docker buildx version >/dev/null 2>&1; then
  export DOCKER_BUILDKIT=0
fi

bash scripts/fetch-debs.sh "$CTX/debs" "$(cat "${BASH_SOURCE[0]}")" "$package"
cp "compose/$name/$config" "$CTX/$config"
docker build --network none --build-arg "BASE_IMAGE=$BASE_IMAGE" -f "compose/$name/Dockerfile" -t "$image" "$CTX"
echo "==> $image ready ($(docker image inspect -f '{{.Id}}' "$image" | cut -c8-19))"
