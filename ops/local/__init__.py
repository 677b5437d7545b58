"""The whole cluster as plain processes under supervisord, no docker: ``python -m ops.local up|down|status``.

    plan.py        the port plan: which node listens where, the settings each role gets
    supervisor.py  the state directory, supervisord.conf rendered from a plan, waiting on supervisor
    commands.py    up (prepare -> servers -> wait -> batches -> wait), down, status
    __main__.py    the command line

The roles - and which are one-shot or scaled - come from the registry (:mod:`nodes.roles`).
"""

from ops.local.commands import check_ports_free, down, status, up
from ops.local.plan import DEFAULT_BASE_PORT, ENDPOINT_OFFSETS, LocalError, Plan
from ops.local.supervisor import BATCH_GROUP, State, alive, supervisord_conf

__all__ = [
    "BATCH_GROUP",
    "DEFAULT_BASE_PORT",
    "ENDPOINT_OFFSETS",
    "LocalError",
    "Plan",
    "State",
    "alive",
    "check_ports_free",
    "down",
    "status",
    "supervisord_conf",
    "up",
]
