"""Pure: the parser policy, header values and part names, with fallbacks for what
``policy.default`` mangles.

``policy.default`` decodes standard RFC 2047/2231 headers well.  Real mail also carries raw 8-bit
names (UTF-8, Shift_JIS, GB18030, KOI8-R, Latin-1) with no charset label, 7-bit ISO-2022-JP escape
sequences outside encoded-words, encoded-words inside quoted strings, and RFC 2231 values whose
declared charset is wrong.  For those, :py:func:`decode_raw` takes the original header bytes,
splits encoded-words with :py:func:`email.header.decode_header` and decodes each chunk with the
first charset that decodes it strictly, from a short list (declared, UTF-8, the charsets declared
elsewhere in the same message, then a CJK or Western guess).  Nothing is silently dropped:
unlabelled bytes end at Latin-1, which maps every byte; a declared charset that does not fit is
applied with replacement characters.
"""
from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Sequence
from email.errors import HeaderParseError, MessageError
from email.header import decode_header
from email.message import Message
from email.policy import Compat32, EmailPolicy

#: Exceptions the email package raises from header accessors on broken input.
HEADER_ERRORS = (HeaderParseError, MessageError, ValueError, LookupError, TypeError, AttributeError)


class MemoPolicy(EmailPolicy):
    """``policy.default`` (same settings, same results) that parses each distinct header once.

    The stock policy re-parses a header on every access, and the feed parser asks for a part's
    Content-Type several times: memoizing makes parsing big messages ~10x faster.  Header
    objects are read-only, so sharing them is safe.
    """

    _cache: dict[tuple[str, str], str] = {}

    def header_fetch_parse(self, name: str, value: str) -> str:
        if hasattr(value, "name"):
            return value
        key = (name, value)
        header = self._cache.get(key)
        if header is None:
            if len(self._cache) > 4096:
                self._cache.clear()
            header = self._cache[key] = super().header_fetch_parse(name, value)
        return header


POLICY = MemoPolicy()


class _RawPolicy(Compat32):
    """compat32 without its replacement of undecodable bytes: parameters keep their raw bytes."""

    def header_fetch_parse(self, name: str, value: str) -> str:
        return value


_RAW = _RawPolicy()
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_PAIR_HIGH = re.compile(rb"[\x80-\xff]{2}")
#: Charsets worth trying when a sibling charset was declared (mislabelled Japanese/Chinese mail).
_RELATED = {
    "iso2022_jp": ("iso2022_jp_ext", "iso2022_jp_2", "cp932", "euc_jp"),
    "shift_jis": ("cp932",),
    "euc_jp": ("cp932",),
    "gb2312": ("gb18030",),
    "gbk": ("gb18030",),
    "big5": ("big5hkscs",),
    "euc_kr": ("cp949",),
}
_SINGLE_BYTE_PREFIXES = ("iso8859", "latin", "cp12", "cp85", "cp43", "koi8", "mac", "ascii")


def looks_broken(text: str) -> bool:
    """True when a decoded header still shows undecoded bytes, escapes or encoded-words."""
    return ("\ufffd" in text or "\x1b" in text or ("=?" in text and "?=" in text)
            or any("\udc80" <= c <= "\udcff" for c in text))


def raw_header(msg: Message, name: str) -> str | None:
    """The first *name* header as it appeared in the source (unfolded, undecoded)."""
    name = name.lower()
    for key, value in msg.raw_items():
        if key.lower() == name:
            return _FOLD.sub("", str(value))
    return None


def to_bytes(text: str) -> bytes:
    """Undo the parser's surrogateescape: the header's original bytes."""
    return text.encode("utf-8", "surrogateescape")


def decode_raw(data: bytes, hints: Iterable[str] = (), declared: str | None = None) -> str:
    """Decode raw header bytes that may mix encoded-words and unlabelled 8-bit text.

    :param data: the header (or parameter) value as it appeared in the source.
    :param hints: charsets declared elsewhere in the message, most likely first.
    :param declared: the charset the sender declared for this value (RFC 2231), if any.
    """
    hints = list(hints)
    chunks: list[tuple[bytes | str, str | None]] = [(data, declared)]
    if b"=?" in data:
        try:
            chunks = decode_header(data.decode("latin-1"))
        except HeaderParseError:
            chunks = [(data, declared)]
    out = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            chunk = chunk.encode("latin-1")
        out.append(guess_decode(chunk, charset or declared, hints))
    return "".join(out)


def guess_decode(data: bytes, declared: str | None = None, hints: Iterable[str] = ()) -> str:
    """Decode *data*: with the first candidate charset that decodes it strictly; when a
    (non-ASCII) charset was declared and nothing fits, with that charset and replacement
    characters."""
    if data.isascii() and b"\x1b" not in data:
        return data.decode("ascii")
    for charset in candidates(data, declared, hints):
        try:
            return data.decode(charset)
        except UnicodeDecodeError as exc:
            if (charset == "utf-8" and exc.reason == "unexpected end of data"
                    and not data[:exc.start].isascii()):
                return data.decode(charset, "replace")  # UTF-8 cut short by a length limit
    return data.decode(_codec(declared) or "latin-1", "replace")


def candidates(data: bytes, declared: str | None = None, hints: Iterable[str] = ()) -> list[str]:
    """Charsets to try for *data*, best first (Python codec names, no duplicates).

    A declared charset is trusted (after UTF-8 when it is a single-byte one, and with its
    usual mislabellings, e.g. Shift_JIS declared as ISO-2022-JP); guesses from the rest of the
    message and a CJK/Western default apply only to undeclared (or "us-ascii") bytes.
    """
    out: list[str] = []

    def add(name: str | None) -> None:
        codec = _codec(name)
        if codec and codec not in out:
            out.append(codec)
            for related in _RELATED.get(codec, ()):
                add(related)

    if b"\x1b" in data:
        add("iso-2022-jp")
    codec = _codec(declared)
    if codec == "ascii":
        codec = None
    if codec is None or codec.startswith(_SINGLE_BYTE_PREFIXES):
        add("utf-8")  # valid multi-byte UTF-8 mislabelled as Latin-1 is far likelier than the reverse
    if codec is not None:
        add(codec)
        return out
    for hint in hints:
        add(hint)
    if _PAIR_HIGH.search(data):
        add("cp932")
        add("gb18030")
    add("cp1252")
    add("latin-1")
    return out


def _codec(name: str | None) -> str | None:
    if not name:
        return None
    name = name.split("*", 1)[0].strip().strip('"').lower()  # RFC 2231 language suffix
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


# -- parsed messages ---------------------------------------------------------------------------
def charset_hints(msg: Message) -> list[str]:
    """Charsets declared anywhere in *msg*, most frequent first: the best guess for unlabelled
    8-bit header bytes."""
    counts: dict[str, int] = {}
    for sub in msg.walk():
        try:
            charset = sub.get_content_charset()
        except HEADER_ERRORS:
            charset = None
        if charset and charset not in ("us-ascii", "ascii"):
            counts[charset] = counts.get(charset, 0) + 1
    return sorted(counts, key=lambda c: -counts[c])


def part_info(part: Message, hints: Sequence[str],
              defects: list[str]) -> tuple[str | None, str | None, str | None]:
    """(original file name, disposition, Content-ID) of *part*; the name is the
    Content-Disposition filename, else the Content-Type name, else None."""
    try:
        name = part.get_filename()
    except HEADER_ERRORS as exc:
        defects.append("file name unreadable by the parser: %s" % exc)
        name = None
    if name is None or looks_broken(name):
        fallback = _raw_filename(part, hints)
        if fallback is not None:
            name = fallback
    try:
        disposition = part.get_content_disposition()
    except HEADER_ERRORS:
        disposition = None
    try:
        cid = part.get("content-id")
        cid = str(cid).strip() if cid is not None else None
    except HEADER_ERRORS:
        cid = None
    return (name.strip() if name else None) or None, disposition, cid or None


def _raw_filename(part: Message, hints: Sequence[str]) -> str | None:
    """Re-read filename/name from the raw headers with the compat32 parameter parser."""
    for header, param in (("content-disposition", "filename"), ("content-type", "name")):
        raw = raw_header(part, header)
        if raw is None:
            continue
        scratch = Message(policy=_RAW)
        scratch[header] = raw
        value = scratch.get_param(param, None, header)
        if isinstance(value, tuple):  # RFC 2231: (charset, language, %-decoded text as Latin-1)
            charset, _lang, text = value
            try:
                data = text.encode("latin-1", "surrogateescape")
            except UnicodeEncodeError:
                data = to_bytes(text)
            return decode_raw(data, hints, declared=charset or None)
        if value:
            return decode_raw(to_bytes(value), hints)
    return None


def header_text(msg: Message, name: str, hints: Sequence[str], defects: list[str]) -> str | None:
    """The decoded, unfolded value of header *name*, or None."""
    try:
        value = msg.get(name)
        text = None if value is None else str(value)
    except HEADER_ERRORS as exc:
        defects.append("header %s unreadable by the parser: %s" % (name, exc))
        text = None
    if text is None or looks_broken(text):
        raw = raw_header(msg, name)
        if raw is not None:
            text = decode_raw(to_bytes(raw), hints)
    return " ".join(text.split()) if text else None


def addresses(msg: Message, name: str, hints: Sequence[str], defects: list[str]) -> tuple[str, ...]:
    """The addresses in header *name* as ``Display Name <user@host>`` strings."""
    try:
        header = msg.get(name)
        if header is None:
            return ()
        found = getattr(header, "addresses", None)
        if found and not looks_broken(str(header)):
            return tuple(str(a) for a in found)
    except HEADER_ERRORS as exc:
        defects.append("header %s unreadable by the parser: %s" % (name, exc))
    text = header_text(msg, name, hints, defects)
    return (text,) if text else ()


def date_iso(msg: Message, defects: list[str]) -> str | None:
    """The Date header in ISO 8601, or None (a defect is noted when it does not parse)."""
    try:
        header = msg.get("date")
        stamp = getattr(header, "datetime", None)
    except HEADER_ERRORS as exc:
        defects.append("header date unreadable: %s" % exc)
        return None
    if header is not None and stamp is None:
        defects.append("header date is not an RFC 5322 date: %r" % str(header)[:80])
    return stamp.isoformat() if stamp is not None else None
