"""The ``trio-streams`` command: ``serve`` and ``bench``."""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

from .. import __version__
from ..bench import _cli as _bench_cli
from . import _serve
from ._plan import ServeConfigError


class _OneLineErrors(argparse.ArgumentParser):
    """Bad flags: one line naming the problem and where help is, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``trio-streams`` argument parser with its sub-commands."""
    parser = _OneLineErrors(
        prog="trio-streams",
        description="Runs that outlive their requests: serve the runs API, or load-test a server.",
    )
    parser.add_argument("--version", action="version", version=f"trio-streams {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_OneLineErrors)
    _serve.add_parser(subparsers)
    _bench_cli.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``trio-streams`` and ``python -m trio_streams``."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["serve"]:
        # serve's settings also come from TRIO_STREAMS_* and --config's file.
        for warning in _serve.unknown_environment(os.environ):
            print(f"trio-streams serve: warning: {warning}", file=sys.stderr)
        try:
            argv = ["serve", *_serve.with_sources(argv[1:], os.environ)]
        except ServeConfigError as exc:
            print(f"trio-streams serve: error: {exc}", file=sys.stderr)
            return 2
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    status: int = func(args)
    return status
