"""``python -m ops.local up|down|status``: the command line of the local cluster (see :mod:`ops.local`)."""

from __future__ import annotations

import argparse
import os
import sys

from ops.local.commands import down, status, up
from ops.local.plan import DEFAULT_BASE_PORT, LocalError, Plan
from ops.local.supervisor import State


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name) or default)
    except ValueError:
        raise SystemExit(f"error: {name}={os.environ[name]!r} is not a whole number") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ops.local", description="The whole cluster as plain processes under supervisord, no docker."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start redis and every node under supervisord, wait healthy, print the table")
    p_up.add_argument("--workers", type=int, default=_env_int("WORKERS", 4), help="REP workers [env WORKERS, 4]")
    p_up.add_argument(
        "--pipe-workers", type=int, default=_env_int("PIPE_WORKERS", 2), help="pipeline workers [env PIPE_WORKERS, 2]"
    )
    p_up.add_argument(
        "--subscribers", type=int, default=_env_int("SUBSCRIBERS", 2), help="Redis subscribers [env SUBSCRIBERS, 2]"
    )
    p_up.add_argument("--broker-mode", choices=("proxy", "lru"), default="proxy", help="broker mode [proxy]")
    p_up.add_argument("--requests", type=int, default=Plan.requests, help="client requests [%(default)s]")
    p_up.add_argument("--tasks", type=int, default=Plan.tasks, help="ventilator tasks [%(default)s]")
    p_up.add_argument("--messages", type=int, default=Plan.messages, help="messages per publisher [%(default)s]")
    p_up.add_argument(
        "--rate", type=float, default=Plan.rate, help="messages/s of each batch role, 0 = unlimited [%(default)s]"
    )
    p_up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for health [%(default)s]")
    sub.add_parser("down", help="stop the supervisord that `up` started (and every node)")
    p_st = sub.add_parser("status", help="print the status table of the local cluster")
    p_st.add_argument("--json", action="store_true", help="the /status documents as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    state = State()
    try:
        if args.command == "up":
            plan = Plan(
                base=_env_int("BASE_PORT", DEFAULT_BASE_PORT),
                workers=args.workers,
                pipe_workers=args.pipe_workers,
                subscribers=args.subscribers,
                broker_mode=args.broker_mode,
                requests=args.requests,
                tasks=args.tasks,
                messages=args.messages,
                rate=args.rate,
            )
            return up(plan, state, args.timeout)
        if args.command == "down":
            return down(state)
        return status(state, as_json=args.json)
    except LocalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
