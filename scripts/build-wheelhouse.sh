#!/usr/bin/env bash
# Download the node image's pinned Python dependencies as wheels into build/wheelhouse/.
# Why: `docker build` runs with --network none, so compose/Dockerfile installs from this
# wheelhouse with `pip install --no-index`. Wheels are fetched for the image's interpreter
# (CPython 3.11, manylinux x86_64), not the host's. The pins live in compose/requirements-node.txt
# and must match pyproject.toml; the download is skipped when the stamp matches the inputs.
# Env: PYTHON (default python3, used only to run pip on the host).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REQ=compose/requirements-node.txt
OUT=build/wheelhouse
STAMP=$OUT/.inputs.sha256
PY=${PYTHON:-python3}
PIP_TARGET=(--only-binary=:all: --python-version 3.11 --implementation cp
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64
  --abi cp311 --abi abi3 --abi none)

die() { echo "ERROR: $*" >&2; exit 1; }
say() { echo "==> $*"; }

command -v "$PY" >/dev/null || die "$PY not found (set PYTHON=...)"

say "checking that $REQ and pyproject.toml pin the same versions"
"$PY" - "$REQ" pyproject.toml <<'PYEOF' || die "pins drifted: make $REQ and pyproject.toml agree"
import re, sys, tomllib
req_path, toml_path = sys.argv[1:]
pins = [ln.strip() for ln in open(req_path) if ln.strip() and not ln.lstrip().startswith("#")]
deps = tomllib.load(open(toml_path, "rb"))["project"]["dependencies"]
dep_pins = [re.split(r"\s*;", d, maxsplit=1)[0].strip() for d in deps]
bad = [f"{req_path}: {p!r} is not in pyproject.toml [project].dependencies" for p in pins if p not in dep_pins]
bad += [f"pyproject.toml: {p!r} is not in {req_path}" for p in dep_pins if p not in pins]
for line in bad:
    print("  DRIFT:", line, file=sys.stderr)
sys.exit(1 if bad else 0)
PYEOF

HASH=$( { cat "$REQ"; printf '%s\n' "${PIP_TARGET[@]}"; } | sha256sum | cut -c1-64)
if [[ $(cat "$STAMP" 2>/dev/null) == "$HASH" ]] && compgen -G "$OUT/*.whl" >/dev/null; then
  say "wheelhouse is up to date ($OUT, $(find "$OUT" -name '*.whl' | wc -l) wheels)"
  exit 0
fi

say "downloading wheels for CPython 3.11 manylinux x86_64 into $OUT"
tmp=$(mktemp -d "build/wheelhouse.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$PY" -m pip download --disable-pip-version-check -q "${PIP_TARGET[@]}" -d "$tmp" -r "$REQ" \
  || die "pip download failed (is PyPI or your PIP_INDEX_URL reachable?)"
echo "$HASH" > "$tmp/.inputs.sha256"
rm -rf "$OUT" && mv "$tmp" "$OUT"   # swap in whole, so no stale wheels linger
say "done: $(find "$OUT" -name '*.whl' | wc -l) wheels in $OUT"
find "$OUT" -name '*.whl' -printf '    %f\n' | sort
