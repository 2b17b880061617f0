"""``mailingest examples [DIR] [--force]``: the example sr3 configs that ship with the package.

Without DIR it lists them (``poll/mail.conf`` ...) with the path of each installed file.  With DIR
it writes them into ``DIR/poll/`` and ``DIR/subscribe/``, so that ``cd DIR && sr3 add
poll/mail.conf`` copies mailingest's example: ``sr3 add`` tries its argument as a path relative
to the current directory before it falls back to sarracenia's own examples, which have a
``poll/mail.conf`` of their own (the built-in ``poll.mail``, not mailingest).

A file that already exists with other content is never overwritten unless ``--force`` is given;
a file that already holds the example is left as it is.  Nothing is written when any file would
be refused.  Exit status: 0 on success, 1 when files were refused or could not be written.

The examples are package data (``mailingest/examples/<component>/<name>.conf``), read with
:py:mod:`importlib.resources`, so they are found in a wheel install, an editable install and the
checkout alike.  sr3's own files that hold passwords or site settings (``credentials.conf``,
``default.conf``, ``admin.conf``) are never examples, even when one lies in a checkout's
``examples/``: setup.cfg keeps them out of the wheel, and this command never lists or copies one.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from importlib.abc import Traversable
from importlib.resources import files
from pathlib import Path

#: package that holds the examples, and its sub-directory (one folder per sr3 component)
PACKAGE = "mailingest"
FOLDER = "examples"
#: sr3's files of passwords and site settings: never an example (setup.cfg's exclude_package_data)
NOT_EXAMPLES = frozenset({"credentials.conf", "default.conf", "admin.conf"})


class ExamplesMissingError(RuntimeError):
    """The installed package has no example configs (a broken or partial install)."""


@dataclass(frozen=True)
class Example:
    """One shipped config: ``relative`` as sr3 names it (``poll/mail.conf``), its installed path."""

    relative: str
    source: str
    content: bytes


def shipped_examples(root: Traversable | None = None) -> list[Example]:
    """Every ``examples/<component>/*.conf`` of the installed package (or under *root*), sorted
    by name, less sr3's credentials.conf, default.conf and admin.conf.

    :raises ExamplesMissingError: when the package holds none.
    """
    root = files(PACKAGE).joinpath(FOLDER) if root is None else root
    found: list[Example] = []
    if root.is_dir():
        for component in root.iterdir():
            if not component.is_dir():
                continue
            for entry in component.iterdir():
                if entry.is_file() and entry.name.endswith(".conf") and entry.name not in NOT_EXAMPLES:
                    found.append(Example(f"{component.name}/{entry.name}", str(entry), entry.read_bytes()))
    if not found:
        raise ExamplesMissingError(
            f"no example configs in {root}: the {PACKAGE} install is incomplete; "
            f"reinstall it (pip install --force-reinstall {PACKAGE}) or use the checkout's examples/")
    return sorted(found, key=lambda example: example.relative)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "examples", help="list the example sr3 configs, or write them into DIR/poll and DIR/subscribe",
        description="Without DIR: list the example configs and where they are installed. "
                    "With DIR: write them into DIR/poll/ and DIR/subscribe/, then "
                    "'cd DIR && sr3 add poll/mail.conf' (docs/quickstart.md).")
    p.add_argument("directory", nargs="?", metavar="DIR", help="where to write poll/ and subscribe/")
    p.add_argument("--force", action="store_true", help="overwrite files that differ from the examples")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        examples = shipped_examples()
    except ExamplesMissingError as exc:
        print(f"mailingest examples: {exc}", file=sys.stderr)
        return 1
    if args.directory is None:
        width = max(len(example.relative) for example in examples)
        for example in examples:
            print(f"{example.relative:<{width}}  {example.source}")
        print("\nwrite them into a directory with: mailingest examples DIR")
        return 0
    return write_examples(examples, Path(args.directory), force=args.force)


def write_examples(examples: list[Example], directory: Path, *, force: bool = False) -> int:
    """Write *examples* under *directory*; print what was done and the next commands."""
    targets = [(example, directory / example.relative) for example in examples]
    refused = [target for example, target in targets
               if target.exists() and not force and not _holds(target, example.content)]
    if refused:
        print("mailingest examples: not overwriting files that differ from the examples "
              "(use --force to replace them):\n" + "\n".join(f"  {path}" for path in refused),
              file=sys.stderr)
        return 1
    try:
        for example, target in targets:
            if _holds(target, example.content):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(example.content)
    except OSError as exc:
        print(f"mailingest examples: cannot write into {directory}: {exc}", file=sys.stderr)
        return 1
    where = directory.resolve()
    print(f"example configs in {where}:")
    print("\n".join(f"  {example.relative}" for example in examples))
    print(_next_steps(where, examples))
    return 0


def _holds(path: Path, content: bytes) -> bool:
    try:
        return path.is_file() and path.read_bytes() == content
    except OSError:
        return False


def _next_steps(directory: Path, examples: list[Example]) -> str:
    """The commands that follow, in the documented order: add, then declare the poll (its
    exchange) before the subscriber (its queue, bound to that exchange), then start."""
    polls = [e.relative for e in examples if e.relative.startswith("poll/")]
    downloads = [e.relative for e in examples
                 if e.relative.startswith("subscribe/") and b"callback mailingest.download" in e.content]
    later = [e.relative for e in examples if e.relative.startswith("subscribe/") and e.relative not in downloads]
    download = next((r for r in downloads if r.endswith("downloademail.conf")), downloads[0] if downloads else None)
    others = [r for r in downloads if r != download]
    lines = ["", "next (docs/quickstart.md):", f"  cd {directory}"]
    lines += [f"  sr3 add {relative}" for relative in polls[:1]]
    if download:
        lines.append(_command(f"sr3 add {download}", f"or: {', '.join(others)}" if others else ""))
    if later:
        lines.append(f"  # later stages, fed by the decoding subscriber: {', '.join(later)}")
    lines += [
        "  # define the variables in ~/.config/sr3/default.conf and the passwords in",
        "  # ~/.config/sr3/credentials.conf, as each file's header comment shows; then",
    ]
    lines += [_command(f"sr3 declare {relative.removesuffix('.conf')}", "first: the exchange" if download else "")
              for relative in polls[:1]]
    if download:
        lines.append(_command(f"sr3 declare {download.removesuffix('.conf')}", "then its queue, before the poll first runs"))
    lines.append("  sr3 start")
    return "\n".join(lines)


def _command(command: str, comment: str = "") -> str:
    return f"  {command:<38}  # {comment}" if comment else f"  {command}"
