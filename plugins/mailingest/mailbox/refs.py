"""Message identity: what a notice names, and how that becomes a stable, safe relPath.

A relPath names the account as well as the message, so two mailboxes never share a name::

    IMAP: <host token>/<user token>/<folder token>/<UIDVALIDITY>.<UID>.eml
    POP3: <host token>/<user token>/INBOX/<UIDL token>.eml

e.g. ``mail.example.org/alice/INBOX/1700000000.42.eml``.  The host token is the server's host
name, with ``+<port>`` appended only when the port is not the scheme's default
(``mail.example.org+1993``); the user token is the login name.  Tokens keep
``A-Z a-z 0-9 - _ + @`` and inner dots; every other byte of the UTF-8 name becomes ``=XX``
(hex), so ``Archive/2024`` is ``Archive=2F2024`` and no token is ``.``/``..`` or holds a path
separator.  A POP3 UIDL token escapes dots too, so its file name never has the
``<digits>.<digits>.eml`` shape of an IMAP one.

A token is at most :data:`TOKEN_MAX` bytes, so every name (and the download's temp name beside
it) fits a file system's 255-byte limit: a longer one keeps its first bytes and ends in ``~``
plus 16 hex digits of the SHA-256 of the whole name.  ``~`` is escaped (``=7E``) everywhere
else, so a shortened token never equals a plain one, and two names share one only if their
hashes collide.
"""

from __future__ import annotations

import email.utils
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.parser import HeaderParser
from typing import Any

from mailingest.mime.fastparse import plain_fields

_SAFE = re.compile(rb"[A-Za-z0-9_+@\-]")
#: names that are their own token: safe bytes, with inner dots (keep_dots) or without any
_PLAIN = {True: re.compile(r"[A-Za-z0-9_+@\-](?:[A-Za-z0-9_+@\-.]*[A-Za-z0-9_+@\-])?"),
          False: re.compile(r"[A-Za-z0-9_+@\-]+")}
_HEADER_TEXT_MAX = 998
#: Raw header characters read to produce at most _HEADER_TEXT_MAX decoded ones (an encoded-word
#: takes about 4 raw characters per decoded one, 12 for a 4-byte UTF-8 character in Q).
_HEADER_SOURCE_MAX = 16 * _HEADER_TEXT_MAX
_FOLDS = re.compile(r"\r?\n")


#: the longest token: a file name of one (plus ``.eml``, or the download's temp-file decoration,
#: about 50 bytes) stays well within the 255 bytes file systems allow
TOKEN_MAX = 120
_HASH_HEX = 16


def safe_token(name: str, keep_dots: bool = True) -> str:
    """A file-name-safe spelling of ``name`` (see module doc), reversible up to
    :data:`TOKEN_MAX` bytes; with ``keep_dots`` false, dots are escaped as well."""
    if len(name) <= TOKEN_MAX and _PLAIN[keep_dots].fullmatch(name):
        return name  # the common case (host, user, INBOX, most UIDLs) without a pass per byte
    out = []
    raw = name.encode("utf-8", "surrogateescape")
    for index, byte in enumerate(raw):
        char = bytes([byte])
        if _SAFE.match(char) or (keep_dots and char == b"." and 0 < index < len(raw) - 1):
            out.append(char.decode("ascii"))
        else:
            out.append(f"={byte:02X}")
    token = "".join(out) or "=00"
    if len(token) <= TOKEN_MAX:
        return token
    cut = TOKEN_MAX - 1 - _HASH_HEX
    while "=" in token[cut - 2:cut]:  # never inside an =XX escape
        cut -= 1
    return f"{token[:cut]}~{hashlib.sha256(raw).hexdigest()[:_HASH_HEX]}"


def account_dir(host: str, port: int, default_port: int, user: str) -> str:
    """``<host token>[+<port>]/<user token>``: the part of a relPath that names the mailbox owner."""
    host_token = safe_token(host.lower())
    if port != default_port:
        host_token += f"+{port}"
    return f"{host_token}/{safe_token(user)}"


@dataclass
class MessageRef:
    """One message as listed by a poll: identity plus the metadata a notice carries."""

    folder: str
    uid: int = 0
    uidvalidity: int = 0
    uidl: str | None = None
    size: int = 0
    internaldate: datetime | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def rel_path_in(self, account: str) -> str:
        """The relPath of this message of the account whose :func:`account_dir` is ``account``."""
        if self.uidl is not None:
            return f"{account}/{safe_token(self.folder)}/{safe_token(self.uidl, keep_dots=False)}.eml"
        return f"{account}/{safe_token(self.folder)}/{self.uidvalidity}.{self.uid}.eml"

    def notice_fields(self) -> dict[str, Any]:
        """The ``mail`` field of the notice (JSON-serialisable)."""
        fields: dict[str, Any] = {"folder": self.folder}
        if self.uidl is not None:
            fields["uidl"] = self.uidl
        else:
            fields["uidvalidity"] = self.uidvalidity
            fields["uid"] = self.uid
        fields["size"] = self.size
        if self.internaldate is not None:
            fields["internalDate"] = self.internaldate.isoformat()
        fields.update(self.headers)
        return fields


def parse_notice_fields(mail: Any) -> MessageRef:
    """The :class:`MessageRef` a notice's ``mail`` field names.

    :raises ValueError: the field is missing or incomplete.
    """
    if not isinstance(mail, dict) or "folder" not in mail:
        raise ValueError("notice has no 'mail' field with a folder: was it published by mailingest.poll?")
    if "uidl" in mail:
        return MessageRef(folder=str(mail["folder"]), uidl=str(mail["uidl"]), size=int(mail.get("size", 0)))
    try:
        return MessageRef(
            folder=str(mail["folder"]),
            uid=int(mail["uid"]),
            uidvalidity=int(mail["uidvalidity"]),
            size=int(mail.get("size", 0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"notice 'mail' field lacks uid/uidvalidity: {exc}") from None


_HEADER_PARSER = HeaderParser(policy=policy.compat32)  # for the blocks _plain_fields leaves to it


def _decoded(value: str) -> str:
    """An RFC 2047 header value as text, by :func:`mailingest.mime.headers.decode_raw`: raw 8-bit bytes
    (kept as surrogates by the parser) decoded as UTF-8, else guessed; a charset that is no text
    codec ignored.  Only the first :data:`_HEADER_SOURCE_MAX` characters are read (work and
    memory bounded whatever the header's length); linear time, never raises."""
    value = _FOLDS.sub(" ", value)
    if len(value) > _HEADER_SOURCE_MAX:
        cut = value.rfind(" ", 0, _HEADER_SOURCE_MAX)  # not inside an encoded-word
        value = value[:cut if cut > 0 else _HEADER_SOURCE_MAX]
    if "=?" not in value and value.isascii():
        return value
    from mailingest.mime.headers import decode_raw, to_bytes

    return decode_raw(to_bytes(value))


#: the blank line that ends a header block (or an empty block): what follows is no header
_BLANK_LINE = re.compile(r"(?:\A|(?<=\n))\r?(?:\n|\Z)")


def _plain_fields(text: str) -> list[tuple[str, str]] | None:
    """``(name, raw value)`` of each field of the header block *text* (up to its blank line), as
    the email parser's ``raw_items()`` gives them (policy compat32), read by the decoder's
    :py:func:`~mailingest.mime.fastparse.plain_fields`; None for a block the parser treats
    specially: the parser then reads it."""
    blank = _BLANK_LINE.search(text)
    return plain_fields(text[:blank.start()] if blank else text)


def summary_headers(header_block: bytes) -> dict[str, str]:
    """Message-ID, Subject, From and Date, decoded (RFC 2047) and length-capped, from raw headers."""
    source = header_block.decode("ascii", "surrogateescape")  # 8-bit bytes survive as surrogates
    fields = _plain_fields(source)
    if fields is None:
        fields = list(_HEADER_PARSER.parsestr(source).raw_items())
    wanted = {"messageId": "Message-ID", "subject": "Subject", "from": "From", "date": "Date"}
    out: dict[str, str] = {}
    raw: dict[str, str] = {}
    for name, value in fields:
        raw.setdefault(name.lower(), value)
    for key, name in wanted.items():
        found = raw.get(name.lower())
        if found is None:
            continue
        text = " ".join(_decoded(found).split())
        out[key] = text[:_HEADER_TEXT_MAX]
    if "date" in out:
        try:
            out["date"] = email.utils.parsedate_to_datetime(out["date"]).isoformat()
        except (TypeError, ValueError, OverflowError):
            pass  # not an RFC 5322 date: kept as text
    return out
