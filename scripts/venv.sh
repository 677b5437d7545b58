#!/usr/bin/env bash
# Make or refresh the project virtualenv: [PYTHON=python3.X] scripts/venv.sh [VENV [EXTRAS]]
# (default: .venv test,bench). Why: every Python the Makefile runs is this venv's, so the interpreter
# it is made from needs none of the project's packages and gets none installed into it (Debian's
# python3 refuses a global pip install anyway: PEP 668). That interpreter is $PYTHON when set; unset or
# empty, it is the one the existing venv was made from, and python3 for a new venv.
# Idempotent, and a no-op taking a fraction of a second when up to date: the venv was made here from
# $PYTHON, its stamp is newer than pyproject.toml, and every pinned requirement of the project and of
# EXTRAS is installed (read from the installed metadata, so matplotlib & co. are not imported).
# Otherwise: a venv made from another interpreter, or copied from another path, is remade; a stale one
# gets `pip install -e '.[EXTRAS]'` again.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=${1:-.venv}
EXTRAS=${2:-test,bench}
PY=$VENV/bin/python
STAMP=$VENV/.installed-stamp

die() { echo "venv: ERROR: $*" >&2; exit 1; }
say() { echo "==> $*"; }

# One make at a time installs (say `make status` while `make test` runs): lock this script's own file.
exec 9<scripts/venv.sh
if command -v flock >/dev/null; then flock 9; fi

if [[ -z ${PYTHON:-} ]]; then  # keep the venv's interpreter, when the venv runs
  PYTHON=$("$PY" -c 'import sys; print(sys._base_executable)' 2>/dev/null) || PYTHON=python3
fi
command -v "$PYTHON" >/dev/null || die "PYTHON=$PYTHON not found: install python3 (3.11+) or pass PYTHON=/path/to/python3"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "PYTHON=$PYTHON is $("$PYTHON" -V 2>&1); the project needs 3.11+ (pass PYTHON=/path/to/python3.11)"
# The real interpreter behind $PYTHON (when $PYTHON is itself a venv, the one that venv was made from).
BASE=$("$PYTHON" -c 'import os, sys; print(os.path.realpath(sys._base_executable))')

# Exit 0: up to date; 1: reinstall; anything else (2, or $PY missing or broken): remake the venv.
check() {
  [[ -x $PY ]] || { echo "no $PY"; return 2; }
  "$PY" -I - "$BASE" "$EXTRAS" "$PWD" <<'PYEOF'
import json, os, sys, tomllib
from importlib import metadata
from urllib.parse import unquote, urlparse

base, extras, root = sys.argv[1], ["", *sys.argv[2].split(",")], os.path.realpath(sys.argv[3])
def out(code, why):
    print(why)
    sys.exit(code)

made_from = os.path.realpath(sys._base_executable)
if made_from != base:
    out(2, f"made from {made_from}, not from PYTHON ({base})")
bindir = os.path.realpath(os.path.join(sys.prefix, "bin"))
try:  # pip's #! line names the venv's python where the venv was made
    with open(os.path.join(bindir, "pip")) as f:
        made_in = os.path.dirname(f.readline()[2:].strip())
except OSError:
    out(2, "no pip in the venv")
if os.path.realpath(made_in) != bindir:
    out(2, f"copied from {os.path.dirname(made_in)}")

name = tomllib.load(open(os.path.join(root, "pyproject.toml"), "rb"))["project"]["name"]
try:
    dist = metadata.distribution(name)
except metadata.PackageNotFoundError:
    out(1, f"{name} is not installed")
url = json.loads(dist.read_text("direct_url.json") or "{}").get("url", "")
if os.path.realpath(unquote(urlparse(url).path)) != root:
    out(1, f"{name} is installed from {url or '?'}, not from this checkout")
from pip._vendor.packaging.requirements import Requirement

for line in dist.requires or []:
    req = Requirement(line)
    if req.marker and not any(req.marker.evaluate({"extra": e}) for e in extras):
        continue
    try:
        have = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        out(1, f"{req.name} is not installed")
    if not req.specifier.contains(have, prereleases=True):
        out(1, f"{req.name} {have} is installed, {req.specifier} wanted")
PYEOF
}

rc=0
why=$(check 2>&1) || rc=$?
if ((rc == 0)) && [[ ! $STAMP -nt pyproject.toml ]]; then
  rc=1 why="pyproject.toml is newer than the last install"
fi
if ((rc == 0)); then
  say "$VENV is up to date ($("$PY" -V), extras $EXTRAS)"
  exit 0
fi

if ((rc != 1)); then
  say "making $VENV from $PYTHON ($BASE): ${why##*$'\n'}"
  "$PYTHON" -m venv --clear "$VENV" \
    || die "'$PYTHON -m venv' failed; on Debian/Ubuntu: apt-get install python3-venv (make install does it as root)"
else
  say "refreshing $VENV: $why"
fi
say "$PY -m pip install -e '.[$EXTRAS]'   (into $VENV only; the first run downloads the pinned packages)"
PIP_DISABLE_PIP_VERSION_CHECK=1 "$PY" -m pip install --quiet -e ".[$EXTRAS]" || die "pip install into $VENV failed"
why=$(check 2>&1) || die "$VENV is still not complete after pip install: $why"
touch "$STAMP"
say "$VENV ready ($("$PY" -V), extras $EXTRAS)"
