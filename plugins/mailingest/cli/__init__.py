"""Command line: ``mailingest <command> ...`` (also ``python -m mailingest``).

Commands:

* ``mailingest decode INPUT... [-o DIR] [--force]``: decode files, directory trees and standard
  input exactly as ``callback mailingest.decode`` does (:py:mod:`mailingest.cli.decode`);
* ``mailingest check ...`` and ``mailingest oauth2 ...``: see their modules.

Adding a command is one ``add_parser(subparsers)`` function in its own module that registers a
parser and sets ``func``, plus one entry in :py:data:`COMMANDS`.  The sr3 stack is never imported on the decode
path (start-up time matters when a shell loop runs one process per message).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence

logger = logging.getLogger(__name__)

#: Registration of the sub-commands: name -> "module:function" that adds its sub-parser (and
#: sets ``func``).  Modules are imported only when their command runs (or for --help), so
#: ``mailingest decode`` does not pay for the others' imports.
COMMANDS: dict[str, str] = {
    "decode": "mailingest.cli.decode:add_parser",
    "check": "mailingest.cli.check:add_parser",
    "oauth2": "mailingest.cli.oauth2:add_parser",
    "examples": "mailingest.cli.examples:add_parser",
}
_AddParser = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def _registered(target: str) -> _AddParser:
    module, _, function = target.partition(":")
    add: _AddParser = getattr(importlib.import_module(module), function)
    return add


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; with *only*, just that sub-command is registered."""
    parser = argparse.ArgumentParser(prog="mailingest",
                                     description="E-mail ingestion for Sarracenia (sr3).")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name, target in COMMANDS.items():
        if only is None or name == only:
            _registered(target)(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command if command in COMMANDS else None).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # The reader went away (``mailingest examples | head``): stop quietly, as the shell tools
        # do.  Python's own advice (library/signal, "Note on SIGPIPE"): point stdout at devnull so
        # that the interpreter's final flush does not raise a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
