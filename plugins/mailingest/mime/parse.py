"""Pure MIME decoding: raw RFC 822 bytes -> :py:class:`DecodedMail`.

No I/O, no sarracenia import.  The parser is Python's ``email`` package with ``policy.default``
(bounded and cached per message: :py:class:`mailingest.mime.headers.BoundedPolicy`).  This module walks the tree it builds:
the bodies are the parts ``get_body(('plain',))`` and ``get_body(('html',))`` pick; every other
leaf becomes a :py:class:`Part` with its decoded bytes; attached messages are kept as bytes
*and* decoded recursively; uuencoded blocks in text parts become parts of their own.  Unnamed
empty leaves are dropped.  ``iter_attachments()`` alone is not enough: it does not look inside
``multipart/alternative`` or the subtree it treats as the body, where real mail hides files.

Malformed input is recorded as *defects* (strings, prefixed with the MIME part number) and never
raised.  Only a message beyond a :py:class:`DecodeLimits` bound raises
:py:class:`~mailingest.errors.DecodeLimitError`; an *attached* message beyond a bound is kept as
bytes, undecoded, with the reason in :py:attr:`Part.not_decoded`.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from email.errors import MessageError, MissingHeaderBodySeparatorDefect
from email.feedparser import FeedParser
from email.message import EmailMessage, Message
from typing import TYPE_CHECKING, Any

from mailingest.errors import DecodeLimitError, MimeError
from mailingest.mime import containers, fastparse, headers, payloads
from mailingest.mime.hints import TreeHints
from mailingest.mime.spans import RawSpans

if TYPE_CHECKING:
    from mailingest.mime.smime import Verification

_BODY_TEXT = "body-text"
_BODY_HTML = "body-html"
#: message/* types whose content is one message worth decoding (delivery-status is header blocks)
_SINGLE_MESSAGE = ("message/rfc822", "message/global", "message/external-body", "message/partial",
                   "message/news")


@dataclass(frozen=True)
class DecodeLimits:
    """Bounds on the work one message may cause; frozen, validated on creation.

    :param max_depth: deepest nesting of multiparts and attached messages (top level is 0).
    :param max_parts: most parts per message: MIME leaves, attached messages and uuencoded
        blocks, i.e. the files written (multipart containers are bounded by *max_depth*).
    :param max_decoded_bytes: most bytes decoded in total (bodies, parts, attached messages).
    """

    max_depth: int = 200
    max_parts: int = 2000
    max_decoded_bytes: int = 256 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("max_depth", "max_parts", "max_decoded_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError("DecodeLimits.%s must be a positive integer, not %r" % (name, value))


@dataclass(frozen=True)
class Part:
    """One decoded leaf of a message.

    *kind* is ``body-text``/``body-html`` (the bodies ``get_body()`` chose, re-encoded as UTF-8),
    ``part`` (any other MIME leaf), ``message`` (an attached message: bytes in *data*, decoded
    content in *message*) or ``uuencoded`` (a block found in a text part).  *number* is the
    IMAP-style part number (``2.1``; uuencoded blocks ``2.1.uu1``).
    """

    number: str
    kind: str
    filename: str | None
    content_type: str
    disposition: str | None
    content_id: str | None
    #: ``bytes``; for attached messages and raw parts, usually a ``memoryview`` of the message;
    #: for a big attachment kept as it is (1 MiB or more), a ``memoryview`` of the message
    #: (7bit/8bit/binary) or a :py:class:`~mailingest.mime.payloads.DecodedStream` (base64,
    #: quoted-printable: decoded as it is written; ``len()`` and ``chunks()``)
    data: bytes | memoryview | payloads.DecodedStream
    charset: str | None = None
    message: DecodedMail | None = None
    not_decoded: str | None = None
    #: for a file taken out of a container (TNEF): the container's record (metadata.json)
    container: Mapping[str, object] | None = field(default=None, hash=False, compare=False)


@dataclass(frozen=True)
class DecodedMail:
    """A decoded message: header summary, parts in document order, parser defects."""

    subject: str | None
    from_: str | None
    to: tuple[str, ...]
    cc: tuple[str, ...]
    date: str | None
    message_id: str | None
    parts: tuple[Part, ...]
    defects: tuple[str, ...] = ()
    #: why parts of this level were kept raw (a bound reached); empty when fully decoded
    partial: tuple[str, ...] = ()
    #: S/MIME verdicts at this level (:py:mod:`mailingest.mime.smime`), one per signed/encrypted part
    smime: tuple[Mapping[str, object], ...] = field(default=(), hash=False, compare=False)


#: bytes handed to the feed parser at a time
_FEED_BYTES = 64 * 1024


def parse(raw: bytes | memoryview) -> EmailMessage:
    """Parse *raw* with ``policy.default``, bounded per message (:py:func:`headers.message_policy`).

    :raises MimeError: the parser failed outright (it records, rather than raises, defects).
    """
    policy = headers.message_policy()
    msg: Message | None = None
    try:
        if isinstance(raw, bytes):
            # the feed parser's tree, built from byte offsets, when the message is well-formed
            # (mime/fastparse.py: half the decode time, no line list, no joined copies)
            try:
                msg = fastparse.parse_fast(raw, policy)
            except fastparse.Irregular:
                msg = None
        if msg is None:
            # what BytesParser.parsebytes does, without its two whole copies of the message (one
            # str, and a StringIO that holds it at 4 bytes per character: 8x a base64 message in
            # RSS): the bytes are fed in pieces, each decoded as ASCII with surrogateescape as it does
            parser = FeedParser(policy=policy)
            view = memoryview(raw)
            for start in range(0, len(view), _FEED_BYTES):
                parser.feed(str(view[start:start + _FEED_BYTES], "ascii", "surrogateescape"))
            msg = parser.close()
    except (MessageError, ValueError, LookupError, TypeError) as exc:
        raise MimeError("the email parser failed: %s" % exc) from exc
    if not isinstance(msg, EmailMessage):  # pragma: no cover - policy.default always makes one
        raise MimeError("the email parser returned %s" % type(msg).__name__)
    return msg


def decode_bytes(raw: bytes, limits: DecodeLimits = DecodeLimits(), *,
                 uuencode: bool = True, formats: containers.Formats | None = None) -> DecodedMail:
    """Decode the raw message *raw*, as far as the *limits* allow.

    Past a bound the message is still decoded: what lies within the bounds is decoded, the
    rest is kept as raw parts (``kind="raw"``: the entity's bytes as they came) and the bound is
    named in :py:attr:`DecodedMail.partial`.

    Nesting deeper than the parser can follow (Python's recursion limit: several hundred
    levels) is handled the same way: the message is cut in half at a line end until the first
    part parses; the rest is kept raw.

    :param formats: the containers opened (TNEF, S/MIME); None: the defaults of
        :py:class:`~mailingest.mime.containers.Formats`.
    :raises DecodeLimitError: the message itself is larger than ``max_decoded_bytes``.
    :raises MimeError: the parser failed outright.
    """
    if len(raw) > limits.max_decoded_bytes:
        raise DecodeLimitError("message is %d bytes, over the limit of %d (max_decoded_bytes)"
                               % (len(raw), limits.max_decoded_bytes))
    crlf = raw[:raw.find(b"\n") + 1].endswith(b"\r\n")
    head, tail = _cut_for_parts(raw, limits.max_parts)
    reason = ("max_parts (%d): the message has more MIME delimiters than the bound allows"
              % limits.max_parts)
    with headers.active_budget() as budget:  # one header budget for the whole decode
        while True:
            walker = _Walker(limits, uuencode, crlf, formats)
            try:
                try:
                    msg = parse(head)
                    decoded = walker.message(msg, 0, "", RawSpans(head, msg))
                finally:
                    walker.settle()  # every verdict filled in; no check outlives the decode
                break
            except RecursionError as exc:
                # nested deeper than the parser (or the standard library's tree walks) can follow:
                # decode the first half, keep the rest raw; the deep point is soon left behind
                cut = head.rfind(b"\n", 0, len(head) // 2) + 1
                if cut <= 0:
                    raise DecodeLimitError("message is nested too deeply for the parser") from exc
                head, tail = head[:cut], head[cut:] + tail
                reason = "nesting deeper than the parser can follow"
    if budget.notes:  # headers cut, kept raw or unreadable (docs/decode.md, "Hostile headers")
        decoded = replace(decoded, defects=decoded.defects + tuple(budget.notes))
    if not tail:
        return decoded
    reason = "%s: the last %d bytes of the message were not parsed and are kept raw" % (reason, len(tail))
    kept = Part("tail", "raw", None, "application/octet-stream", None, None, tail,
                not_decoded=reason)
    return replace(decoded, parts=decoded.parts + (kept,), partial=decoded.partial + (reason,),
                   defects=decoded.defects + ("top: " + reason,))


def _cut_for_parts(raw: bytes, max_parts: int) -> tuple[bytes, bytes]:
    """Split *raw* before a delimiter line far past ``max_parts`` parts (each entity has one
    opening delimiter, each multipart one closing; four lines per part leave room for a
    multipart around each), so the parser never builds a tree far larger than the walker may
    visit: parsing costs time and memory per entity.  ``(raw, b"")`` when there are fewer."""
    allowed = 4 * max_parts + 16
    if raw.count(b"\n--") <= allowed:
        return raw, b""
    markers = {m.strip(b'"') for m in _BOUNDARY_PARAM.findall(raw)}
    seen, pos = 0, 0
    while True:
        pos = raw.find(b"\n--", pos)
        if pos < 0:
            return raw, b""
        pos += 1
        line_end = raw.find(b"\n", pos)
        token = raw[pos + 2:line_end if line_end >= 0 else len(raw)].rstrip(b" \t\r")
        if token in markers or (token.endswith(b"--") and token[:-2] in markers):
            seen += 1
            if seen > allowed:
                return raw[:pos], raw[pos:]


_DEFAULT_FORMATS = containers.Formats()
_BOUNDARY_PARAM = re.compile(rb"(?i)\bboundary[ \t]*=[ \t]*(\"[^\"\r\n]{1,200}\"|[^\s;\"]{1,200})")


class _Walker:
    """Walks one message tree within the limits; what lies past them is kept raw."""

    def __init__(self, limits: DecodeLimits, uuencode: bool, crlf: bool,
                 formats: containers.Formats | None = None) -> None:
        self.limits = limits
        self.formats = formats if formats is not None else _DEFAULT_FORMATS
        #: S/MIME verdicts of the message level being walked
        self.verdicts: list[dict[str, object]] = []
        #: bounds reached inside parts that hold files (TNEF, uuencoded blocks) at this level: the
        #: part is kept whole
        self.container_bounds: list[str] = []
        #: S/MIME parts that may still be opened in this message (each runs openssl)
        self.smime_left = containers.MAX_SMIME_PARTS
        #: detached signatures being checked (in threads of their own) and the verdict each
        #: fills in: :py:meth:`settle` waits for them
        self.verifying: list[tuple[dict[str, Any], Verification]] = []
        self.uuencode = uuencode
        self.crlf = crlf
        #: the charset hints of the tree being walked (an attached message parsed from its
        #: bytes is a tree of its own)
        self.tree_hints: TreeHints | None = None
        self.entities = 0
        self.decoded = 0
        #: the bound (max_parts, max_decoded_bytes) that ended decoding: the rest is kept raw
        self.exhausted: str | None = None

    def settle(self) -> None:
        """Wait for the signature checks started during the walk; fill in their verdicts."""
        verifying, self.verifying = self.verifying, []
        for verdict, check in verifying:
            verdict.update(check.result())

    def _fits(self, size: int) -> bool:
        """Charge *size* decoded bytes; False (and decoding ends) when over the bound."""
        if self.exhausted is not None:
            return False
        if self.decoded + size > self.limits.max_decoded_bytes:
            self.exhausted = "max_decoded_bytes (%d)" % self.limits.max_decoded_bytes
            return False
        self.decoded += size
        return True

    def bodies_of(self, msg: Message, number: str, defects: list[str]) -> dict[int, str]:
        """The leaves of *msg* that ``get_body()`` picks: ``id(leaf) -> kind``."""
        bodies: dict[int, str] = {}
        for kind, preference in ((_BODY_TEXT, ("plain",)), (_BODY_HTML, ("html",))):
            try:
                found = msg.get_body(preferencelist=preference) if isinstance(msg, EmailMessage) else None
            except headers.HEADER_ERRORS as exc:
                defects.append("%s: get_body failed: %s" % (number or "top", exc))
                found = None
            if found is not None and not found.is_multipart():
                bodies[id(found)] = kind
        return bodies

    def message(self, msg: Message, depth: int, number: str, spans: RawSpans, *,
                same_tree: bool = False) -> DecodedMail:
        """Decode the message level *msg*; *same_tree*: it is a part of the tree being walked
        (an attached message found in place), not a tree parsed of its own."""
        outer = self.verdicts, self.container_bounds, self.tree_hints
        if self.tree_hints is None or not same_tree:
            self.tree_hints = TreeHints(msg)
        hints = self.tree_hints.lazy_of(msg)  # counted only if a fallback decode reads them
        defects: list[str] = []
        bodies = self.bodies_of(msg, number, defects)
        parts: list[Part] = []
        self.verdicts, self.container_bounds = [], []
        try:
            self._walk(msg, depth, number, bodies, hints, parts, defects, spans)
            verdicts, bounds = self.verdicts, self.container_bounds
        finally:
            self.verdicts, self.container_bounds, self.tree_hints = outer
        sender = headers.addresses(msg, "from", hints, defects)
        return DecodedMail(
            subject=headers.header_text(msg, "subject", hints, defects),
            from_=", ".join(sender) if sender else None,
            to=headers.addresses(msg, "to", hints, defects),
            cc=headers.addresses(msg, "cc", hints, defects),
            date=headers.date_iso(msg, defects),
            message_id=headers.header_text(msg, "message-id", hints, defects),
            parts=tuple(parts), defects=tuple(defects),
            partial=tuple(p.not_decoded for p in parts if p.kind == "raw" and p.not_decoded) + tuple(bounds),
            smime=tuple(verdicts))

    def _walk(self, part: Message, depth: int, number: str, bodies: dict[int, str],
              hints: Sequence[str], out: list[Part], defects: list[str], spans: RawSpans) -> None:
        ctype = _content_type(part)
        children: Any = part.get_payload() if part.is_multipart() else None  # a leaf's text is not made here
        container = ctype.startswith("multipart/") and isinstance(children, list)
        if not container:  # containers are bounded by max_depth and by _cut_for_parts
            self.entities += 1
            if self.exhausted is None and self.entities > self.limits.max_parts:
                self.exhausted = "max_parts (%d)" % self.limits.max_parts
        if self.exhausted is not None or depth > self.limits.max_depth:
            bound = self.exhausted or "max_depth (%d)" % self.limits.max_depth
            out.append(self._raw([part], number or "1", bound, spans, defects))
            return
        if container:
            _note(defects, number, part.defects)
            if ctype == "multipart/signed":
                containers.check_signed(self, part, number, spans)
            for i, child in enumerate(children, 1):
                spans.adopt(part, child)
                if self.exhausted is not None:  # the rest of this level, as one raw file
                    for later in children[i:]:
                        spans.adopt(part, later)
                    out.append(self._raw(children[i - 1:], _join(number, i), self.exhausted,
                                         spans, defects))
                    return
                self._walk(child, depth + 1, _join(number, i), bodies, hints, out, defects, spans)
            return
        number = number or "1"
        if ctype.startswith("message/") and isinstance(children, list):
            _note(defects, number, part.defects)
            out.append(self._attached(part, ctype, depth, number, hints, defects, spans))
            return
        kind = bodies.get(id(part))
        repaired = _rewrapped(part)
        if repaired is not None:
            _note(defects, number, part.defects)
            defects.append("%s: unindented header continuation line repaired" % number)
            part = repaired
        local: list[str] = []
        name, disposition, cid = headers.part_info(part, hints, local)
        # a big attachment that is kept as it is may be decoded as it is written (payloads.DecodedStream)
        stream = kind is None and ctype != "text/plain" and not containers.may_open(ctype, name)
        data = payloads.leaf_data(part, stream=stream)  # before _note: decoding adds base64 defects
        whole = data if isinstance(data, bytes) else b""  # what is read here is never streamed
        _note(defects, number, part.defects)
        charset = part.get_content_charset()
        keep_file = (kind is None and (data or name)) or (kind is not None and name)
        text = payloads.body_text(part, whole, local).encode("utf-8") if kind is not None else b""
        opened = (containers.open_leaf(self, number, ctype, part, name, whole, local)
                  if kind is None and data and self.exhausted is None and containers.may_open(ctype, name)
                  else None)
        if opened is not None and not opened.keep_container:
            keep_file = False
        if not self._fits(len(text) + (len(data) if keep_file else 0)):
            _note(defects, number, local)
            out.append(self._raw([part], number, self.exhausted or "", spans, defects))
            return
        if kind is not None:
            out.append(Part(number, kind, None, ctype, disposition, cid, text, charset=charset))
        if keep_file:
            # not a body, or a body the sender also named as a file: keep the original bytes
            out.append(Part(number, "part", name, ctype, disposition, cid, data, charset=charset))
        if opened is not None:
            containers.decode_inner(self, opened, depth, number, hints, out, local)
        if self.uuencode and ctype == "text/plain" and b"begin " in whole:
            # one block more than the part bound leaves, so that crossing it is seen
            room = max(self.limits.max_parts - self.entities, 0) + 1
            for j, (uu_name, blob) in enumerate(payloads.uu_blocks(whole, hints, local, room), 1):
                self.entities += 1
                if self.entities > self.limits.max_parts or not self._fits(len(blob)):
                    self.exhausted = self.exhausted or "max_parts (%d)" % self.limits.max_parts
                    local.append("uuencoded blocks from block %d on not extracted: %s"
                                 % (j, self.exhausted))
                    # a bound reached: the decode is partial; the blocks stay in the part's text
                    self.container_bounds.append("%s reached: uuencoded blocks of part %s from block %d on "
                                                 "kept in its text, not extracted" % (self.exhausted, number, j))
                    break
                out.append(Part("%s.uu%d" % (number, j), "uuencoded", uu_name,
                                "application/octet-stream", "attachment", None, blob))
        _note(defects, number, local)

    def _raw(self, entities: Sequence[Message], number: str, bound: str, spans: RawSpans,
             defects: list[str]) -> Part:
        """Entities past a bound, kept as the bytes they came as (one file)."""
        found = spans.range_of(entities[0], entities[-1]) if len(entities) > 1 else spans.bytes_of(entities[0])
        data: bytes | memoryview = (found if found is not None
                                    else b"".join(payloads.entity_bytes(e, self.crlf) for e in entities))
        last = number if len(entities) == 1 else "%s to %d more" % (number, len(entities) - 1)
        reason = "%s reached: part %s kept raw, not decoded" % (bound, last)
        defects.append("%s: %s" % (number, reason))
        ctype = _content_type(entities[0]) if len(entities) == 1 else "application/octet-stream"
        return Part(number, "raw", None, ctype, None, None, data, not_decoded=reason)

    def _attached(self, part: Message, ctype: str, depth: int, number: str,
                  hints: Sequence[str], defects: list[str], spans: RawSpans) -> Part:
        """An attached message: its bytes (saved as .eml, as they came when they can be found
        in the raw input) and its decoded content."""
        local: list[str] = []
        raw, inner = payloads.attached_bytes(part, local, self.crlf, spans.body_of(part))
        name, disposition, cid = headers.part_info(part, hints, local)
        _note(defects, number, local)
        if not self._fits(len(raw)):
            return self._raw([part], number, self.exhausted or "", spans, defects)
        nested, reason = None, None
        if ctype in _SINGLE_MESSAGE and raw:
            try:
                if inner is not None:
                    spans.adopt(part, inner)
                    inner_spans = spans
                else:
                    raw = bytes(raw)
                    inner = parse(raw)
                    inner_spans = RawSpans(raw, inner)
                nested = self.message(inner, depth + 1, number, inner_spans, same_tree=inner_spans is spans)
            except MimeError as exc:  # unparseable
                reason = str(exc)
                defects.append("%s: attached message kept undecoded: %s" % (number, reason))
        return Part(number, "message", name, ctype, disposition, cid, raw, message=nested,
                    not_decoded=reason)


_PARAM_LINE = re.compile(r"[A-Za-z0-9_.-]+\*?[0-9]*\*?[ \t]*=")


def _rewrapped(part: Message) -> Message | None:
    """A part whose header continuation line lost its indentation (``name="x.zip"`` at the
    start of a line) ends its headers there; re-parse it with the line folded back in."""
    if not any(isinstance(d, MissingHeaderBodySeparatorDefect) for d in part.defects):
        return None
    payload = part.get_payload()
    if not isinstance(payload, str) or not payload.isascii() or not _PARAM_LINE.match(payload):
        return None
    head = "".join("%s: %s\n" % (k, v) for k, v in part.raw_items())
    fixed = parse(headers.to_bytes(head.rstrip("\n") + "\n " + payload))
    if any(isinstance(d, MissingHeaderBodySeparatorDefect) for d in fixed.defects):
        return None
    return fixed


def _note(defects: list[str], number: str, found: Sequence[object]) -> None:
    for defect in found:
        if isinstance(defect, str):
            defects.append("%s: %s" % (number or "top", defect))
            continue
        detail = " ".join(str(defect).split())[:100]
        defects.append("%s: %s%s" % (number or "top", type(defect).__name__,
                                     " (%s)" % detail if detail else ""))


def _join(number: str, i: int) -> str:
    return "%s.%d" % (number, i) if number else str(i)


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type()
    except headers.HEADER_ERRORS:
        return "application/octet-stream"
