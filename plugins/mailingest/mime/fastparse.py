"""The feed parser's tree, built from byte offsets: a fast path for well-formed messages.

``email.feedparser.FeedParser`` reads a message one line at a time in pure Python (each line
a ``str``, checked against every enclosing boundary, kept in a list and joined again): about
half of the decoder's time, and two to three copies of a big attachment in memory.  This module
builds the *same* tree (the same message objects, headers, payload strings, preambles,
epilogues and default types) by finding the delimiter lines with ``bytes.find`` and cutting
each leaf's payload out of the message in one piece.

It records the feed parser's defects where its rule is simple (a missing blank line after the
headers, a first header line that is a continuation, a misplaced ``From `` line, a header
without name, a missing close delimiter).  Anything else (a multipart without boundary or
start delimiter, a multipart with a transfer encoding, two delimiter lines in a row, a
``From `` line ending the headers, ``message/delivery-status``, a lone carriage return,
nesting deeper than :py:data:`MAX_DEPTH`) raises :py:class:`Irregular` and the caller hands
the message to the feed parser, whose result then stands.
``tests/unit/test_fastparse.py`` checks that both give equal trees on the corpus, the fuzz
generators and hand-made edge cases.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from email import errors
from email.message import Message
from email.policy import EmailPolicy, Policy

#: the feed parser's header line test (``email.feedparser.headerRE``), on bytes
_HEADER_LINE = rb"(?:From |[\041-\071\073-\176]*:|[\t ])"
#: a run of header lines, each to its ``\n`` (the last one may end the region without one)
_HEADER_BLOCK = re.compile(rb"(?:%s[^\n]*\n?)*" % _HEADER_LINE)
#: a carriage return that ends a line on its own (one regex pass: 8x faster than counting CR
#: and CRLF)
_LONE_CR = re.compile(rb"\r(?!\n)")
#: nesting (multiparts and attached messages) past which the feed parser is used: each level
#: scans its own part of the message for its boundary, so the work is the size times the depth
MAX_DEPTH = 32
#: payloads from this size on are left as spans of the message until asked for
#: (:py:meth:`mailingest.mime.headers.HardenedMessage.set_payload_span`)
LAZY_PAYLOAD = 64 * 1024


#: one header of a block in which every line starts a header (a name, then a colon) or
#: continues one (a blank first): its name, and its value from the first character after the
#: blanks that follow the colon, continuation lines included, up to the line end closing it
_FIELD = re.compile(r"([\041-\071\073-\176]+):[ \t]*([^\n]*(?:\n[ \t][^\n]*)*)")
#: a header block of such lines only, each header a name of its own (no envelope ``From `` line,
#: no line without a name or a colon, no continuation first)
_PLAIN_BLOCK = re.compile(r"(?:[\041-\071\073-\176]+:[^\n]*(?:\n[ \t][^\n]*)*(?:\n|\Z))*")
_LONE_CR_TEXT = re.compile(r"\r(?!\n)")


def plain_fields(block: str) -> list[tuple[str, str]] | None:
    """``(name, raw value)`` of each header of *block* (header lines, without the blank line that
    ends them), as the email parser reads them (``header_source_parse`` of compat32 and of
    ``EmailPolicy`` alike: the name before the first colon, the value without the blanks after
    the colon and without the line ends closing it), in one regular expression instead of its
    line-by-line feed.  None when a line neither starts a header with a name of its own nor
    continues one, or a carriage return stands alone: the parser has rules of its own for those."""
    if not _PLAIN_BLOCK.fullmatch(block) or ("\r" in block and _LONE_CR_TEXT.search(block)):
        return None
    return [(name, value.rstrip("\r\n")) for name, value in _FIELD.findall(block)]


class Irregular(Exception):
    """The message needs the feed parser (a defect to record, or a rule not followed here)."""


def parse_fast(raw: bytes, policy: Policy) -> Message:
    """The tree ``FeedParser(policy=policy)`` builds from *raw* (decoded as ASCII with
    ``surrogateescape``, as ``BytesParser`` does), for a well-formed message.

    :raises Irregular: the message is not one this fast path takes.
    """
    if b"\r" in raw and _LONE_CR.search(raw):  # the feed parser also ends lines at a lone CR
        raise Irregular("lone carriage return")
    return _Builder(raw, policy).entity(0, len(raw), 0, closed=False)


def _text(data: bytes, start: int, end: int) -> str:
    """``data[start:end]`` as the feed parser's text, without a bytes copy first."""
    return str(memoryview(data)[start:end], "ascii", "surrogateescape")


def _without_eol(data: bytes, start: int, end: int) -> int:
    """*end* moved before one line end closing ``data[start:end]`` (none: *end*)."""
    if end > start and data[end - 1] == 0x0A:
        return end - 2 if end - 1 > start and data[end - 2] == 0x0D else end - 1
    return end


def _delimiter(data: bytes, start: int, end: int) -> bool | None:
    """What the rest ``data[start:end]`` of a line that starts with a boundary's separator
    makes of it, as the feed parser's ``(--)?[ \t]*(?:\r\n|\r|\n)?$`` would say: None (no
    delimiter line), False (a delimiter), True (the close delimiter).  No regular expression
    per boundary: compiling one cost more than the whole split of a small multipart."""
    close = data.startswith(b"--", start, end)
    if close:
        start += 2
    if end > start and data[end - 1] == 0x0A:  # a line holds at most its own line end
        end -= 2 if end - 1 > start and data[end - 2] == 0x0D else 1
    return close if not data[start:end].strip(b" \t") else None


class _Builder:
    def __init__(self, data: bytes, policy: Policy) -> None:
        self.data = data
        self.policy = policy
        #: the policy reads a header's lines as EmailPolicy does (the fields may be read in one piece)
        self.plain_fields = type(policy).header_source_parse is EmailPolicy.header_source_parse
        factory = policy.message_factory
        if factory is None:  # pragma: no cover - the decoder's policies all name one
            raise Irregular("policy without a message factory")
        self.factory: Callable[..., Message] = factory

    def entity(self, start: int, end: int, depth: int, *, closed: bool, digest: bool = False) -> Message:
        """The entity in ``data[start:end]``, a region holding no delimiter line of an
        enclosing multipart.  *closed*: the region is a part of a multipart, whose last line
        end the feed parser gives to the delimiter after it (taken off the payload, or off
        the epilogue of a multipart).  *digest*: that multipart is a ``multipart/digest``."""
        if depth > MAX_DEPTH:
            raise Irregular("nested deeper than %d" % MAX_DEPTH)
        data = self.data
        msg = self.factory(policy=self.policy)
        if digest:
            msg.set_default_type("message/rfc822")
        body = self._headers(msg, start, end)
        ctype = msg.get_content_type()
        if ctype == "message/delivery-status":
            raise Irregular("message/delivery-status")
        maintype = ctype.split("/")[0]  # get_content_maintype()
        if maintype == "message":
            msg.attach(self.entity(body, end, depth + 1, closed=closed))
        elif maintype == "multipart":
            self._multipart(msg, ctype == "multipart/digest", body, end, depth, closed)
        else:
            stop = _without_eol(data, body, end) if closed else end
            if stop - body >= LAZY_PAYLOAD and hasattr(msg, "set_payload_span"):
                msg.set_payload_span(data, body, stop)  # text made only if asked for
            else:
                msg.set_payload(_text(data, body, stop))
        return msg

    def _headers(self, msg: Message, start: int, end: int) -> int:
        """Read the header lines of the entity at *start* as the feed parser does (the same
        defects); returns where its body starts.  The header block is found by one regular
        expression and made text in one piece; its lines are taken without their ``\n``."""
        data = self.data
        pos = _HEADER_BLOCK.match(data, start, end).end()  # type: ignore[union-attr]  # matches ""
        block = _text(data, start, pos)
        if pos < end:
            newline = data.find(b"\n", pos, end)
            line_end = end if newline < 0 else newline + 1
            if line_end - pos <= 2 and data[pos:line_end] in (b"\n", b"\r\n"):
                pos = line_end  # the blank line between headers and body
            else:  # the line is the body's first: the feed parser notes the missing blank line
                self.policy.handle_defect(msg, errors.MissingHeaderBodySeparatorDefect())
        # every line starts a header or continues one: the fields read as the loop below reads them
        read = plain_fields(block) if self.plain_fields else None
        if read is not None:
            if type(msg).set_raw is Message.set_raw:  # what set_raw does, one list extension
                msg._headers.extend(read)  # type: ignore[attr-defined]
            else:
                for name, value in read:
                    msg.set_raw(name, value)
            return pos
        lines = block.split("\n")
        if not lines[-1]:  # the block ends with a line end (or is empty)
            lines.pop()
            last_eol = True
        else:
            last_eol = False
        count = len(lines)

        def whole(number: int) -> str:  # a line with its line end, as the feed parser has it
            return lines[number] + "\n" if last_eol or number < count - 1 else lines[number]

        # each header's lines; None for a line that ends the header before it and starts none
        # (a misplaced From line, a line with no name): a continuation line after it is a defect
        fields: list[list[str] | None] = []
        for number, line in enumerate(lines):
            if line[0] in " \t":
                last = fields[-1] if fields else None
                if last is None:
                    self.policy.handle_defect(msg, errors.FirstHeaderLineIsContinuationDefect(whole(number)))
                    continue
                last.append(line)
                continue
            if line.startswith("From "):
                if number == 0:
                    msg.set_unixfrom(line.rstrip("\r\n"))
                    continue
                if number == count - 1:  # the feed parser gives it back to the body
                    raise Irregular("From line at the end of the headers")
                msg.defects.append(errors.MisplacedEnvelopeHeaderDefect(whole(number)))
                fields.append(None)
                continue
            if line.startswith(":"):
                msg.defects.append(errors.InvalidHeaderDefect("Missing header name."))
                fields.append(None)
                continue
            fields.append([line])
        if type(self.policy).header_source_parse is not EmailPolicy.header_source_parse:
            for field in fields:  # the policy's own reading, of the lines with their line ends
                if field is not None:
                    msg.set_raw(*self.policy.header_source_parse([text + "\n" for text in field]))
            return pos
        set_raw = msg.set_raw
        for field in fields:  # EmailPolicy.header_source_parse, one call fewer per header
            if field is not None:
                name, value = (field[0] if len(field) == 1 else "\n".join(field)).split(":", 1)
                set_raw(name, value.lstrip(" \t").rstrip("\r\n"))
        return pos

    def _multipart(self, msg: Message, digest: bool, body: int, end: int, depth: int, closed: bool) -> None:
        data = self.data
        if body == 0:  # pragma: no cover - a multipart has a Content-Type header line before its body
            raise Irregular("multipart without headers")
        boundary = msg.get_boundary()
        if boundary is None:
            raise Irregular("multipart without boundary")
        if str(msg.get("content-transfer-encoding", "8bit")).lower() not in ("7bit", "8bit", "binary"):
            raise Irregular("multipart with a transfer encoding")
        try:
            separator = ("--" + boundary).encode("ascii", "surrogateescape")
        except UnicodeEncodeError:
            raise Irregular("boundary outside ASCII") from None
        # the delimiter lines, up to and including the close delimiter (body > 0: a line start
        # after the headers' blank line, so a delimiter there follows a line end too)
        needle = b"\n" + separator
        found: list[tuple[int, int]] = []  # (line start, line end)
        close_end = -1
        pos = body
        while close_end < 0:
            at = data.find(needle, pos - 1, end) + 1
            if at <= 0:
                break
            newline = data.find(b"\n", at, end)
            pos = end if newline < 0 else newline + 1
            kind = _delimiter(data, at + len(separator), pos)
            if kind is not None:
                found.append((at, pos))
                if kind:
                    close_end = pos
        if not found or found[0][1] == close_end:
            raise Irregular("multipart without start delimiter")
        if close_end < 0:  # the last part runs to the end (a truncated message)
            found.append((end, end))
        for (_start, line_end), (next_start, _end) in zip(found, found[1:]):
            if next_start == line_end and next_start < end:
                raise Irregular("two delimiter lines in a row")
        first = found[0][0]
        if first > body:
            msg.preamble = _text(data, body, _without_eol(data, body, first))
        for (_start, line_end), (next_start, _end) in zip(found, found[1:]):
            msg.attach(self.entity(line_end, next_start, depth + 1, closed=True, digest=digest))
        if close_end < 0:
            self.policy.handle_defect(msg, errors.CloseBoundaryNotFoundDefect())
        elif not closed:
            msg.epilogue = _text(data, close_end, end)
        elif close_end == end:
            msg.epilogue = None
        else:
            msg.epilogue = _text(data, close_end, _without_eol(data, close_end, end))
