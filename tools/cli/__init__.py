"""``falcon``: the command line for people and for upstream CI.

One module per command group: ``stack_cmds`` (up, down, demo), ``search_cmds`` (submit, status,
watch, audit, report, rebuild), ``data_cmds`` (publish-offline, trees, runners, profile), ``ui_cmds`` (ui).

Exit codes: 0 success, 1 the search failed (or did not finish in time), 2 bad usage/input,
3 the stack is not reachable."""

from __future__ import annotations

import argparse
import sys

from aiokafka.errors import KafkaError

from tools import localstack
from tools.cli import data_cmds, search_cmds, stack_cmds, ui_cmds
from tools.cli._shared import EXIT_UNREACHABLE, EXIT_USAGE


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="falcon", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for group in (stack_cmds, search_cmds, data_cmds, ui_cmds):
        group.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    try:
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
