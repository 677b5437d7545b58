"""compose/compose.yaml against the role registry (nodes.roles): the registry is declared once and
compose must not drift from it - a new role, a renamed setting or a one-shot that restarts shows here.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from nodes import roles
from ops.compose import COMPOSE_FILE

#: Services that are not roles of the registry.
NOT_ROLES = {"redis", "prometheus", "rabbitmq"}  # prometheus, rabbitmq: optional (profiles), not nodes
#: Variables a compose service may set that are no setting of its role. None today: add one here
#: with the reason, never silently.
COMPOSE_ONLY: dict[str, str] = {}


@pytest.fixture(scope="module")
def text() -> str:
    return COMPOSE_FILE.read_text()


@pytest.fixture(scope="module")
def services(text: str) -> dict[str, Any]:
    """The services with YAML merge keys resolved (``<<: *node``, ``<<: *env``)."""
    return yaml.safe_load(text)["services"]


def services_merging(text: str, anchor: str) -> set[str]:
    """The services that merge the mapping anchored as ``x-ANCHOR`` (``<<: *ANCHOR``).

    Checked on the composed node graph, not the text: an alias *is* the anchored node object.
    """
    top = {key.value: value for key, value in yaml.compose(text).value}
    target = top[f"x-{anchor}"]
    return {
        key.value
        for key, value in top["services"].value
        if any(k.value == "<<" and v is target for k, v in value.value)
    }


def test_every_role_is_a_service_and_every_service_a_role(services: dict[str, Any]) -> None:
    assert set(services) - NOT_ROLES == set(roles.NAMES)
    for name in roles.NAMES:
        assert services[name]["command"][0] == name, f"service {name} runs {services[name]['command']}"


def test_one_shot_roles_and_only_they_use_the_batch_anchor(text: str, services: dict[str, Any]) -> None:
    assert services_merging(text, "batch") == set(roles.one_shot())
    assert services_merging(text, "node") == set(roles.NAMES) - set(roles.one_shot())
    for name in roles.NAMES:  # and the anchor means what it says: a finished batch is not restarted
        assert (services[name]["restart"] == "no") == roles.ROLES[name].one_shot, name


def test_every_variable_set_in_compose_is_a_setting_of_that_role(services: dict[str, Any]) -> None:
    unknown = {
        name: sorted(set(services[name].get("environment") or {}) - roles.ROLES[name].envs() - set(COMPOSE_ONLY))
        for name in roles.NAMES
    }
    assert {name: extra for name, extra in unknown.items() if extra} == {}


def test_endpoints_are_wired_for_every_role(services: dict[str, Any]) -> None:
    """Each endpoint a role binds or connects is set in compose (a default would point at nothing)."""
    for name, role in roles.ROLES.items():
        env = services[name].get("environment") or {}
        assert {*role.binds, *role.connects} <= set(env), name
