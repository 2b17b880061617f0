"""Command line: ``mailingest <command> ...`` (also ``python -m mailingest``).

Commands:

* ``mailingest decode FILE.eml... [-o DIR]``: decode messages exactly as
  ``callback mailingest.decode`` does (same code: :py:func:`mailingest.layout.decode_file`).
  Without ``-o``, each ``x.eml`` gets ``x.parts/`` beside it; with ``-o DIR`` and one file the
  parts go straight into DIR; with several files, into ``DIR/<stem>.parts/``.
  Exit status: 0 when every file was decoded, 1 when any was not, 2 on usage errors.

Adding a command is one ``_add_<name>(subparsers)`` function that registers a parser and sets
``func``, plus one entry in :py:data:`COMMANDS`.  The sr3 stack is never imported on the decode
path (start-up time matters when a shell loop runs one process per message).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
from collections.abc import Callable, Sequence

logger = logging.getLogger(__name__)

_SIZE = re.compile(r"(\d+)\s*([kmgt]?)(i?b?)", re.IGNORECASE)


def _size(text: str) -> int:
    """A size as sr3 reads one: ``1000``, ``100m`` (decimal), ``100mb``/``100Mi`` (binary)."""
    match = _SIZE.fullmatch(text.strip())
    if not match or int(match.group(1)) < 1:
        raise argparse.ArgumentTypeError("%r is not a positive size (e.g. 100m, 256mb)" % text)
    power = " kmgt".index(match.group(2).lower() or " ")
    return int(match.group(1)) * int((1024 if match.group(3) else 1000) ** power)


def _count(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a whole number" % text) from None
    if number < 1:
        raise argparse.ArgumentTypeError("%r must be positive" % text)
    return number


# -- decode ------------------------------------------------------------------------------------
def _add_decode(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    from mailingest.mime import DecodeLimits

    defaults = DecodeLimits()
    p = subparsers.add_parser(
        "decode", help="split .eml files into bodies, attachments and metadata.json",
        description="Decode messages as 'callback mailingest.decode' does (see docs/decode.md).")
    p.add_argument("files", nargs="+", metavar="FILE.eml", help="raw RFC 822 messages")
    p.add_argument("-o", "--output", metavar="DIR",
                   help="output directory (default: x.parts/ beside each x.eml)")
    p.add_argument("--max-depth", type=_count, default=defaults.max_depth,
                   help="nesting limit, like mailDecodeMaxDepth (default %(default)s)")
    p.add_argument("--max-parts", type=_count, default=defaults.max_parts,
                   help="part limit, like mailDecodeMaxParts (default %(default)s)")
    p.add_argument("--max-bytes", type=_size, default=defaults.max_decoded_bytes,
                   help="decoded-bytes limit, like mailDecodeMaxBytes (default %(default)s)")
    p.add_argument("--no-html", dest="html", action="store_false", help="do not write body.html")
    p.add_argument("--no-uuencode", dest="uuencode", action="store_false",
                   help="do not extract uuencoded blocks from text bodies")
    p.add_argument("--no-fsync", dest="fsync", action="store_false",
                   help="skip fsync (faster; for scratch output)")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-file summary")
    p.set_defaults(func=_run_decode)


def _run_decode(args: argparse.Namespace) -> int:
    from mailingest.errors import MimeError
    from mailingest.layout import DecodeSettings, decode_file
    from mailingest.mime import DecodeLimits

    settings = DecodeSettings(
        limits=DecodeLimits(max_depth=args.max_depth, max_parts=args.max_parts,
                            max_decoded_bytes=args.max_bytes),
        html=args.html, uuencode=args.uuencode, fsync=args.fsync)
    failures = 0
    flat = args.output is not None and len(args.files) == 1
    for path in args.files:
        try:
            result = decode_file(path, args.output, flat=flat, settings=settings)
        except (MimeError, OSError) as exc:
            failures += 1
            logger.error("%s: not decoded: %s", path, exc)
            continue
        except Exception:  # outermost guard per file: report the bug, go on with the next file
            failures += 1
            logger.exception("%s: not decoded: unexpected error", path)
            continue
        for defect in result.defects:
            logger.warning("%s: MIME defect: %s", path, defect)
        if result.bounds:
            logger.warning("%s: decoded partially, the rest kept raw: %s", path, "; ".join(result.bounds))
        if not args.quiet:
            print("%s: %d files in %s%s" % (path, len(result.files), result.directory,
                                             " (partial)" if result.bounds else ""))
    return 1 if failures else 0


#: Registration of the sub-commands: name -> "module:function" that adds its sub-parser (and
#: sets ``func``).  Modules are imported only when their command runs (or for --help), so
#: ``mailingest decode`` does not pay for the others' imports.
COMMANDS: dict[str, str] = {
    "decode": "mailingest.cli:_add_decode",
    "check": "mailingest.cli_check:add_parser",
    "oauth2": "mailingest.cli_oauth2:add_parser",
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
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
