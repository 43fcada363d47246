"""``falcon``: the command line for people and for upstream CI.

One module per command group: ``stack_cmds`` (up, down, demo), ``search_cmds`` (submit, status,
watch, audit, report, rebuild), ``data_cmds`` (publish-offline, trees, runners, profile),
``calibrate_cmds`` (calibrate), ``log_cmds`` (dead-letters), ``ui_cmds`` (ui), ``export_cmds`` (export).

Exit codes: 0 success, 1 the search failed (or did not finish in time), 2 bad usage/input,
3 the stack is not reachable."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from services.platform.settings import Settings
from services.domain.space import set_max_space_size
from tools import localstack
from tools.cli import calibrate_cmds, data_cmds, export_cmds, log_cmds, search_cmds, stack_cmds, ui_cmds
from tools.cli._shared import (
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    broker_addresses,
    redis_address,
    require_stack,
    settings,
    unreachable_text,
)

# the commands that need the stack before they can do anything (submit and calibrate check their input
# first and reach the stack after: bad input is exit 2 whether the stack is up or not)
NEEDS_STACK = frozenset({"status", "watch", "audit", "report", "rebuild", "publish-offline", "runners", "trees",
                         "dead-letters", "ui", "export"})


class Parser(argparse.ArgumentParser):
    """Usage errors in one line (and exit 2), e.g. ``falcon submit: argument --measure-s: must be
    a positive number, not -2 (falcon submit --help)``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: {message} ({self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="falcon", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for group in (stack_cmds, search_cmds, data_cmds, calibrate_cmds, log_cmds, ui_cmds, export_cmds):
        group.register(sub)
    return p


def _quiet_broken_pipe() -> int:
    """The reader went away (``falcon status | head -3``): no message, and none at exit either."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)   # its connection errors: said once, below
    try:
        set_max_space_size(Settings.from_env().max_space_size)     # FALCON_MAX_SPACE_SIZE
        if a.command in NEEDS_STACK:
            require_stack(settings())
        return a.fn(a)
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except (ValueError, FileNotFoundError) as exc:   # SpaceError, PricingError, DataError, SchemaError, ZooError
        print(f"falcon {a.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except localstack.StackError as exc:
        print(f"falcon {a.command}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except RedisError as exc:                 # went away while the command ran
        print(f"falcon {a.command}: {unreachable_text('Redis', redis_address(settings()), str(exc)[:120])}",
              file=sys.stderr)
        return EXIT_UNREACHABLE
    except (ConnectionError, OSError, KafkaError) as exc:
        where = ", ".join(broker_addresses(settings()))
        print(f"falcon {a.command}: {unreachable_text('broker', where, str(exc)[:120])}", file=sys.stderr)
        return EXIT_UNREACHABLE


if __name__ == "__main__":
    sys.exit(main())
