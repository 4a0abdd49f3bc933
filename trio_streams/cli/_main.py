"""The ``trio-streams`` command: ``serve`` and ``bench``."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, NoReturn

from .. import __version__
from ..bench import _cli as _bench_cli
from . import _serve
from ._plan import ServeConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping


class _OneLineErrors(argparse.ArgumentParser):
    """Bad flags: one line naming the problem and where help is, exit 2."""

    #: The sub-commands' parsers by name (the top-level parser's).
    commands: Mapping[str, argparse.ArgumentParser]

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> _OneLineErrors:
    """The ``trio-streams`` argument parser with its sub-commands."""
    parser = _OneLineErrors(
        prog="trio-streams",
        description="Runs that outlive their requests: serve the runs API, or load-test a server.",
    )
    parser.add_argument("--version", action="version", version=f"trio-streams {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_OneLineErrors)
    _serve.add_parser(subparsers)
    _bench_cli.add_parser(subparsers)
    parser.commands = subparsers.choices
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
    args, extra = parser.parse_known_args(argv)
    if extra:  # said by the command they were given to, with its own --help
        command = parser.commands.get(argv[0], parser) if argv else parser
        command.error(f"unrecognized arguments: {' '.join(extra)}")
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    status: int = func(args)
    return status
