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
from collections.abc import Sequence
from dataclasses import dataclass, replace
from email.errors import MessageError, MissingHeaderBodySeparatorDefect
from email.message import EmailMessage, Message
from email.parser import BytesParser

from mailingest.errors import DecodeLimitError, MimeError
from mailingest.mime import headers, payloads

_BODY_TEXT = "body-text"
_BODY_HTML = "body-html"
#: message/* types whose content is one message worth decoding (delivery-status is header blocks)
_SINGLE_MESSAGE = ("message/rfc822", "message/global", "message/external-body", "message/partial",
                   "message/news")


@dataclass(frozen=True)
class DecodeLimits:
    """Bounds on the work one message may cause; frozen, validated on creation.

    :param max_depth: deepest nesting of multiparts and attached messages (top level is 0).
    :param max_parts: most MIME entities (containers, leaves, uuencoded blocks) per message.
    :param max_decoded_bytes: most bytes decoded in total (bodies, parts, attached messages).
    """

    max_depth: int = 16
    max_parts: int = 1000
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
    data: bytes
    charset: str | None = None
    message: DecodedMail | None = None
    not_decoded: str | None = None


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


def parse(raw: bytes) -> EmailMessage:
    """Parse *raw* with ``policy.default``, bounded per message (:py:func:`headers.message_policy`).

    :raises MimeError: the parser failed outright (it records, rather than raises, defects).
    """
    try:
        msg = BytesParser(policy=headers.message_policy()).parsebytes(raw)
    except (MessageError, ValueError, LookupError, TypeError) as exc:
        raise MimeError("the email parser failed: %s" % exc) from exc
    if not isinstance(msg, EmailMessage):  # pragma: no cover - policy.default always makes one
        raise MimeError("the email parser returned %s" % type(msg).__name__)
    return msg


def decode_bytes(raw: bytes, limits: DecodeLimits = DecodeLimits(), *,
                 uuencode: bool = True) -> DecodedMail:
    """Decode the raw message *raw*.

    :raises DecodeLimitError: nested too deep, too many parts or too many decoded bytes.
    :raises MimeError: the parser failed outright.
    """
    if len(raw) > limits.max_decoded_bytes:
        raise DecodeLimitError("message is %d bytes, over the limit of %d (max_decoded_bytes)"
                               % (len(raw), limits.max_decoded_bytes))
    try:
        crlf = raw[:raw.find(b"\n") + 1].endswith(b"\r\n")
        with headers.active_budget() as budget:  # one header budget for the whole decode
            decoded = _Walker(limits, uuencode, crlf).message(parse(raw), depth=0, number="")
    except RecursionError as exc:
        raise DecodeLimitError("message is nested too deeply for the parser") from exc
    if budget.notes:  # headers cut, kept raw or unreadable (docs/decode.md, "Hostile headers")
        decoded = replace(decoded, defects=decoded.defects + tuple(budget.notes))
    return decoded


class _Walker:
    """Walks one message tree, enforcing the limits as it goes."""

    def __init__(self, limits: DecodeLimits, uuencode: bool, crlf: bool) -> None:
        self.limits = limits
        self.uuencode = uuencode
        self.crlf = crlf
        self.entities = 0
        self.decoded = 0

    def _enter(self, depth: int, number: str) -> None:
        self.entities += 1
        if depth > self.limits.max_depth:
            raise DecodeLimitError("part %s is nested %d deep, over the limit of %d (max_depth)"
                                   % (number or "top", depth, self.limits.max_depth))
        if self.entities > self.limits.max_parts:
            raise DecodeLimitError("more than %d MIME parts (max_parts)" % self.limits.max_parts)

    def _account(self, size: int) -> None:
        self.decoded += size
        if self.decoded > self.limits.max_decoded_bytes:
            raise DecodeLimitError("more than %d decoded bytes (max_decoded_bytes)"
                                   % self.limits.max_decoded_bytes)

    def message(self, msg: Message, depth: int, number: str) -> DecodedMail:
        hints = headers.charset_hints(msg)
        defects: list[str] = []
        bodies: dict[int, str] = {}
        for kind, preference in ((_BODY_TEXT, ("plain",)), (_BODY_HTML, ("html",))):
            try:
                found = msg.get_body(preferencelist=preference) if isinstance(msg, EmailMessage) else None
            except headers.HEADER_ERRORS as exc:
                defects.append("%s: get_body failed: %s" % (number or "top", exc))
                found = None
            if found is not None and not found.is_multipart():
                bodies[id(found)] = kind
        parts: list[Part] = []
        self._walk(msg, depth, number, bodies, hints, parts, defects)
        sender = headers.addresses(msg, "from", hints, defects)
        return DecodedMail(
            subject=headers.header_text(msg, "subject", hints, defects),
            from_=", ".join(sender) if sender else None,
            to=headers.addresses(msg, "to", hints, defects),
            cc=headers.addresses(msg, "cc", hints, defects),
            date=headers.date_iso(msg, defects),
            message_id=headers.header_text(msg, "message-id", hints, defects),
            parts=tuple(parts), defects=tuple(defects))

    def _walk(self, part: Message, depth: int, number: str, bodies: dict[int, str],
              hints: Sequence[str], out: list[Part], defects: list[str]) -> None:
        self._enter(depth, number)
        ctype = _content_type(part)
        children = part.get_payload()
        if ctype.startswith("multipart/") and isinstance(children, list):
            _note(defects, number, part.defects)
            for i, child in enumerate(children, 1):
                self._walk(child, depth + 1, _join(number, i), bodies, hints, out, defects)
            return
        number = number or "1"
        if ctype.startswith("message/") and isinstance(children, list):
            _note(defects, number, part.defects)
            out.append(self._attached(part, ctype, depth, number, hints, defects))
            return
        kind = bodies.get(id(part))
        repaired = _rewrapped(part)
        if repaired is not None:
            _note(defects, number, part.defects)
            defects.append("%s: unindented header continuation line repaired" % number)
            part = repaired
        data = payloads.leaf_bytes(part)  # before _note: decoding adds base64 defects
        _note(defects, number, part.defects)
        local: list[str] = []
        name, disposition, cid = headers.part_info(part, hints, local)
        charset = part.get_content_charset()
        if kind is not None:
            text = payloads.body_text(part, data, local).encode("utf-8")
            self._account(len(text))
            out.append(Part(number, kind, None, ctype, disposition, cid, text, charset=charset))
        if (kind is None and (data or name)) or (kind is not None and name):
            # not a body, or a body the sender also named as a file: keep the original bytes
            self._account(len(data))
            out.append(Part(number, "part", name, ctype, disposition, cid, data, charset=charset))
        if self.uuencode and ctype == "text/plain" and b"begin " in data:
            for j, (uu_name, blob) in enumerate(payloads.uu_blocks(data, hints, local), 1):
                self._enter(depth + 1, "%s.uu%d" % (number, j))
                self._account(len(blob))
                out.append(Part("%s.uu%d" % (number, j), "uuencoded", uu_name,
                                "application/octet-stream", "attachment", None, blob))
        _note(defects, number, local)

    def _attached(self, part: Message, ctype: str, depth: int, number: str,
                  hints: Sequence[str], defects: list[str]) -> Part:
        """An attached message: its bytes (saved as .eml) and its decoded content.  One over a
        bound is kept undecoded, and the work spent on it is not charged to the outer message."""
        local: list[str] = []
        raw, inner = payloads.attached_bytes(part, local, self.crlf)
        self._account(len(raw))
        name, disposition, cid = headers.part_info(part, hints, local)
        _note(defects, number, local)
        nested, reason = None, None
        if ctype in _SINGLE_MESSAGE and raw:
            saved = (self.entities, self.decoded)
            try:
                nested = self.message(inner if inner is not None else parse(raw), depth + 1, number)
            except MimeError as exc:  # over a bound (DecodeLimitError), or unparseable
                self.entities, self.decoded = saved
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
