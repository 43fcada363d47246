"""``falcon``: the command line for people and for upstream CI.

One module per command group: ``stack_cmds`` (up, down, demo), ``search_cmds`` (submit, status,
watch, audit, report, rebuild), ``data_cmds`` (publish-offline, trees, runners, profile),
``calibrate_cmds`` (calibrate), ``log_cmds`` (dead-letters), ``ui_cmds`` (ui), ``export_cmds`` (export).

Exit codes: 0 success, 1 the search failed (or did not finish in time), 2 bad usage/input,
3 the stack is not reachable."""

from __future__ import annotations

import argparse
import sys

from aiokafka.errors import KafkaError

from services.common.settings import Settings
from services.common.space import set_max_space_size
from tools import localstack
from tools.cli import calibrate_cmds, data_cmds, export_cmds, log_cmds, search_cmds, stack_cmds, ui_cmds
from tools.cli._shared import EXIT_UNREACHABLE, EXIT_USAGE


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


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    try:
        set_max_space_size(Settings.from_env().max_space_size)     # FALCON_MAX_SPACE_SIZE
        return a.fn(a)
    except (ValueError, FileNotFoundError) as exc:   # SpaceError, PricingError, DataError, SchemaError, ZooError
        print(f"falcon {a.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except localstack.StackError as exc:
        print(f"falcon {a.command}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except (ConnectionError, OSError, KafkaError) as exc:
        print(f"falcon {a.command}: cannot reach the stack: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE


if __name__ == "__main__":
    sys.exit(main())
