"""Pure: the decoded bytes of one parsed part, where ``get_payload(decode=True)`` needs help.

* **base64 with a broken length** (a final quantum of 1-3 characters, or text after the data):
  the email package either returns the *encoded* text (length 1 mod 4) or pads the fragment.
  Here the incomplete final quantum is dropped, as ripmime, munpack, mu and uudeview do.
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
from collections.abc import Sequence
from email.errors import (
    CloseBoundaryNotFoundDefect,
    InvalidBase64LengthDefect,
    InvalidBase64PaddingDefect,
    MissingHeaderBodySeparatorDefect,
)
from email.message import Message

from mailingest.mime.headers import HEADER_ERRORS, POLICY, decode_body, decode_raw

_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/=]")
_UU_BEGIN = re.compile(rb"^begin [0-7]{3,4}(?:[ \t]+([^\r\n]*?))?[ \t]*\r?$", re.M)
_UU_END = re.compile(rb"^end\s*$")
#: generator settings that re-emit parsed headers as they came (no refolding)
_GENERATE = {sep: POLICY.clone(linesep=sep, refold_source="none", max_line_length=None)
             for sep in ("\n", "\r\n")}


def leaf_bytes(part: Message) -> bytes:
    """The transfer-decoded content of a non-multipart *part*."""
    declared = str(part.get("content-transfer-encoding", "")).lower()
    cte = declared.strip()
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
            data = _lenient_b64(encoded.encode("utf-8", "surrogateescape"))
    return data


def _lenient_b64(encoded: bytes) -> bytes:
    """Decode base64 up to its first padding, dropping an incomplete last quantum and any
    character outside the alphabet (what ripmime, munpack, mu and uudeview do)."""
    head, pad, _rest = _NOT_BASE64.sub(b"", encoded).partition(b"=")
    keep = len(head) // 4 * 4
    if pad and len(head) % 4 in (2, 3):
        return binascii.a2b_base64(head + b"=" * (4 - len(head) % 4))
    return binascii.a2b_base64(head[:keep])


def body_text(part: Message, data: bytes, defects: list[str]) -> str:
    """Body bytes as text: declared charset, else UTF-8, else with replacement characters."""
    charset = part.get_content_charset() or "us-ascii"
    text, problem = decode_body(data, charset)  # only text codecs; no lone surrogates
    if problem:
        defects.append(problem)
    return text


def attached_bytes(part: Message, defects: list[str],
                   crlf: bool = False) -> tuple[bytes, Message | None]:
    """A ``message/*`` part as bytes, plus the parsed message unless a transfer encoding hid it
    from the parser (then the caller parses the bytes).  Line ends follow the part's content,
    else *crlf* (the enclosing message's)."""
    blocks = part.get_payload()
    if not isinstance(blocks, list):
        return b"", None
    found = _uses_crlf(part)
    linesep = "\r\n" if (crlf if found is None else found) else "\n"
    policy = _GENERATE[linesep]
    chunks = []
    messages = [inner for inner in blocks if isinstance(inner, Message)]
    for inner in messages:
        try:
            raw = inner.as_bytes(unixfrom=inner.get_unixfrom() is not None, policy=policy)
        except HEADER_ERRORS as exc:
            defects.append("attached message could not be re-serialized: %s" % exc)
            return b"", None
        if any(isinstance(d, MissingHeaderBodySeparatorDefect) for d in inner.defects):
            # the source had no blank line after its headers: remove the one the generator wrote
            sep = linesep.encode()
            raw = raw[len(sep):] if raw.startswith(sep) else raw.replace(sep + sep, sep, 1)
        chunks.append(_drop_invented_close(inner, raw, linesep))
    raw = b"".join(chunks)
    cte = str(part.get("content-transfer-encoding", "")).strip().lower()
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


def uu_blocks(data: bytes, hints: Sequence[str], defects: list[str]) -> list[tuple[str | None, bytes]]:
    """``begin MODE NAME`` ... ``end`` blocks in a text body: (name or None, decoded bytes)."""
    blocks = []
    for match in _UU_BEGIN.finditer(data):
        chunks, ended = [], False
        for line in data[match.end():].split(b"\n")[1:]:
            line = line.rstrip(b"\r")
            if _UU_END.match(line):
                ended = True
                break
            chunk = _uu_line(line)
            if chunk is None:
                break
            chunks.append(chunk)
        blob = b"".join(chunks)
        if not blob:
            continue
        name = match.group(1)
        if not ended:
            defects.append("uuencoded block %r has no 'end' line" % (name or b"")[:60])
        blocks.append((decode_raw(name, hints) if name else None, blob))
    return blocks


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
