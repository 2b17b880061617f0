"""``mailingest decode``: decode messages on disk exactly as ``callback mailingest.decode`` does
(same code: :py:func:`mailingest.mime.layout.decode_file`), for files, directory trees and standard
input.  The rules are in :py:data:`RULES` (also shown by ``mailingest decode --help``).

The sr3 stack is never imported here: start-up time matters when a shell loop runs one
process per message.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mailingest.mime.layout import DecodeResult, DecodeSettings

logger = logging.getLogger(__name__)

STDIN = "-"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

RULES = """\
inputs:
  FILE        a raw RFC 822 message (any file name)
  DIRECTORY   every *.eml below it, recursively; hidden entries and *.parts
              directories (earlier output) are skipped
  -           standard input, read once; its name is --stdin-name (default
              'stdin', so its parts go to stdin.parts)

output: each message gets a directory of its own, named after the message
file without its extension plus '.parts':
  without -o  beside the message (x.eml -> x.parts); standard input: in the
              current directory
  -o DIR      DIR/x.parts for a FILE or standard input, DIR/<path below
              DIRECTORY>/x.parts for a message found in a DIRECTORY
              (DIRECTORY/a/b/x.eml -> DIR/a/b/x.parts); the same rule for
              one message or many

an existing x.parts is never mixed with new files: the message is refused
(not decoded, exit status 1) unless --force, which replaces the old directory
once the new one is complete.  Two inputs of the same run that need the
same x.parts: the second is refused, even with --force.

printed: one line per message on standard output ('x.eml -> DIR/x.parts (N
files)'); errors, a progress bar (only when standard error is a terminal and
there are several messages) and a summary line at the end ('N messages
decoded, F files, B bytes, K failed, T s') on standard error.  -q keeps only
the errors.

exit status:
  0    every message decoded
  1    some message not decoded: refused (its x.parts exists), over a bound,
       unreadable or undecodable; the others are still decoded
  2    usage error (bad option or value, '-' given twice)
  130  interrupted (Ctrl-C): the summary is printed, the message being
       decoded leaves nothing behind
"""

_SIZE = re.compile(r"(\d+)\s*([kmgt]?)(i?b?)", re.IGNORECASE)


def parse_size(text: str) -> int:
    """A size as sr3 reads one: ``1000``, ``100m`` (decimal), ``100mb``/``100Mi`` (binary)."""
    match = _SIZE.fullmatch(text.strip())
    if not match or int(match.group(1)) < 1:
        raise argparse.ArgumentTypeError("%r is not a positive size (e.g. 100m, 256mb)" % text)
    power = " kmgt".index(match.group(2).lower() or " ")
    return int(match.group(1)) * int((1024 if match.group(3) else 1000) ** power)


def parse_count(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a whole number" % text) from None
    if number < 1:
        raise argparse.ArgumentTypeError("%r must be positive" % text)
    return number


def parse_stdin_name(text: str) -> str:
    if not text or "/" in text or text in (".", "..") or text.startswith("."):
        raise argparse.ArgumentTypeError("%r is not a plain, visible file name" % text)
    return text


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from mailingest.mime.parse import DecodeLimits

    defaults = DecodeLimits()
    p = subparsers.add_parser(
        "decode", help="split messages into bodies, attachments and metadata.json",
        description="Decode messages as 'callback mailingest.decode' does (see docs/decode.md).",
        epilog=RULES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="FILE, DIRECTORY or - (see below)")
    p.add_argument("-o", "--output", metavar="DIR",
                   help="put each message's x.parts under DIR (default: beside each message)")
    p.add_argument("-f", "--force", action="store_true",
                   help="replace an existing x.parts (default: refuse the message)")
    p.add_argument("--stdin-name", type=parse_stdin_name, default="stdin", metavar="NAME",
                   help="name of the message read from '-' (default %(default)s: stdin.parts)")
    p.add_argument("--max-depth", type=parse_count, metavar="N", default=defaults.max_depth,
                   help="nesting limit, like mailDecodeMaxDepth (default %(default)s)")
    p.add_argument("--max-parts", type=parse_count, metavar="N", default=defaults.max_parts,
                   help="part limit, like mailDecodeMaxParts (default %(default)s)")
    # a str default goes through parse_size too, and reads in --help as it does in docs/configuration.md
    p.add_argument("--max-bytes", type=parse_size, metavar="SIZE", default="%dmb" % (defaults.max_decoded_bytes >> 20),
                   help="decoded-bytes limit, like mailDecodeMaxBytes (default %(default)s)")
    p.add_argument("--no-html", dest="html", action="store_false", help="do not write body.html")
    p.add_argument("--no-uuencode", dest="uuencode", action="store_false",
                   help="do not extract uuencoded blocks from text bodies")
    p.add_argument("--no-fsync", dest="fsync", action="store_false",
                   help="skip fsync (faster; for scratch output)")
    p.add_argument("--no-tnef", dest="tnef", action="store_false",
                   help="write winmail.dat as it is, not unpacked (like mailDecodeTnef off)")
    p.add_argument("--tnef-keep", action="store_true",
                   help="also write winmail.dat when it was unpacked (like mailDecodeTnefKeep)")
    p.add_argument("--no-smime", dest="smime", action="store_false",
                   help="write S/MIME parts as they are, no verdict (like mailDecodeSmime off)")
    p.add_argument("--smime-trust", metavar="FILE",
                   help="PEM file of trusted certificates for S/MIME verdicts (like mailSmimeTrustFile)")
    p.add_argument("--smime-key", metavar="FILE",
                   help="PEM file with the private key and certificate to decrypt S/MIME (like mailSmimeKeyFile)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no per-message lines, progress bar or summary; errors only")
    p.set_defaults(func=run)


# -- what to decode and where ------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One message: where to read it (*source*, ``-`` for stdin), how to name it, where its
    ``x.parts`` goes."""

    source: str
    name: str
    target: str


class UsageError(Exception):
    """Arguments that make no sense together; exit status 2."""


def plan(inputs: Sequence[str], output: str | None, stdin_name: str) -> Iterator[Job]:
    """The messages named by *inputs*, in order (directories sorted, recursively)."""
    from mailingest.mime.layout import parts_dir_name

    if sum(1 for i in inputs if i == STDIN) > 1:
        raise UsageError("'-' (standard input) can be given only once")
    skip = os.path.abspath(output) if output is not None else None
    for item in inputs:
        if item == STDIN:
            yield Job(STDIN, stdin_name, os.path.join(output or os.curdir, parts_dir_name(stdin_name)))
        elif os.path.isdir(item):
            found = 0
            for found, path in enumerate(_messages_below(item, skip), 1):  # noqa: B007 (a count, read below)
                relative = os.path.relpath(os.path.dirname(path), item)
                where = os.path.dirname(path) if output is None else os.path.normpath(
                    os.path.join(output, relative))
                name = os.path.basename(path)
                yield Job(path, name, os.path.join(where, parts_dir_name(name)))
            if not found:
                logger.warning("%s: no *.eml file below it (a message found in a DIRECTORY must end "
                               "in .eml; give other files by name)", item)
        else:
            name = os.path.basename(item)
            where = os.path.dirname(item) if output is None else output
            yield Job(item, name, os.path.join(where, parts_dir_name(name)))


def _messages_below(top: str, skip: str | None) -> Iterator[str]:
    for directory, subdirs, files in os.walk(top):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".") and not d.endswith(".parts")
                            and os.path.abspath(os.path.join(directory, d)) != skip)
        for name in sorted(files):
            if name.lower().endswith(".eml") and not name.startswith("."):
                yield os.path.join(directory, name)


# -- progress and summary ----------------------------------------------------------------------
class Progress:
    """A one-line progress bar on a terminal (standard error), redrawn at most 10 times a second."""

    WIDTH = 30

    def __init__(self, stream: IO[str], total: int, enabled: bool) -> None:
        self.stream = stream
        self.total = total
        self.enabled = enabled
        self.started = time.monotonic()
        self._drawn_at = 0.0
        self._drawn = False

    def update(self, done: int, written: int) -> None:
        now = time.monotonic()
        if not self.enabled or (self._drawn and now - self._drawn_at < 0.1 and done < self.total):
            return
        filled = self.WIDTH * done // max(self.total, 1)
        self.stream.write("\r[%s%s] %d/%d messages, %s, %.0f s\x1b[K" % (
            "#" * filled, "." * (self.WIDTH - filled), done, self.total, human_bytes(written),
            now - self.started))
        self.stream.flush()
        self._drawn, self._drawn_at = True, now

    def clear(self) -> None:
        """Erase the bar before anything else is written to the terminal."""
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False

    def filter(self, record: logging.LogRecord) -> bool:
        """As a logging filter: clear the bar so a log line starts on a clean line."""
        self.clear()
        return True


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return ("%d %s" if unit == "B" else "%.1f %s") % (size, unit)
        size /= 1000
    return "%d B" % count  # pragma: no cover


@dataclass
class Tally:
    messages: int = 0
    files: int = 0
    bytes: int = 0
    failed: int = 0

    def summary(self, seconds: float) -> str:
        return "%d %s decoded, %d files, %d bytes (%s), %d failed, %.2f s" % (
            self.messages, "message" if self.messages == 1 else "messages", self.files, self.bytes,
            human_bytes(self.bytes), self.failed, seconds)


# -- running -----------------------------------------------------------------------------------
class Refused(Exception):
    """The message is not decoded because its output directory is taken."""


@dataclass(frozen=True)
class Outcome:
    """What one message gave: files and bytes written, parser defects."""

    files: int
    bytes: int
    defects: tuple[str, ...]
    #: the bounds reached: what lay past them is kept as raw files (a partial decode)
    bounds: tuple[str, ...] = ()

    @classmethod
    def of(cls, result: DecodeResult) -> Outcome:
        return cls(len(result.files), sum(f.size if f.size is not None else _size_of(f.path) for f in result.files),
                   result.defects, result.bounds)


def run(args: argparse.Namespace) -> int:
    from mailingest.errors import ConfigError
    from mailingest.mime.containers import Formats
    from mailingest.mime.layout import DecodeSettings
    from mailingest.mime.parse import DecodeLimits

    smime: Any = "default" if args.smime else None  # opened without trust or key
    if args.smime and (args.smime_trust or args.smime_key):
        from mailingest.mime.smime import Smime, SmimeSettings

        try:
            smime = Smime(SmimeSettings(trust_file=args.smime_trust, key_file=args.smime_key))
        except ConfigError as exc:
            logger.error("%s", exc)
            return EXIT_USAGE
    settings = DecodeSettings(
        limits=DecodeLimits(max_depth=args.max_depth, max_parts=args.max_parts,
                            max_decoded_bytes=args.max_bytes),
        html=args.html, uuencode=args.uuencode, fsync=args.fsync,
        formats=Formats(tnef=args.tnef, tnef_keep=args.tnef_keep, smime=smime))
    try:
        jobs = list(plan(args.inputs, args.output, args.stdin_name))
    except UsageError as exc:
        logger.error("%s", exc)
        return EXIT_USAGE
    progress = Progress(sys.stderr, len(jobs),
                        enabled=not args.quiet and len(jobs) > 1 and sys.stderr.isatty())
    for handler in logging.getLogger().handlers:
        handler.addFilter(progress.filter)
    tally = Tally()
    claimed: set[str] = set()
    status = EXIT_OK
    try:
        for done, job in enumerate(jobs, 1):
            if not _run_job(job, settings, args, claimed, tally, progress):
                status = EXIT_FAILED
            progress.update(done, tally.bytes)
    except KeyboardInterrupt:
        logger.error("interrupted")
        status = EXIT_INTERRUPTED
    finally:
        progress.clear()
        for handler in logging.getLogger().handlers:
            handler.removeFilter(progress.filter)
    if not args.quiet:
        print(tally.summary(time.monotonic() - progress.started), file=sys.stderr)
    return status


def _run_job(job: Job, settings: DecodeSettings, args: argparse.Namespace, claimed: set[str],
             tally: Tally, progress: Progress) -> bool:
    from mailingest.errors import MimeError

    shown = "(stdin)" if job.source == STDIN else job.source
    try:
        key = os.path.abspath(job.target)
        if key in claimed:
            raise Refused("%s is also the output of an earlier input of this run; decode them "
                          "separately, or give their directory instead" % job.target)
        claimed.add(key)
        outcome = _decode(job, settings, args.force)
    except Refused as exc:
        tally.failed += 1
        logger.error("%s: not decoded: %s", shown, exc)
        return False
    except (MimeError, OSError) as exc:
        tally.failed += 1
        logger.error("%s: not decoded: %s", shown, exc)
        return False
    except Exception:  # outermost guard per message: report the bug, go on with the next one
        tally.failed += 1
        logger.exception("%s: not decoded: unexpected error", shown)
        return False
    for defect in outcome.defects:
        logger.warning("%s: MIME defect: %s", shown, defect)
    if outcome.bounds:
        logger.warning("%s: decoded partially, the rest kept raw: %s", shown, "; ".join(outcome.bounds))
    tally.messages += 1
    tally.files += outcome.files
    tally.bytes += outcome.bytes
    if not args.quiet:
        progress.clear()
        print("%s -> %s (%d files%s)" % (shown, job.target, outcome.files,
                                         ", partial" if outcome.bounds else ""), flush=True)
    return True


def _size_of(path: str) -> int:
    try:
        return os.lstat(path).st_size
    except OSError:
        return 0


def _decode(job: Job, settings: DecodeSettings, force: bool) -> Outcome:
    """Decode one message into ``job.target``: refused when it exists, unless *force*."""
    if job.source != STDIN:
        return _decode_into(job.source, job.target, settings, force)
    import tempfile  # only standard input is spooled: ~1 ms (tempfile, random) off every other start

    with tempfile.TemporaryDirectory(prefix="mailingest-stdin-") as spool:
        path = os.path.join(spool, job.name)
        with open(path, "wb") as fh:
            shutil.copyfileobj(sys.stdin.buffer, fh)
        return _decode_into(path, job.target, settings, force)


def _decode_into(source: str, target: str, settings: DecodeSettings, force: bool) -> Outcome:
    from mailingest.atomic import temp_name
    from mailingest.mime.layout import decode_file

    parent = os.path.dirname(target) or os.curdir
    if not os.path.lexists(target):
        result = decode_file(source, parent, settings=settings)
        if os.path.abspath(result.directory) != os.path.abspath(target):  # created meanwhile
            shutil.rmtree(result.directory, ignore_errors=True)
            raise Refused("%s appeared while decoding (another writer?)" % target)
        return Outcome.of(result)
    if not force:
        raise Refused("%s exists (--force replaces it)" % target)
    # Decode beside it in a hidden directory (the download's sweep removes one a killed
    # process leaves), then swap: the old output goes only once the new one is complete.
    hidden = temp_name(target)
    os.mkdir(hidden)
    try:
        result = decode_file(source, hidden, settings=settings)
        outcome = Outcome.of(result)
        os.rename(target, os.path.join(hidden, "replaced"))
        os.rename(result.directory, target)
    finally:
        shutil.rmtree(hidden, ignore_errors=True)
    return outcome
