"""Pure: where each parsed MIME entity lies in the raw bytes it was parsed from.

The ``email`` parser keeps no offsets.  :py:class:`RawSpans` finds them again, lazily and top
down, the way the parser split the message: an entity's headers end at its first empty line
(or at the first line that is not a header); a multipart's children lie between the lines that
are its boundary delimiter (``--B``, ``--B--`` closes), minus the line end before each
delimiter; an attached message (``message/*`` with one enclosed message, not transfer-encoded)
is its part's body.  A span is trusted only when the split agrees with the parsed tree (same
number of children); otherwise it is unknown (None) and the caller falls back to re-generating
the bytes.

The bytes come back as ``memoryview`` slices of the message: a chain of 200 attached messages,
each saved whole, costs no copy per level.  Used to save attached messages and the subtrees
left undecoded past a bound exactly as they came, without running the generator (which fails on some headers and costs time proportional
to depth x size on nested messages).  Every search is a ``bytes.find`` or an anchored match on
one line: linear in the bytes scanned.
"""
from __future__ import annotations

import re
from email.message import Message

#: what the parser takes for a header line (email.feedparser.headerRE)
_HEADER_LINE = re.compile(rb"(From |[\041-\071\073-\176]*:|[\t ])")
_LINE_END = re.compile(rb"\r\n|\r|\n")

Span = tuple[int, int]


class RawSpans:
    """Byte ranges ``(start, end)`` of the entities of one parsed tree within *raw*.

    :param raw: the bytes *root* was parsed from.
    :param root: the parsed message (its span is all of *raw*).
    """

    def __init__(self, raw: bytes, root: Message) -> None:
        self.raw = raw
        self._view = memoryview(raw)  # slices share the message's memory: no copy per level
        self._spans: dict[int, Span | None] = {id(root): (0, len(raw))}
        self._parent: dict[int, Message] = {}
        self._keep: list[Message] = [root]  # ids stay valid while the objects live

    def adopt(self, parent: Message, child: Message) -> None:
        """Record that *child* is a direct sub-entity of *parent* (the walker calls this as it
        descends, so a span can be found for any entity it reaches)."""
        self._parent[id(child)] = parent

    def bytes_of(self, part: Message) -> memoryview | None:
        """The raw bytes of *part* (headers and body), or None when they cannot be found."""
        span = self.span(part)
        return None if span is None else self._view[span[0]:span[1]]

    def body_of(self, part: Message) -> memoryview | None:
        """The raw body of *part* (after its headers), or None."""
        span = self.span(part)
        if span is None:
            return None
        return self._view[self._body_start(*span):span[1]]

    def range_of(self, first: Message, last: Message) -> memoryview | None:
        """The raw bytes from the start of *first* to the end of *last* (siblings), or None."""
        a, b = self.span(first), self.span(last)
        if a is None or b is None or b[1] < a[0]:
            return None
        return self._view[a[0]:b[1]]

    def span(self, part: Message) -> Span | None:
        key = id(part)
        if key in self._spans:
            return self._spans[key]
        parent = self._parent.get(key)
        if parent is None or self.span(parent) is None:
            self._spans[key] = None
            return None
        self._split(parent)
        return self._spans.setdefault(key, None)

    def _split(self, parent: Message) -> None:
        """Compute the spans of all of *parent*'s children at once."""
        children = parent.get_payload()
        span = self._spans[id(parent)]
        if not isinstance(children, list) or span is None:
            return
        self._keep.append(parent)
        body = self._body_start(*span)
        if parent.is_multipart() and parent.get_content_maintype() == "multipart":
            found = self._multipart_children(parent, body, span[1])
        elif len(children) == 1 and str(parent.get("content-transfer-encoding", "")).strip().lower() \
                not in ("base64", "quoted-printable"):
            found = [(body, span[1])]
        else:
            found = None
        if found is None or len(found) != len(children):
            for child in children:
                self._spans[id(child)] = None
            return
        for child, child_span in zip(children, found):
            self._spans[id(child)] = child_span

    def _body_start(self, start: int, end: int) -> int:
        """Where the body of the entity at ``[start, end)`` begins (after the empty line that
        ends its headers, or at the first line that is not a header)."""
        raw, pos = self.raw, start
        while pos < end:
            match = _LINE_END.search(raw, pos, end)
            line_end = match.end() if match else end
            content_end = match.start() if match else end
            if content_end == pos:  # the empty line: the body follows it
                return line_end
            if not _HEADER_LINE.match(raw, pos, content_end):
                return pos  # no empty line after the headers: the body starts here
            pos = line_end
        return end

    def _multipart_children(self, part: Message, start: int, end: int) -> list[Span] | None:
        boundary = part.get_boundary()
        if not boundary:
            return None
        try:
            marker = b"--" + boundary.encode("utf-8", "surrogateescape")
        except UnicodeError:
            return None
        raw = self.raw
        delimiters: list[tuple[int, int, bool]] = []  # (line start, line end incl. its end, close)
        pos = start
        while True:
            at = raw.find(marker, pos, end)
            if at < 0:
                break
            pos = at + len(marker)
            if at != start and raw[at - 1] not in b"\r\n":
                continue
            tail = pos
            close = raw.startswith(b"--", tail)
            if close:
                tail += 2
            while tail < end and raw[tail] in b" \t":
                tail += 1
            if tail < end and raw[tail] not in b"\r\n":
                continue  # --Bx: another boundary
            match = _LINE_END.match(raw, tail, end)
            delimiters.append((at, match.end() if match else end, close))
            pos = match.end() if match else end
            if close:
                break
        children = []
        for (_at, content, close), nxt in zip(delimiters, delimiters[1:] + [None]):
            if close:
                break
            if nxt is None:
                stop = end
            else:
                stop = nxt[0]
                if raw.startswith(b"\r\n", stop - 2) and stop - 2 >= content:
                    stop -= 2
                elif stop - 1 >= content and raw[stop - 1] in b"\r\n":
                    stop -= 1
            children.append((content, max(content, stop)))
        return children
