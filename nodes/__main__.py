"""``python -m nodes <role> [--flag value ...]``: start one node. Flags override environment variables.

Also: ``python -m nodes healthcheck`` (exit 0/1, for container healthchecks). The status table of
running nodes is the operator's side: ``python -m ops.table URL...``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import traceback
import urllib.request

import zmq

from nodes import roles
from nodes.core import config
from nodes.core.lifecycle import EXIT_STUCK, Node, install_signal_handlers
from nodes.core.log import event, setup
from nodes.core.status import Watchdog

EXIT_CONFIG = 2
log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nodes",
        description="Run one node of the messaging-patterns cluster. "
        "Every option can also be set by the environment variable shown in its help.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="ROLE")
    for role in roles.ROLES.values():
        kind = "one-shot batch" if role.one_shot else "long-running"
        p = sub.add_parser(role.name, help=role.help, description=f"{role.help} ({role.pattern}, {kind}).")
        for f in role.fields():
            default = f.default if not isinstance(f.default, tuple) else ",".join(f.default)
            p.add_argument(
                config.flag_of(f),
                dest=f.name,
                default=None,
                metavar=f.metadata["env"],
                help=f"{f.metadata['help']} [env {f.metadata['env']}, default {default!r}]",
            )
    hc = sub.add_parser("healthcheck", help="exit 0 if the node on STATUS_PORT answers /healthz with 200")
    hc.add_argument("--url", default=None, help="default http://127.0.0.1:$STATUS_PORT/healthz")
    return parser


def healthcheck(url: str | None) -> int:
    if url is None:
        try:
            port = config.port(__import__("os").environ.get("STATUS_PORT", "8000"))
        except ValueError as exc:
            print(f"healthcheck: STATUS_PORT {exc}", file=sys.stderr)
            return EXIT_CONFIG
        url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return 0 if resp.status == 200 else 1
    except OSError as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1


def run_role(role: str, overrides: dict[str, str]) -> int:
    try:
        settings = roles.load(role, overrides=overrides)
        node_class = roles.get(role).node_class()
    except config.ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    setup(settings.name, role, settings.log_level)
    stop = threading.Event()
    install_signal_handlers(stop)
    ctx = zmq.Context()
    watchdog: Watchdog | None = None
    try:
        node = node_class(settings, ctx=ctx, stop=stop)
        watchdog = Watchdog(node.stats, settings.watchdog_s, lambda stuck: stuck_exit(node, stuck)).start()
        return node.run()
    except config.ConfigError as exc:  # found only when the node starts, e.g. a busy STATUS_PORT
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except zmq.ZMQError as exc:  # e.g. address in use, bad ipc path
        print(f"error: {role}: {exc}", file=sys.stderr)
        return 1
    finally:
        if watchdog is not None:
            watchdog.close()
        ctx.term()


def stuck_exit(node: Node, stuck: float) -> None:
    """The watchdog's verdict: say where the loop is stuck, then exit EXIT_STUCK at once (no cleanup can
    be trusted while the loop holds the node's sockets); ``restart: on-failure`` starts the node again."""
    frame = sys._current_frames().get(threading.main_thread().ident or 0)
    stack = traceback.extract_stack(frame)[-4:] if frame is not None else []
    where = [f"{os.path.basename(f.filename)}:{f.lineno} in {f.name}" for f in stack]
    event(
        log,
        "loop_stuck",
        logging.CRITICAL,
        stuck_s=round(stuck, 1),
        limit_s=node.settings.watchdog_s,
        exit_code=EXIT_STUCK,
        where=where,
        hint="the loop stopped turning: exiting so the restart policy starts the node again",
    )
    logging.shutdown()
    os._exit(EXIT_STUCK)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "healthcheck":
        return healthcheck(args.url)
    overrides = {k: v for k, v in vars(args).items() if k != "command" and v is not None}
    return run_role(args.command, overrides)


if __name__ == "__main__":
    sys.exit(main())
