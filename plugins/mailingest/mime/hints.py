"""The charset hints of every message level of a parsed tree, from one walk over it.

A message's charset hints are the usable charsets (:py:func:`usable_charset`) its parts
declare, most frequent first, ties in the order first seen: the best guess for unlabelled 8-bit
header bytes.  The decoder needs the hints of each message level (the top message and every
attached message inside it); walking each level would ask the parts of a deep tree again at
each level above them.  :py:class:`TreeHints` walks the tree once, keeping each part's usable
charset in walk order; the parts below a message are a contiguous run of that order, so the
hints of any message in the tree are a count over its run.

Most messages never need the hints (they are read only when a header, a file name or a
uuencoded name holds bytes no declared charset decodes): the walk is made, and a level's hints
counted, when something first reads them (:py:meth:`TreeHints.lazy_of`).  The decoder does not
change a tree while it walks it, so they are what they would have been at the start.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from email.message import Message

from mailingest.mime.headers import HEADER_ERRORS, text_codec


class TreeHints:
    """The charset hints of every message in the tree of *root*, from one walk (iterative: no
    recursion however deep the tree), made when first needed."""

    def __init__(self, root: Message) -> None:
        self._root = root
        #: each part's usable charset (None: none) in the order ``Message.walk`` yields them
        self._charsets: list[str | None] = []
        #: id(part) -> (part, first position, end of its run); None until walked
        self._runs: dict[int, tuple[Message, int, int]] | None = None

    def _walk(self) -> dict[int, tuple[Message, int, int]]:
        runs: dict[int, tuple[Message, int, int]] = {}
        starts: dict[int, int] = {}
        stack: list[tuple[Message, bool]] = [(self._root, False)]
        while stack:
            part, leaving = stack.pop()
            if leaving:
                runs[id(part)] = (part, starts.pop(id(part)), len(self._charsets))
                continue
            starts[id(part)] = len(self._charsets)
            self._charsets.append(usable_charset(part))
            stack.append((part, True))
            if part.is_multipart():
                children: list[Message] = part.get_payload()  # type: ignore[assignment]
                stack.extend((child, False) for child in reversed(children))
        self._runs = runs
        return runs

    def of(self, msg: Message) -> list[str] | None:
        """The hints of *msg*, or None when *msg* is no part of this tree."""
        runs = self._runs if self._runs is not None else self._walk()
        run = runs.get(id(msg))
        if run is None or run[0] is not msg:
            return None
        counts = Counter(charset for charset in self._charsets[run[1]:run[2]] if charset)
        return sorted(counts, key=lambda charset: -counts[charset])

    def lazy_of(self, msg: Message) -> LazyHints:
        """The hints of *msg* (a message of this tree), counted when first read."""
        return LazyHints(self, msg)


class LazyHints(Sequence[str]):
    """The charset hints of one message level, counted when first read."""

    def __init__(self, tree: TreeHints, msg: Message) -> None:
        self._tree = tree
        self._msg = msg
        self._hints: list[str] | None = None

    def _read(self) -> list[str]:
        if self._hints is None:
            found = self._tree.of(self._msg)
            if found is None:  # not in that tree after all (a message inside an S/MIME part)
                found = TreeHints(self._msg).of(self._msg) or []
            self._hints = found
        return self._hints

    def __getitem__(self, index):  # type: ignore[no-untyped-def,override]
        return self._read()[index]

    def __len__(self) -> int:
        return len(self._read())

    def __iter__(self) -> Iterator[str]:
        return iter(self._read())

    def __repr__(self) -> str:
        return "LazyHints(%r)" % (self._hints if self._hints is not None else "not read yet")


def usable_charset(part: Message) -> str | None:
    """The charset *part* declares when it names a text codec other than ASCII; else None."""
    try:
        charset = part.get_content_charset()
    except HEADER_ERRORS:
        return None
    if charset and charset not in ("us-ascii", "ascii") and text_codec(charset):
        return charset  # type: ignore[no-any-return]
    return None
