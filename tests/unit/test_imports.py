"""Roles import the core and their own pattern's non-role modules, never another role (issue 7).

Why a test: the rule is what keeps ``ls nodes/`` an honest picture of the architecture, and an
import that crosses it (``zsub`` -> ``zpub.HELLO``) is one line that nobody notices in review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from nodes import roles
from tests.support import ROOT

PATTERNS = ("reqrep", "pipeline", "pubsub", "sockets")
ROLE_MODULES = {r.node.partition(":")[0]: r for r in roles.ROLES.values()}


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def is_module(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, relative imports resolved; ``from pkg import mod`` names ``pkg.mod``."""
    package = module_name(path).rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.add(full if is_module(full) else base)
    return out


def allowed(role_module: str, target: str) -> bool:
    pattern = ROLE_MODULES[role_module].pattern
    if target == "nodes.core" or target.startswith("nodes.core."):
        return True
    if target == f"nodes.{pattern}" or target.startswith(f"nodes.{pattern}."):
        return target not in ROLE_MODULES
    return not (target == "nodes" or target.startswith("nodes."))  # the standard library, pyzmq, redis ...


def test_every_role_module_is_in_its_pattern_package() -> None:
    for module, role in ROLE_MODULES.items():
        assert module.startswith(f"nodes.{role.pattern}.") and is_module(module), (role.name, module)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_role_modules_import_only_core_and_their_own_pattern(pattern: str) -> None:
    files = sorted((ROOT / "nodes" / pattern).glob("*.py"))
    assert files, f"nodes/{pattern} has no modules"
    crossing = {
        module: sorted(t for t in imported(path) if not allowed(module, t))
        for path in files
        if (module := module_name(path)) in ROLE_MODULES
    }
    assert {module: bad for module, bad in crossing.items() if bad} == {}
