"""Pure: the decoded bytes of one parsed part, where ``get_payload(decode=True)`` needs help.

* **base64 with a broken length** (a final quantum of 1-3 characters, padding in mid-stream, or
  text after the data): the email package returns the *encoded* text when the length is 1 mod
  4; then the lenient decoder here is used (dropping the lone last character).  Otherwise the
  longer of the two results is kept: never less than the standard library recovers (an
  incomplete last quantum of 2-3 characters is padded, as the standard library does).
* **attached messages** (``message/*``): the generator re-emits the parsed message (keeping a
  ``From `` line, line endings, and a missing close boundary missing); a base64 or
  quoted-printable wrapping is undone.
* **uuencoded blocks** (``begin 644 name`` ... ``end``) inside text bodies.
* **body text**: declared charset, else UTF-8, else replacement characters / Latin-1; never a
  lossy ``'ignore'``.
"""
from __future__ import annotations

import binascii
import re
from collections.abc import Iterator, Sequence
from email.errors import (
    CloseBoundaryNotFoundDefect,
    InvalidBase64LengthDefect,
    InvalidBase64PaddingDefect,
    MissingHeaderBodySeparatorDefect,
)
from email.message import Message

from mailingest.mime.headers import HEADER_ERRORS, POLICY, HardenedMessage, decode_body, decode_raw

_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/=]")
_PADDING = re.compile(rb"=+")
#: a character that is neither base64 nor white space: text mixed with (or following) the data
_JUNK = re.compile(rb"[^A-Za-z0-9+/=\s]")
#: generator settings that re-emit parsed headers as they came (no refolding)
_GENERATE = {sep: POLICY.clone(linesep=sep, refold_source="none", max_line_length=None)
             for sep in ("\n", "\r\n")}


#: decoded size from which :py:func:`leaf_data` may hand back a :py:class:`DecodedStream`
STREAM_MIN = 1024 * 1024
#: encoded bytes decoded at a time by :py:meth:`DecodedStream.chunks`
STREAM_PIECE = 1024 * 1024
#: transfer encodings the email package decodes; any other is the payload's bytes as they are
_DECODED_CTES = frozenset(("base64", "quoted-printable", "x-uuencode", "uuencode", "uue", "x-uue"))


class DecodedStream:
    """The transfer-decoded bytes of a payload lying in ``raw[start:end]`` (well-formed base64,
    or quoted-printable), produced in pieces (:py:meth:`chunks`) as they are written, so a big
    attachment is never whole in memory beside the message it came in.  ``len()`` is the
    decoded size (base64: known without decoding; quoted-printable: one decoding pass)."""

    def __init__(self, raw: bytes, start: int, end: int, encoding: str, size: int | None = None) -> None:
        self.raw, self.start, self.end, self.encoding = raw, start, end, encoding
        self.size = size if size is not None else sum(len(piece) for piece in self.chunks())

    def __len__(self) -> int:
        return self.size

    def chunks(self) -> Iterator[bytes]:
        """The decoded bytes, from about :py:data:`STREAM_PIECE` encoded bytes at a time."""
        return self._base64() if self.encoding == "base64" else self._quoted_printable()

    def _base64(self) -> Iterator[bytes]:
        view = memoryview(self.raw)
        pending = b""
        for pos in range(self.start, self.end, STREAM_PIECE):
            text = pending + bytes(view[pos:min(self.end, pos + STREAM_PIECE)]).translate(None, b"\r\n")
            whole = len(text) - len(text) % 4  # whole quanta; padding is only at the very end
            if whole:
                yield binascii.a2b_base64(text[:whole])
            pending = text[whole:]
        if pending:  # pragma: no cover - well-formed base64 is whole quanta
            yield binascii.a2b_base64(pending)

    def _quoted_printable(self) -> Iterator[bytes]:
        # pieces end at a line end: what a2b_qp does with a line (a soft line break, an escape)
        # never depends on another line, so the pieces decode to the bytes of the whole
        raw, view, pos, end = self.raw, memoryview(self.raw), self.start, self.end
        while pos < end:
            stop = min(end, pos + STREAM_PIECE)
            if stop < end:
                line_end = raw.rfind(b"\n", pos, stop)
                stop = line_end + 1 if line_end >= 0 else (raw.find(b"\n", stop, end) + 1 or end)
            yield binascii.a2b_qp(view[pos:stop])
            pos = stop

    def __bytes__(self) -> bytes:
        return b"".join(self.chunks())


def leaf_bytes(part: Message) -> bytes:
    """The transfer-decoded content of a non-multipart *part*."""
    data = leaf_data(part, stream=False)
    return data if isinstance(data, bytes) else bytes(data)


def leaf_data(part: Message, *, stream: bool) -> bytes | memoryview | DecodedStream:
    """:py:func:`leaf_bytes`, or with *stream*, for a big payload still lying in the raw message
    (a span, see :py:class:`mailingest.mime.headers.HardenedMessage`): a :py:class:`DecodedStream`
    for well-formed base64 and for quoted-printable, a ``memoryview`` of the message for a
    payload the transfer encoding leaves as it is (7bit, 8bit, binary)."""
    declared = str(part.get("content-transfer-encoding", "")).lower()
    cte = declared.strip()
    span = part.payload_span() if isinstance(part, HardenedMessage) else None
    if declared == "base64":
        if span is None:
            # ASCII text is what get_payload() gives (it decodes only text holding undecoded bytes)
            text = part.__dict__.get("_text") if isinstance(part, HardenedMessage) else None
            clean: bytes | DecodedStream | None = _clean_base64(
                text if type(text) is str and text.isascii() else part.get_payload())
        else:
            raw, start, end = span
            clean = _clean_base64_span(raw, start, end, stream)
        if clean is not None:
            return clean
    elif stream and span is not None and span[2] - span[1] >= STREAM_MIN and cte == declared:
        raw, start, end = span
        if declared == "quoted-printable":  # the email package: quopri.decodestring, i.e. a2b_qp
            return DecodedStream(raw, start, end, "quoted-printable")
        if declared not in _DECODED_CTES:  # get_payload(decode=True): the bytes as they are
            return memoryview(raw)[start:end]
    if declared not in _DECODED_CTES and cte not in _DECODED_CTES:
        # get_payload(decode=True) of a payload the transfer encoding leaves as it is: the
        # parser's text encoded back, i.e. the bytes as they came (without its surrogate test
        # and second copy); a payload still in the raw message is those bytes already
        if span is not None:
            raw, start, end = span
            return raw[start:end]
        payload = part.__dict__.get("_text") if isinstance(part, HardenedMessage) else None
        if type(payload) is str:
            try:
                return payload.encode("ascii", "surrogateescape")
            except UnicodeEncodeError:  # text the parser did not make: the standard library's way
                pass
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return b""
    if cte != declared and cte in ("base64", "quoted-printable"):
        # 'base64 ' with a stray blank: the email package returns the encoded bytes as they are
        return _lenient_b64(data) if cte == "base64" else binascii.a2b_qp(data)
    if cte == "base64" and any(isinstance(d, (InvalidBase64LengthDefect, InvalidBase64PaddingDefect))
                               for d in part.defects):
        encoded = part.get_payload(decode=False)
        if isinstance(encoded, str):
            text = encoded.encode("utf-8", "surrogateescape")
            lenient = _lenient_b64(text)
            decoded_by_stdlib = not any(isinstance(d, InvalidBase64LengthDefect) for d in part.defects)
            if not decoded_by_stdlib or len(lenient) >= len(data) or (
                    lenient and data.startswith(lenient) and len(data) - len(lenient) <= 2
                    and _JUNK.search(text) is not None):
                # never less than the standard library recovers (issue 11), but for the last
                # incomplete quantum of text that followed the data, which it decodes as data
                data = lenient
    return data


def _clean_base64(payload: object) -> bytes | None:
    """Well-formed base64 (the alphabet in lines, padding only at the end, whole quanta)
    decoded straight from the parser's text: the bytes ``get_payload(decode=True)`` gives, and
    no defect either way, without its three whole copies (the text encoded to bytes, split
    into lines, joined again: 3.5x a large attachment at once).  None for anything else, which
    goes the standard library's way."""
    if not isinstance(payload, str) or not payload.isascii():
        return None
    found = _clean_base64_span(payload.encode("ascii"), 0, len(payload), False)
    return found if isinstance(found, bytes) else None


_BASE64_LINES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/\r\n"


def _is_clean_base64(raw: bytes, start: int, end: int) -> bool:
    """``raw[start:end]`` is the base64 alphabet in lines, then at most two ``=`` among line
    ends (the regular expression ``[A-Za-z0-9+/\r\n]*(?:=[\r\n]*){0,2}``, checked with
    ``bytes.translate`` a piece at a time: several times faster, no whole copy)."""
    padding = raw.find(b"=", start, end)
    data_end = end if padding < 0 else padding
    for pos in range(start, data_end, STREAM_PIECE):
        if raw[pos:min(data_end, pos + STREAM_PIECE)].translate(None, _BASE64_LINES):
            return False
    if padding < 0:
        return True
    if raw.count(b"=", padding, end) > 2:
        return False
    return all(not raw[pos:min(end, pos + STREAM_PIECE)].translate(None, b"=\r\n")
               for pos in range(padding, end, STREAM_PIECE))


def _clean_base64_span(raw: bytes, start: int, end: int, stream: bool) -> bytes | DecodedStream | None:
    """:py:func:`_clean_base64` of the payload ``raw[start:end]``, read in place (no text copy);
    a :py:class:`DecodedStream` when *stream* and the decoded size is at least :py:data:`STREAM_MIN`.

    A payload under :py:data:`STREAM_MIN` is checked by decoding it: its line ends taken out,
    whole quanta, no third ``=`` at the end, and what ``binascii``'s strict mode takes (the
    alphabet, padding only at the end): the same rule, in two passes over the bytes instead of
    five, at the cost of a copy of under 1 MiB (``tests/unit/test_streamed_parts.py`` holds it
    to the rule on every short text).  Strict mode alone would also take ``=`` after a whole
    quantum (``QUJD=``, ``QUJD====``): the length and the tail exclude those."""
    if end - start < STREAM_MIN:
        text = raw[start:end].translate(None, b"\r\n")
        if len(text) % 4 or text.endswith(b"==="):
            return None
        try:
            return binascii.a2b_base64(text, strict_mode=True)
        except binascii.Error:
            return None
    if not _is_clean_base64(raw, start, end):
        return None
    chars = end - start - raw.count(b"\n", start, end) - raw.count(b"\r", start, end)
    if chars % 4:
        return None
    size = chars // 4 * 3 - raw.count(b"=", start, end)
    if stream and size >= STREAM_MIN:
        return DecodedStream(raw, start, end, "base64", size)
    return binascii.a2b_base64(memoryview(raw)[start:end])


def _lenient_b64(encoded: bytes | memoryview) -> bytes:
    """Decode base64 ignoring any character outside the alphabet.  Padding that closes an
    incomplete quantum ends the data (what follows is text, e.g. a signature); padding at a
    quantum boundary (a stray ``=`` line) is ignored and decoding goes on.  A last quantum of
    2-3 characters that no padding closes is padded, as the standard library does, when the
    text is base64 and nothing else (padding left off); when characters outside the alphabet
    were skipped, text follows the data and that last quantum is letters of it: dropped, as
    ripmime, munpack, mu and uudeview do.  A lone last character (6 bits) is dropped.

    The caller keeps the standard library's result instead when that is longer, except by that
    dropped quantum (1-2 bytes decoded from text): no data the standard library recovers is lost.
    """
    clean = _NOT_BASE64.sub(b"", encoded)
    text_follows = _JUNK.search(encoded) is not None
    segments = _PADDING.split(clean)
    out = []
    pending = b""
    for i, segment in enumerate(segments):
        segment = pending + segment
        padded = i < len(segments) - 1
        rest = len(segment) % 4
        if padded and rest in (2, 3):
            out.append(binascii.a2b_base64(segment + b"=" * (4 - rest)))
            break
        if not padded and rest in (2, 3) and not text_follows:  # padding left off: pad it
            out.append(binascii.a2b_base64(segment + b"=" * (4 - rest)))
            break
        out.append(binascii.a2b_base64(segment[:len(segment) - rest]))
        pending = segment[len(segment) - rest:] if padded else b""
    return b"".join(out)


def body_text(part: Message, data: bytes, defects: list[str]) -> str:
    """Body bytes as text: declared charset, else UTF-8, else with replacement characters."""
    charset = part.get_content_charset() or "us-ascii"
    text, problem = decode_body(data, charset)  # only text codecs; no lone surrogates
    if problem:
        defects.append(problem)
    return text


def attached_bytes(part: Message, defects: list[str], crlf: bool = False,
                   original: memoryview | None = None) -> tuple[bytes | memoryview, Message | None]:
    """A ``message/*`` part as bytes, plus the parsed message unless a transfer encoding hid it
    from the parser (then the caller parses the bytes).

    :param original: the part's body as it came (:py:class:`mailingest.spans.RawSpans`): used
        as it is (transfer-decoded), which keeps the message byte for byte.  Without it the
        generator re-emits the parsed message; line ends follow the part's content, else
        *crlf* (the enclosing message's).
    """
    blocks = part.get_payload()
    if not isinstance(blocks, list):
        return b"", None
    messages = [inner for inner in blocks if isinstance(inner, Message)]
    cte = str(part.get("content-transfer-encoding", "")).strip().lower()
    if original is not None:
        if cte == "base64":
            return _lenient_b64(original), None
        if cte == "quoted-printable":
            return binascii.a2b_qp(original), None
        return original, messages[0] if len(messages) == 1 else None
    found = _uses_crlf(part)
    linesep = "\r\n" if (crlf if found is None else found) else "\n"
    policy = _GENERATE[linesep]
    chunks = []
    for inner in messages:
        try:
            raw = inner.as_bytes(unixfrom=inner.get_unixfrom() is not None, policy=policy)
        except (*HEADER_ERRORS, RecursionError) as exc:
            defects.append("attached message could not be re-serialized: %s" % exc)
            return b"", None
        if any(isinstance(d, MissingHeaderBodySeparatorDefect) for d in inner.defects):
            # the source had no blank line after its headers: remove the one the generator wrote
            sep = linesep.encode()
            raw = raw[len(sep):] if raw.startswith(sep) else raw.replace(sep + sep, sep, 1)
        chunks.append(_drop_invented_close(inner, raw, linesep))
    raw = b"".join(chunks)
    if cte == "base64":
        return _lenient_b64(raw), None
    if cte == "quoted-printable":
        return binascii.a2b_qp(raw), None
    return raw, messages[0] if len(messages) == 1 else None


def _drop_invented_close(msg: Message, raw: bytes, linesep: str) -> bytes:
    """The generator closes every multipart; remove the close delimiters the source lacked."""
    for sub in reversed(list(msg.walk())):
        if any(isinstance(d, CloseBoundaryNotFoundDefect) for d in sub.defects):
            boundary = sub.get_boundary()
            tail = ("--%s--%s" % (boundary, linesep)).encode("utf-8", "surrogateescape")
            if boundary and raw.endswith(tail):
                raw = raw[:-len(tail)]
    return raw


def _uses_crlf(msg: Message) -> bool | None:
    """Whether the first line end found in *msg*'s bodies is CRLF; None when there is none."""
    for sub in msg.walk():
        payload = sub.get_payload()
        if isinstance(payload, str) and "\n" in payload:
            return "\r\n" in payload[:payload.index("\n") + 1]
    for _name, value in msg.raw_items():
        if "\n" in value:
            return "\r\n" in value
    return None


def uu_blocks(data: bytes, hints: Sequence[str], defects: list[str],
              limit: int | None = None) -> list[tuple[str | None, bytes]]:
    """``begin MODE NAME`` ... ``end`` blocks in a text body: (name or None, decoded bytes).

    One pass over the lines (each is looked at once), no regular expression: a body full of
    ``begin`` lines or of blanks costs time linear in its size.  A ``begin`` line ends the
    block before it.  At most *limit* blocks are read (the caller's part bound): the rest of
    the body is not looked at."""
    blocks: list[tuple[str | None, bytes]] = []
    pos, size = 0, len(data)
    while pos < size and (limit is None or len(blocks) < limit):
        at = data.find(b"begin ", pos)
        if at < 0:
            break
        if at and data[at - 1] != 0x0A:  # not at the start of a line
            pos = at + 6
            continue
        line, pos = _line_at(data, at)
        name = _uu_begin(line)
        if name is None:
            continue
        decoded, ended = bytearray(), False  # not a list joined: 80 bytes per item to join
        while pos < size:
            line, after = _line_at(data, pos)
            if line.startswith(b"begin ") and _uu_begin(line) is not None:
                break  # the next block starts: read from it on the next turn
            pos = after
            if line.rstrip() == b"end":
                ended = True
                break
            chunk = _uu_line(line)
            if chunk is None:
                break
            decoded += chunk
        blob = bytes(decoded)
        if not blob:
            continue
        if not ended:
            defects.append("uuencoded block %r has no 'end' line" % name[:60])
        blocks.append((decode_raw(name, hints) if name else None, blob))
    return blocks


def _line_at(data: bytes, start: int) -> tuple[bytes, int]:
    """The line starting at *start* (without its line end) and where the next one starts."""
    end = data.find(b"\n", start)
    if end < 0:
        return data[start:].rstrip(b"\r"), len(data)
    return data[start:end].rstrip(b"\r"), end + 1


def _uu_begin(line: bytes) -> bytes | None:
    """The name (``b""`` when none) on a ``begin MODE [NAME]`` line; None for any other line."""
    if not line.startswith(b"begin "):
        return None
    end = 6
    while end < len(line) and end < 10 and line[end] in b"01234567":
        end += 1
    rest = line[end:]
    if end < 9 or (rest and rest[0] not in b" \t"):
        return None
    return rest.strip(b" \t")


def _uu_line(line: bytes) -> bytes | None:
    if not line:
        return b""
    try:
        return binascii.a2b_uu(line)
    except binascii.Error:
        # a mailer stripped trailing blanks, or garbage follows: the uu module's workaround
        nbytes = (((line[0] - 32) & 63) * 4 + 5) // 3
        try:
            return binascii.a2b_uu(line[:nbytes])
        except binascii.Error:
            return None


def entity_bytes(part: Message, crlf: bool = False) -> bytes:
    """A parsed entity re-generated as bytes, for when its original bytes cannot be found in
    the input; the raw payload text when even the generator fails."""
    try:
        return part.as_bytes(policy=_GENERATE["\r\n" if crlf else "\n"])
    except (*HEADER_ERRORS, RecursionError):
        payload = part.get_payload()
        return payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""
