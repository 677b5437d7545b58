#!/usr/bin/env bash
# Build the base image (default mpc-base:bookworm) without any image registry.
# Why: this machine cannot `docker pull` / `FROM python`, so we make a Debian bookworm rootfs
# with debootstrap from the Debian mirror and `docker import` it. The rootfs tarball is cached in
# build/base/ with a hash of its inputs (suite, packages, mirror, this script); it is rebuilt only
# when that hash changes, and the image is re-imported only when the image for that hash is missing.
# Env: BASE_IMAGE (default mpc-base:bookworm), MIRROR (default: from the host's apt sources),
#      REBUILD=1 to force a fresh debootstrap.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
SELF=scripts/build-base-image.sh
IMAGE=${BASE_IMAGE:-mpc-base:bookworm}
REPO=${IMAGE%:*}
SUITE=bookworm
PACKAGES=python3,python3-venv,python3-pip,python3-cffi-backend,redis-server,supervisor,ca-certificates
OUT=build/base
TARBALL=$OUT/rootfs.tar
STAMP=$OUT/inputs.sha256

die() { echo "ERROR: $*" >&2; exit 1; }
say() { echo "==> $*"; }

# First non-security Debian URI from the host's apt sources (deb822 .sources or one-line .list).
detect_mirror() {
  {
    awk '/^URIs:/ {print $2}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true
    sed -E 's/\[[^]]*\]//' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | awk '$1 == "deb" {print $2}' || true
  } | grep -E '^https?://' | grep -v -- '-security' | head -n1 || true
}
MIRROR=${MIRROR:-$(detect_mirror)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

command -v docker >/dev/null || die "docker is not installed (needed to import $IMAGE)"
timeout 30 docker info >/dev/null 2>&1 \
  || die "the docker daemon is not answering (is it running, and may this user use it?)"

HASH=$( { printf '%s\n' "$SUITE" "$PACKAGES" "$MIRROR"; cat "$SELF"; } | sha256sum | cut -c1-64)
H12=${HASH:0:12}
say "base image $IMAGE: suite=$SUITE mirror=$MIRROR inputs=$H12"

dir=
cleanup() {  # on failure debootstrap may leave /proc or /sys mounted inside: unmount first
  [[ -n $dir && -d $dir ]] || return 0
  { grep -o " $dir/[^ ]*" /proc/mounts || true; } | sort -r | xargs -r umount -l || true
  rm -rf --one-file-system "$dir" "$TARBALL.tmp" || true
}

build_rootfs() {
  [[ $(id -u) -eq 0 ]] || die "building the rootfs needs root (debootstrap chroots); rerun as root or with sudo"
  if ! command -v debootstrap >/dev/null; then
    say "installing debootstrap"
    apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null
  fi
  mkdir -p "$OUT"
  dir=$(mktemp -d "$PWD/$OUT/rootfs.XXXXXX")
  trap cleanup EXIT
  say "debootstrap $SUITE into $dir (about a minute)"
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$dir" "$MIRROR" \
    > "$OUT/debootstrap.log" 2>&1 || die "debootstrap failed, see $OUT/debootstrap.log"
  say "trimming apt caches, docs, logs"
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/cache/apt/*.bin "$dir"/var/lib/apt/lists/* \
    "$dir"/var/log/* "$dir"/tmp/* "$dir"/usr/share/man/* "$dir"/usr/share/info/* \
    "$dir"/usr/share/locale/* "$dir"/var/cache/debconf/*-old
  find "$dir/usr/share/doc" -type f ! -name copyright -delete
  find "$dir/usr/share/doc" -type l -delete
  find "$dir/usr/share/doc" -mindepth 1 -type d -empty -delete
  : > "$dir/etc/resolv.conf"; : > "$dir/etc/hostname"   # docker provides these at run time
  say "writing $TARBALL"
  tar -C "$dir" --numeric-owner -cf "$TARBALL.tmp" .
  rm -rf --one-file-system "$dir"
  mv "$TARBALL.tmp" "$TARBALL"
  echo "$HASH" > "$STAMP"
}

if [[ ${REBUILD:-0} != 1 && -f $TARBALL && $(cat "$STAMP" 2>/dev/null) == "$HASH" ]]; then
  say "rootfs tarball is up to date ($TARBALL)"
else
  build_rootfs
fi

label_of() { docker image inspect -f '{{index .Config.Labels "mpc.inputs"}}' "$1" 2>/dev/null || true; }
if [[ $(label_of "$IMAGE") == "$HASH" ]]; then
  say "$IMAGE is up to date"
elif [[ $(label_of "$REPO:$H12") == "$HASH" ]]; then
  say "tagging existing $REPO:$H12 as $IMAGE"
  docker tag "$REPO:$H12" "$IMAGE"
else
  say "importing $TARBALL as $IMAGE and $REPO:$H12"
  docker import \
    --change "LABEL mpc.inputs=$HASH" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    - "$REPO:$H12" < "$TARBALL" >/dev/null
  docker tag "$REPO:$H12" "$IMAGE"
fi

# Drop hash tags of older inputs (only tags this script made: REPO:<12 hex>).
for tag in $(docker images "$REPO" --format '{{.Tag}}'); do
  if [[ $tag =~ ^[0-9a-f]{12}$ && $tag != "$H12" ]]; then
    docker rmi "$REPO:$tag" >/dev/null || echo "warning: could not remove $REPO:$tag" >&2
  fi
done
say "done: $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%d MB", $1/1e6}'))"
