"""The charset hints of every message level of a parsed tree, from one walk over it.

:py:func:`mailingest.mime.headers.charset_hints` walks a message and asks every part below it
for its charset.  The decoder needs the hints of each message level (the top message and
every attached message inside it), so a tree with attached messages was walked once per
level, and the parts of a deep one asked again at each level above them.  :py:class:`TreeHints`
walks the tree once, keeping each part's usable charset in walk order; the parts below a
message are a contiguous run of that order, so the hints of any message in the tree are a
count over its run, in the same order ``charset_hints`` gives (most frequent first, ties in
the order first seen).
"""
from __future__ import annotations

from collections import Counter
from email.message import Message

from mailingest.mime.headers import HEADER_ERRORS, text_codec


class TreeHints:
    """``charset_hints`` of every message in the tree of *root*, from one walk (iterative: no
    recursion however deep the tree)."""

    def __init__(self, root: Message) -> None:
        #: each part's usable charset (None: none) in the order ``Message.walk`` yields them
        self._charsets: list[str | None] = []
        #: id(part) -> (part, first position, end of its run)
        self._runs: dict[int, tuple[Message, int, int]] = {}
        starts: dict[int, int] = {}
        stack: list[tuple[Message, bool]] = [(root, False)]
        while stack:
            part, leaving = stack.pop()
            if leaving:
                self._runs[id(part)] = (part, starts.pop(id(part)), len(self._charsets))
                continue
            starts[id(part)] = len(self._charsets)
            self._charsets.append(_usable_charset(part))
            stack.append((part, True))
            if part.is_multipart():
                children: list[Message] = part.get_payload()  # type: ignore[assignment]
                stack.extend((child, False) for child in reversed(children))

    def of(self, msg: Message) -> list[str] | None:
        """The hints of *msg*, or None when *msg* is no part of this tree."""
        run = self._runs.get(id(msg))
        if run is None or run[0] is not msg:
            return None
        counts = Counter(charset for charset in self._charsets[run[1]:run[2]] if charset)
        return sorted(counts, key=lambda charset: -counts[charset])


def _usable_charset(part: Message) -> str | None:
    try:
        charset = part.get_content_charset()
    except HEADER_ERRORS:
        return None
    if charset and charset not in ("us-ascii", "ascii") and text_codec(charset):
        return charset  # type: ignore[no-any-return]
    return None
