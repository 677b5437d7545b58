#!/usr/bin/env bash
# Fetch Debian packages - and whatever the base image lacks for them - as .deb files into DIR, with apt-get
# in a throwaway container of the base image (which reaches the Debian mirror, like debootstrap did), so an
# image can install them in a `docker build --network none`. Used by build-service-image.sh and
# build-swarm-node-image.sh. Cached: fetched again only when the base image, KEY (the caller's own inputs,
# e.g. its script's text) or the package list changes.
#   scripts/fetch-debs.sh DIR KEY PACKAGE...      (DIR relative to the repository root)
# Env: BASE_IMAGE (default mpc-base:bookworm).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
DEBS=$1 INPUTS=$2
shift 2
BASE_IMAGE=${BASE_IMAGE:-mpc-base:bookworm}

base_id=$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE" 2>/dev/null) \
  || { echo "fetch-debs: base image $BASE_IMAGE missing: run scripts/build-base-image.sh (make image)" >&2; exit 1; }
key=$( { echo "$base_id"; echo "$INPUTS"; echo "$*"; } | sha256sum | cut -c1-64)
if [[ -f $DEBS/.key && $(cat "$DEBS/.key") == "$key" ]]; then
  exit 0
fi
echo "==> fetching Debian's $* .debs into $DEBS"
rm -rf "$DEBS" && mkdir -p "$DEBS"
docker run --rm -u 0 -v "$PWD/$DEBS:/out" "$BASE_IMAGE" bash -euc \
  'mkdir -p /tmp/a/partial && apt-get update -qq \
   && apt-get install -y -qq --download-only --no-install-recommends -o Dir::Cache::archives=/tmp/a "$@" >/dev/null \
   && cp /tmp/a/*.deb /out/ && chown -R '"$(id -u):$(id -g)"' /out' _ "$@"
ls "$DEBS/$1"_*.deb >/dev/null
echo "$key" > "$DEBS/.key"
