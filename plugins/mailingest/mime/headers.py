"""Pure: the parser policy, header values and part names, with fallbacks for what
``policy.default`` mangles, and bounds on what hostile headers may cost.

``policy.default`` decodes standard RFC 2047/2231 headers well.  Real mail also carries raw 8-bit
names (UTF-8, Shift_JIS, GB18030, KOI8-R, Latin-1) with no charset label, 7-bit ISO-2022-JP escape
sequences outside encoded-words, encoded-words inside quoted strings, and RFC 2231 values whose
declared charset is wrong.  For those, :py:func:`decode_raw` takes the original header bytes,
splits encoded-words (:py:func:`encoded_words`) and decodes each chunk with the first charset
that decodes it strictly, from a short list (declared, UTF-8, the charsets declared elsewhere in
the same message, then a CJK or Western guess).  Nothing is silently dropped: unlabelled bytes
end at Latin-1, which maps every byte; a declared charset that does not fit is applied with
replacement characters.

Hostile headers (docs/decode.md, "Hostile headers"): a charset is used only when it names a
text codec fit for mail (:py:func:`text_codec`: not ``hex``, ``zlib``, ``undefined``,
``punycode`` ...); decoded text never holds lone surrogates; the structured parser sees at most
:py:data:`MAX_PARSED_HEADER` characters of a header, :py:data:`MAX_ADDRESSES` addresses,
:py:data:`MAX_PARAMS` parameters and :py:data:`MAX_PARSED_PER_MESSAGE` characters per message
(its memory grows faster than linearly with encoded-words); the rest is kept as raw text and
noted as a defect.  A header the parser cannot read becomes raw text too, never an exception.
"""
from __future__ import annotations

import binascii
import codecs
import contextvars
import functools
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from email import utils as _email_utils
from email.errors import HeaderDefect, HeaderParseError, MessageError
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage, Message
from email.policy import Compat32, EmailPolicy

from mailingest.mime.lookups import MEMOS, RememberedLookups
from mailingest.mime.plainfields import PlainHeader, plain_header

#: Exceptions the email package raises from header accessors on broken input.
HEADER_ERRORS = (HeaderParseError, MessageError, ValueError, LookupError, TypeError, AttributeError,
                 OverflowError, IndexError, KeyError)

#: Longest header value (characters, unfolded) handed to the structured parser.
MAX_PARSED_HEADER = 32 * 1024
#: Most header characters the structured parser reads for one message (10-25 us each).
MAX_PARSED_PER_MESSAGE = 64 * 1024
#: Most addresses parsed in one address header (From, To, Cc ...).
MAX_ADDRESSES = 1000
#: Most parameters parsed in one Content-Type or Content-Disposition header.
MAX_PARAMS = 100
#: Longest single address parsed (the address parser is quadratic on some shapes: 30 000
#: double quotes take 6 s).
MAX_ADDRESS_CHARS = 1024
#: Longest multipart boundary used (RFC 2046 allows 70; the parser compiles it into a regex).
MAX_BOUNDARY = 8 * 1024
#: Longest name accepted as a charset.
_MAX_CHARSET_NAME = 64

_ADDRESS_HEADERS = frozenset({"from", "to", "cc", "bcc", "sender", "reply-to", "resent-from",
                              "resent-to", "resent-cc", "resent-bcc", "resent-sender"})
_PARAMETERIZED = frozenset({"content-type", "content-disposition"})
#: Text codecs that are no mail charset and misbehave on arbitrary bytes (always fail, quadratic
#: time, or lone surrogates from escapes).
_NOT_MAIL = frozenset({"undefined", "punycode", "idna", "unicode-escape", "raw-unicode-escape"})


# -- charsets ----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=512)
def text_codec(name: str | None) -> str | None:
    """The Python codec for the charset *name*, or None when it names no text codec fit for
    mail (unknown, ``hex``/``base64``/``zlib``/``rot13``..., ``undefined``, ``punycode``, a
    name with NUL or 8-bit characters).  An RFC 2231 ``*language`` suffix is ignored."""
    if not name or len(name) > _MAX_CHARSET_NAME:
        return None
    name = name.split("*", 1)[0].strip().strip('"').lower()
    if not name.isascii() or not name.isprintable():
        return None
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_MAIL:
        return None
    return info.name


_codec = text_codec  # the name the rest of this module used first


@functools.lru_cache(maxsize=512)
def _ascii_compatible(codec: str | None) -> bool:
    """Whether ASCII bytes mean ASCII text in *codec* (not so in UTF-7, UTF-16, HZ, EBCDIC)."""
    if codec is None:
        return True
    try:
        return "+~{az-".encode(codec) == b"+~{az-"
    except (UnicodeError, LookupError, ValueError):
        return False
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean(text: str) -> str:
    """*text* with every lone surrogate (an undecoded byte, or a codec's half pair) replaced by
    U+FFFD: safe for UTF-8 files, names and JSON."""
    if type(text) is str and text.isascii():  # no surrogate: the same object, as re.sub gives it
        return text
    return _SURROGATE.sub("\ufffd", text)


def _decode(data: bytes, codec: str, errors: str = "strict") -> str:
    """*data* decoded with *codec* (from :py:func:`text_codec`), without lone surrogates.

    :raises UnicodeDecodeError: (strict) it does not fit.
    """
    try:
        return clean(data.decode(codec, errors))
    except UnicodeDecodeError:
        if errors == "strict":
            raise
    except (UnicodeError, LookupError, ValueError):  # a codec failing outside its contract
        if errors == "strict":
            raise UnicodeDecodeError(codec, data, 0, len(data), "codec failed") from None
    return data.decode("latin-1")


def decode_body(data: bytes, charset: str | None) -> tuple[str, str | None]:
    """Body bytes as text: declared charset, else UTF-8, else the declared charset (or Latin-1
    when it is no usable text codec) with replacement characters.  Returns (text, defect or
    None)."""
    declared = charset or "us-ascii"
    codec = text_codec(declared)
    problem = None if codec else "charset %r is no text charset; decoded as UTF-8" % clean(declared)[:40]
    for candidate in (codec, "utf-8"):
        if candidate is None:
            continue
        try:
            text = data.decode(candidate)
        except (UnicodeError, LookupError, ValueError):
            continue
        if _SURROGATE.search(text):
            return clean(text), "body in %s holds unpaired surrogates; replaced" % candidate
        return text, problem
    return (_decode(data, codec or "latin-1", "replace"),
            "body is not valid %s; decoded with replacement characters" % clean(declared)[:40])


# -- the parser policy -------------------------------------------------------------------------
class HeaderBudget:
    """What the structured parser may still spend on one message, its cache, and the defects
    found on the way.  One per :py:func:`message_policy`: nothing outlives the message."""

    def __init__(self, chars: int = MAX_PARSED_PER_MESSAGE) -> None:
        self.left = chars
        self.cache: dict[tuple[str, str], object] = {}
        self.notes: list[str] = []

        self.noted = False  # set by note(): what was just parsed must not be shared

    def note(self, text: str) -> None:
        self.noted = True
        if text not in self.notes and len(self.notes) < 100:
            self.notes.append(text)


class RawHeader(str):
    """A header the structured parser did not read (too long, over the budget, or unreadable):
    its unfolded source text (8-bit bytes as U+FFFD; :py:func:`raw_header` has them), with the
    attributes code expects of a header object."""

    name: str
    defects: tuple[HeaderDefect, ...]

    def __new__(cls, name: str, value: str, why: str) -> RawHeader:
        self = super().__new__(cls, clean(value))  # undecoded bytes: U+FFFD, as the parser does
        self.name = name
        self.defects = (HeaderDefect(why),)
        return self

    def fold(self, *, policy: EmailPolicy) -> str:
        return "%s: %s%s" % (self.name, self, policy.linesep)


_ABSENT = object()
_PARAMS_MEMO = "_params_memo"
#: parameter splits of short header values (at most :py:data:`SHARED_CACHE_VALUE` characters
#: each), shared by every message: the standard library's split of a value is a function of
#: its text alone
_SPLITS: dict[str, tuple[tuple[str, object], ...]] = {}
_MAX_SPLITS = 256


class _SafeParams:
    """Parameter and payload accessors that never raise: the standard library's RFC 2231
    decoding raises on mixed continuations (``name*1*=x; name*=...``), NUL or 8-bit bytes in a
    charset, and ``get_payload()`` on 8-bit text in a charset that is no codec."""

    def get_params(self, failobj=None, header="content-type", unquote=True):  # type: ignore[no-untyped-def]
        try:
            params = super().get_params(failobj, header, unquote)  # type: ignore[misc]
        except HEADER_ERRORS:
            return failobj
        if params is failobj:
            return params
        return [(k, _safe_rfc2231(v)) for k, v in params]

    def get_param(self, param, failobj=None, header="content-type", unquote=True):  # type: ignore[no-untyped-def]
        try:
            found = self.get(header, _ABSENT)  # type: ignore[attr-defined]
            if type(found) is _PlainParameterized:  # its parameters follow from its text alone
                return found.param(param, failobj, unquote)
            value = super().get_param(param, failobj, header, unquote)  # type: ignore[misc]
        except HEADER_ERRORS:
            return failobj
        return value if value is failobj else _safe_rfc2231(value)

    def _get_params_preserve(self, failobj, header):  # type: ignore[no-untyped-def]
        """The standard library's split of *header* into parameters, remembered per header
        object: a part is asked for its charset (by each message level above it, for the
        charset hints), name, filename, boundary..., and each ask split the header again (3 %
        of the corpus's decode, 8 % of a message with 3,000 parts).  The header object (one
        per message and value, :py:class:`BoundedPolicy`) is the key: a changed header is
        split anew.  The split of a short value is also shared between messages and parts
        (:py:data:`_SPLITS`): a message with 3,000 parts of one Content-Type splits it once."""
        value = self.get(header, _ABSENT)  # type: ignore[attr-defined]
        if value is _ABSENT:
            return failobj
        memo = self.__dict__.setdefault(_PARAMS_MEMO, {})
        key = header.lower()
        known = memo.get(key)
        if known is not None and known[0] is value:
            return list(known[1])
        text = str(value)  # all the split depends on
        split = _SPLITS.get(text) if len(text) <= SHARED_CACHE_VALUE else None
        if split is None:
            params = super()._get_params_preserve(failobj, header)  # type: ignore[misc]
            if params is failobj:
                return params
            split = tuple(params)
            if len(text) <= SHARED_CACHE_VALUE:
                if len(_SPLITS) >= _MAX_SPLITS:
                    _SPLITS.clear()  # bounded: a fresh start costs one split per value
                _SPLITS[text] = split
        memo[key] = (value, split)
        return list(split)

    def __getstate__(self) -> dict[str, object]:  # copies and pickles leave the memo behind
        state = dict(self.__dict__)
        for memo in (_PARAMS_MEMO, *MEMOS):
            state.pop(memo, None)
        return state

    def get_payload(self, i=None, decode=False):  # type: ignore[no-untyped-def]
        try:
            return super().get_payload(i, decode)  # type: ignore[misc]
        except ValueError:  # 8-bit text in a charset that is no codec ('undefined', NUL ...)
            payload = self._payload  # type: ignore[attr-defined]
            if decode or i is not None or not isinstance(payload, str):
                raise
            # what the standard library does for an unknown charset
            return payload.encode("ascii", "surrogateescape").decode("ascii", "replace")

    def get_filename(self, failobj=None):  # type: ignore[no-untyped-def]
        """``Message.get_filename``; from the header objects alone when Content-Disposition and
        Content-Type are each absent or of the plain shape."""
        disposition = self.get("content-disposition", _ABSENT)  # type: ignore[attr-defined]
        ctype = self.get("content-type", _ABSENT)  # type: ignore[attr-defined]
        if ((disposition is _ABSENT or type(disposition) is _PlainParameterized)
                and (ctype is _ABSENT or type(ctype) is _PlainParameterized)):
            found = disposition.file_name("filename") if disposition is not _ABSENT else None
            if found is None and ctype is not _ABSENT:
                found = ctype.file_name("name")
            return failobj if found is None else found
        return super().get_filename(failobj)  # type: ignore[misc]

    def get_boundary(self, failobj=None):  # type: ignore[no-untyped-def]
        boundary = super().get_boundary(failobj)  # type: ignore[misc]
        if isinstance(boundary, str) and len(boundary) > MAX_BOUNDARY:
            # the feed parser compiles it into a regular expression: 4 MB of boundary, 500 MB
            budget = getattr(self.policy, "budget", None) or _ACTIVE_BUDGET.get()  # type: ignore[attr-defined]
            if budget is not None:
                budget.note("boundary of %d characters, over %d: ignored" % (len(boundary), MAX_BOUNDARY))
            return failobj
        return boundary

    def get_content_charset(self, failobj=None):  # type: ignore[no-untyped-def]
        ctype = self.get("content-type", _ABSENT)  # type: ignore[attr-defined]
        if type(ctype) is _PlainParameterized:  # ASCII text: Message.get_content_charset's result
            charset = ctype.param("charset", _ABSENT)
            return failobj if charset is _ABSENT else charset.lower()  # type: ignore[attr-defined]
        try:
            return super().get_content_charset(failobj)  # type: ignore[misc]
        except HEADER_ERRORS:
            return failobj


def _safe_rfc2231(value: object) -> object:
    """An RFC 2231 (charset, language, text) value whose charset is no usable text codec gets
    None for charset: the standard library then decodes it as ASCII with replacements."""
    if isinstance(value, tuple) and len(value) == 3 and value[0] and text_codec(value[0]) is None:
        return (None, value[1], value[2])
    return value


class HardenedMessage(_SafeParams, RememberedLookups, EmailMessage):  # type: ignore[misc]
    """The message class of :py:data:`POLICY`: ``EmailMessage`` whose parameter accessors never
    raise, and whose header look-ups are remembered (:py:mod:`mailingest.mime.lookups`).

    A leaf may hold its payload as a span of the raw message (:py:meth:`set_payload_span`, as
    :py:mod:`mailingest.mime.fastparse` does for big parts): the text is made only when asked
    for (``get_payload()``), so a base64 attachment decoded straight from the raw bytes
    (:py:func:`mailingest.mime.payloads.leaf_bytes`) never exists as a second copy in text.
    """

    #: ``(raw, start, end)`` of a payload not turned into text yet
    _span: tuple[bytes, int, int] | None = None

    @property  # type: ignore[override]
    def _payload(self) -> object:
        span = self._span
        if span is not None:
            raw, start, end = span
            self.__dict__["_text"] = str(memoryview(raw)[start:end], "ascii", "surrogateescape")
            self._span = None
        return self.__dict__.get("_text")

    @_payload.setter
    def _payload(self, value: object) -> None:
        self._span = None
        self.__dict__["_text"] = value

    def set_payload_span(self, raw: bytes, start: int, end: int) -> None:
        """The payload is ``raw[start:end]`` (the parser's text of it, made when first asked for)."""
        self._payload = None
        self._span = (raw, start, end)

    def payload_span(self) -> tuple[bytes, int, int] | None:
        """The raw span of a payload not turned into text yet, else None."""
        return self._span

    def is_multipart(self) -> bool:
        return self._span is None and isinstance(self._payload, list)


class _RawMessage(_SafeParams, Message):  # type: ignore[misc]
    """compat32 scratch message for re-reading raw parameters, same guards."""


_ACTIVE_BUDGET: contextvars.ContextVar[HeaderBudget | None] = contextvars.ContextVar(
    "mailingest_header_budget", default=None)


class _Registry(HeaderRegistry):
    """``HeaderRegistry`` that builds each header class once (the stock one creates a new
    class on every header parsed, a tenth of the parse time)."""

    def __init__(self) -> None:
        super().__init__()
        self._built: dict[type, type] = {}  # one entry per header class: bounded

    def __getitem__(self, name: str) -> type:
        cls = self.registry.get(name.lower(), self.default_class)
        built = self._built.get(cls)
        if built is None:
            built = self._built[cls] = type("_" + cls.__name__, (cls, self.base_class), {})
        return built


class _SharedCache:
    """Parsed headers shared between messages (``text/plain; charset=utf-8`` ...): only short
    values, at most :py:data:`SHARED_CACHE_CHARS` characters of them in all, least recently
    used first out, so its memory is bounded whatever the process decodes."""

    def __init__(self, chars: int) -> None:
        self.chars = chars
        self.used = 0
        self.entries: OrderedDict[tuple[str, str], object] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> object | None:
        with self.lock:
            found = self.entries.get(key)
            if found is not None:
                self.entries.move_to_end(key)
            return found

    def put(self, key: tuple[str, str], header: object) -> None:
        size = len(key[1])
        if size > SHARED_CACHE_VALUE:
            return
        with self.lock:
            if key in self.entries:
                return
            self.entries[key] = header
            self.used += size
            while self.used > self.chars:
                (_name, value), _old = self.entries.popitem(last=False)
                self.used -= len(value)


class BoundedPolicy(EmailPolicy):
    """``policy.default`` (same results on ordinary mail) with a bounded cost per message.

    * A header's parse is cached per message (the feed parser asks for a part's Content-Type
      several times; caching makes big messages ~10x faster) in the policy's
      :py:class:`HeaderBudget`, which goes when the message goes.
    * Address headers are cut to their first :py:data:`MAX_ADDRESSES` addresses and
      Content-Type/-Disposition to their first :py:data:`MAX_PARAMS` parameters; a header still
      longer than :py:data:`MAX_PARSED_HEADER`, or beyond the message's budget, or that the
      parser cannot read, is returned as a :py:class:`RawHeader`.  Each case is noted.
    """

    budget: HeaderBudget | None = None
    message_factory = HardenedMessage

    def header_fetch_parse(self, name: str, value: str) -> str:
        if hasattr(value, "name"):
            return value
        budget = self.budget or _ACTIVE_BUDGET.get() or HeaderBudget()
        key = (name, value)
        header = budget.cache.get(key)
        if header is None:
            header = _SHARED.get(key)
            if header is None:
                budget.noted = False
                header = self._parse(name, value, budget)
                if not budget.noted:  # a header with a defect is parsed again in each message
                    _SHARED.put(key, header)
            budget.cache[key] = header
        return header  # type: ignore[return-value]

    def _parse(self, name: str, value: str, budget: HeaderBudget) -> str:
        text = _unfold(value)
        lower = name.lower()
        cut: str | None = text
        if lower in _ADDRESS_HEADERS:
            cut = _first_items(name, text, ",", MAX_ADDRESSES, "addresses", budget, MAX_ADDRESS_CHARS)
        elif lower in _PARAMETERIZED:
            cut = _params_cleaned(name, text, budget)
        if cut is None:
            why = "header %s has an address over %d characters: kept as raw text" % (
                name, MAX_ADDRESS_CHARS)
        elif len(cut) > MAX_PARSED_HEADER:
            why = "header %s has %d characters, over %d: kept as raw text" % (
                name, len(text), MAX_PARSED_HEADER)
        elif len(cut) > budget.left:
            why = "header %s not parsed: the message's headers are over %d characters: kept as raw text" % (
                name, MAX_PARSED_PER_MESSAGE)
        else:
            budget.left -= len(cut)
            _note_unusable_charsets(name, cut, budget)
            plain = (_plain_text(cut) if lower in _PARAMETERIZED and "=?" not in cut
                     and _PLAIN_PARAMETERIZED[lower].fullmatch(cut) else None)
            if plain is not None:
                return _PlainParameterized(name, cut, plain, self.header_factory)  # type: ignore[arg-type,return-value]
            fast = plain_header(name, cut, self.header_factory)  # From, Date... in their plain shapes
            if fast is not None:
                return fast
            try:
                return self.header_factory(name, _unusable_charsets_unknown(cut))  # type: ignore[no-any-return]
            except HEADER_ERRORS + (UnicodeError, RecursionError) as exc:
                why = "header %s unreadable by the parser (%s: %s): kept as raw text" % (
                    name, type(exc).__name__, clean(str(exc))[:80])
        budget.note(why)
        return RawHeader(name, text if cut is None else cut, why)


#: Content-Type / Content-Disposition values the header registry reads without defect into a
#: text :py:func:`_plain_text` gives as well: ASCII tokens, ``name=token`` or ``name="plain
#: text"`` parameters, blanks; no comment, escape, apostrophe, encoded-word or RFC 2231 ``*``
#: (``tests/unit/test_plain_headers.py`` checks them against the registry)
_TOKEN = r"[A-Za-z0-9!#$%&+.^_`|~-]+"
_PLAIN_PARAM = r"[ \t]*;[ \t]*([A-Za-z0-9_.-]+)=(?:(%s)|\"([ \t!#-&(-\[\]-~]*)\")" % _TOKEN
_PLAIN_PARAMS = re.compile(_PLAIN_PARAM)
_PLAIN_PARAMETERIZED = {
    "content-type": re.compile(r"[ \t]*%s/%s(?:%s)*[ \t]*" % (_TOKEN, _TOKEN, _PLAIN_PARAM)),
    "content-disposition": re.compile(r"[ \t]*%s(?:%s)*[ \t]*" % (_TOKEN, _PLAIN_PARAM)),
}


def _plain_text(value: str) -> str | None:
    """The text the header registry makes of a :py:data:`_PLAIN_PARAMETERIZED` *value*: what
    comes before the first ``;`` as it is, then each parameter as ``name="value"`` (``name``
    alone when empty), joined by ``; ``.  None when a parameter name comes twice (the registry
    has its own rule for that)."""
    semicolon = value.find(";")
    if semicolon < 0:
        return value
    found = _PLAIN_PARAMS.findall(value, semicolon)
    if len({name.lower() for name, _token, _quoted in found}) != len(found):
        return None
    params = ["%s=\"%s\"" % (name, token or quoted) if token or quoted else name for name, token, quoted in found]
    return value[:semicolon + 1] + " " + "; ".join(params)


class _PlainParameterized(PlainHeader):
    """A Content-Type/-Disposition header read as :py:func:`_plain_text` says (the standard
    library takes type, disposition and parameters from that text), without the header
    registry's parse (50 µs a header, a quarter of the decode), which is made only if
    something asks for more (``params``, ``content_type``, ``fold``...)."""

    @property
    def content_disposition(self) -> object:
        """What ``is_attachment()`` asks (for every part ``get_body()`` looks at): the first token."""
        if self.name.lower() != "content-disposition":
            return self.__getattr__("content_disposition")
        return self.split(";", 1)[0].strip().lower()

    def param(self, param: str, failobj: object = None, unquote: bool = True) -> object:
        """``Message.get_param(param, failobj, header, unquote)`` of a message whose *header*
        is this one: the first item (the type or disposition) answers ``""``, a parameter its
        value (``unquote=False``: in double quotes, as ``email.utils.decode_params`` leaves it),
        any other name *failobj*.  The parameters are read once per header object, which the
        policy shares between the parts and messages with the same value."""
        params = self.__dict__.get("_params")
        if params is None:
            params = self.__dict__["_params"] = _plain_params(self._source)
        value = params.get(param.lower())
        if value is None:
            return failobj
        first, text = value
        return text if unquote or first else '"%s"' % text

    def file_name(self, param: str) -> str | None:
        """What ``Message.get_filename`` makes of parameter *param* of this header (its value
        without the quotes or angle brackets ``email.utils.collapse_rfc2231_value`` takes off,
        and without blanks at either end); None when the header has no such parameter."""
        names = self.__dict__.get("_file_names")
        if names is None:
            names = self.__dict__["_file_names"] = {}
        found = names.get(param, _ABSENT)
        if found is _ABSENT:
            value = self.param(param)
            found = names[param] = None if value is None else _email_utils.collapse_rfc2231_value(str(value)).strip()
        return found  # type: ignore[return-value]

    def __reduce__(self) -> tuple[object, ...]:  # copy and pickle: the factory is POLICY's
        return _plain_parameterized, (self.name, self._source, str(self))


def _plain_params(value: str) -> dict[str, tuple[bool, str]]:
    """The items the standard library's parameter split (``Message._get_params_preserve``)
    makes of the header text :py:func:`_plain_text` gives for *value*, by lower-cased name,
    the first of a name kept (as ``get_param`` finds it): the first item (before any ``;``)
    as ``(True, "")``, each parameter as ``(False, its value)`` (a token, or a quoted string's
    content, which holds no backslash or double quote)."""
    semicolon = value.find(";")
    params = {(value if semicolon < 0 else value[:semicolon]).strip().lower(): (True, "")}
    if semicolon >= 0:
        for name, token, quoted in _PLAIN_PARAMS.findall(value, semicolon):
            params.setdefault(name.lower(), (False, token or quoted))
    return params


def _plain_parameterized(name: str, source: str, text: str) -> _PlainParameterized:
    return _PlainParameterized(name, source, text, POLICY.header_factory)


def _unusable_charsets_unknown(text: str) -> str:
    """*text* with the charset of each encoded-word that names no mail text codec (``hex``,
    ``unicode_escape``, ``punycode``...) replaced by ``unknown-8bit``, before the standard library
    decodes the words itself: some of those codecs fail outside their contract or warn (a
    ``DeprecationWarning`` for an invalid escape), and none of them is a mail charset.  The
    standard library reads ``unknown-8bit`` as an unknown charset, with a defect."""
    if "=?" not in text:
        return text
    return _ENCODED_WORD.sub(
        lambda word: word.group(0) if text_codec(word.group(1))
        else "=?unknown-8bit?%s?%s?=" % (word.group(2), word.group(3)), text)


#: the charset of an RFC 2231 value at the start of a parameter (``name*=cs'..``, ``name*0*=cs'..``)
_RFC2231_CHARSET = re.compile(r"""\s*[^\s=*;]+\*(?:0\*)?[ \t]*=[ \t]*"?([^'";]*)'""")


def _note_unusable_charsets(name: str, text: str, budget: HeaderBudget) -> None:
    """Note the charsets of encoded-words and RFC 2231 values in header *name* that name no text
    codec (``hex``, ``undefined``, a NUL or 8-bit byte ...): their bytes are decoded as for
    unlabelled text (:py:func:`guess_decode`), never with that codec.  Linear in *text*."""
    found: list[str] = []
    if "=?" in text:
        found += [m.group(1) for m in _ENCODED_WORD.finditer(text) if not text_codec(m.group(1))]
    if "'" in text and name.lower() in _PARAMETERIZED:
        for item in _items(text, ";", MAX_PARAMS + 1):
            charset = _RFC2231_CHARSET.match(item.group())
            if charset and charset.group(1).strip() and not text_codec(charset.group(1)):
                found.append(charset.group(1))
    if found:
        shown = sorted({repr(clean(c)[:40]) for c in found})
        budget.note("header %s: charset %s is no text charset: its bytes are decoded as unlabelled text"
                    % (name, ", ".join(shown[:5])))


def message_policy() -> BoundedPolicy:
    """A policy for parsing one message: :py:data:`POLICY` with a fresh :py:class:`HeaderBudget`
    (or the budget of the decode in progress, see :py:func:`active_budget`)."""
    return POLICY.clone(budget=_ACTIVE_BUDGET.get() or HeaderBudget())  # type: ignore[call-arg]


class active_budget:  # a context manager, named like contextlib's
    """``with active_budget() as budget:`` every message parsed inside shares *budget* (an
    attached message re-parsed from its bytes counts against the enclosing decode)."""

    def __enter__(self) -> HeaderBudget:
        self.budget = HeaderBudget()
        self.token = _ACTIVE_BUDGET.set(self.budget)
        return self.budget

    def __exit__(self, *exc: object) -> None:
        _ACTIVE_BUDGET.reset(self.token)


#: Longest header value shared between messages, and all of them together (characters): the
#: parse tree of a header takes up to ~500 bytes per character.
SHARED_CACHE_VALUE = 512
SHARED_CACHE_CHARS = 32 * 1024
_SHARED = _SharedCache(SHARED_CACHE_CHARS)
POLICY = BoundedPolicy(header_factory=_Registry())
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
#: one parameter or address: characters up to the separator, quoted strings kept whole
_ITEM = {sep: re.compile(r'(?:[^%s"\\]+|\\.|"(?:[^"\\]+|\\.)*"?)*' % sep, re.S) for sep in ";,"}
_CONTINUED = re.compile(r"\s*([^\s=*]+)\*(\d+)?\*?\s*=")


def _unfold(value: str) -> str:
    return _LINE_BREAK.sub("", value)


def _items(text: str, sep: str, limit: int, endpos: int | None = None) -> Iterator[re.Match[str]]:
    """The first *limit* ``sep``-separated items of *text* (quote-aware), lazily, reading no
    further than *endpos* (the regex engine's memory grows with the length it matches)."""
    pattern = _ITEM[sep]
    end = len(text) if endpos is None else min(endpos, len(text))
    pos = 0
    for _ in range(limit):
        match = pattern.match(text, pos, end)
        assert match is not None  # the pattern matches the empty string
        yield match
        pos = match.end() + 1
        if pos > end:
            return


def _first_items(name: str, text: str, sep: str, limit: int, what: str, budget: HeaderBudget,
                 longest: int = MAX_PARSED_HEADER) -> str | None:
    """*text* cut after its *limit*-th item, or at the last item that ends within
    :py:data:`MAX_PARSED_HEADER` characters, or before the first item over *longest*
    characters (a defect is noted when anything is cut); None when that is the first item."""
    if len(text) <= min(MAX_PARSED_HEADER, longest) and text.count(sep) < limit:
        return text
    window = MAX_PARSED_HEADER + 1
    end = 0
    for match in _items(text, sep, limit, window):
        over = match.end() == window < len(text)  # goes on past what is read
        if over or match.end() - match.start() > longest:
            if not end:
                return None
            break
        end = match.end()
    if end < len(text):
        budget.note("header %s: only the first %d characters parsed (%s cut at %d, or at %d characters)"
                    % (name, end, what, limit, MAX_PARSED_HEADER))
    return text[:end]


def _params_cleaned(name: str, text: str, budget: HeaderBudget) -> str:
    """Content-Type/-Disposition with at most :py:data:`MAX_PARAMS` parameters, and without the
    numbered continuations of a parameter also given whole (``name*=`` plus ``name*1*=``),
    which the standard library cannot combine."""
    text = _first_items(name, text, ";", MAX_PARAMS + 1, "parameters", budget) or text
    if "*" not in text or len(text) > MAX_PARSED_HEADER:  # a longer one is kept raw anyway
        return text
    items = [m.group() for m in _items(text, ";", MAX_PARAMS + 1)]
    whole: set[str] = set()
    numbered: set[str] = set()
    for item in items[1:]:
        found = _CONTINUED.match(item)
        if found:
            (numbered if found.group(2) else whole).add(found.group(1).lower())
    mixed = whole & numbered
    if not mixed:
        return text
    budget.note("header %s: parameter %s given both whole and in numbered parts; the parts are ignored"
                % (name, ", ".join(sorted(mixed))))
    kept = [items[0]] + [item for item in items[1:]
                         if not ((found := _CONTINUED.match(item)) and found.group(2)
                                 and found.group(1).lower() in mixed)]
    return ";".join(kept)


class _RawPolicy(Compat32):
    """compat32 without its replacement of undecodable bytes: parameters keep their raw bytes."""

    def header_fetch_parse(self, name: str, value: str) -> str:
        return value


_RAW = _RawPolicy()
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
#: An RFC 2047 encoded-word.  Unlike ``email.header.ecre`` the encoded text may hold at most 3
#: stray ``?``: a failed match never scans far, so splitting is linear in the header's length.
_ENCODED_WORD = re.compile(r"=\?([^?]*)\?([qQbB])\?([^?]*(?:\?(?!=)[^?]*){0,3})\?=")


def looks_broken(text: str) -> bool:
    """True when a decoded header still shows undecoded bytes, escapes or encoded-words."""
    if text.isascii():  # no U+FFFD, no surrogate
        return "\x1b" in text or ("=?" in text and "?=" in text)
    return ("\ufffd" in text or "\x1b" in text or ("=?" in text and "?=" in text)
            or _SURROGATE.search(text) is not None)


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


def encoded_words(text: str) -> list[tuple[bytes, str | None]]:
    """*text* (a header, one character per byte) as (bytes, charset) chunks: like
    :py:func:`email.header.decode_header`, but linear in the length of *text* (that one is
    quadratic in the number of encoded-words) and never raising (an encoded-word whose base64
    does not decode stays as it is).  Blanks between adjacent encoded-words are dropped;
    adjacent chunks of one charset are joined."""
    chunks: list[tuple[list[bytes], str | None]] = []

    def add(data: bytes, charset: str | None) -> None:
        if chunks and chunks[-1][1] == charset:
            chunks[-1][0].append(data)
        else:
            chunks.append(([data], charset))

    pos, last_encoded = 0, False
    for match in _ENCODED_WORD.finditer(text):
        between = text[pos:match.start()]
        charset, kind, payload = match.groups()
        data = _word_bytes(kind.lower(), payload)
        if data is None:  # not decodable: keep the word as text
            add((between + match.group()).encode("latin-1", "replace"), None)
            last_encoded = False
        else:
            if between and not (last_encoded and between.isspace()):
                add(between.encode("latin-1", "replace"), None)
            add(data, charset.lower() or None)
            last_encoded = True
        pos = match.end()
    if pos < len(text):
        add(text[pos:].encode("latin-1", "replace"), None)
    return [(b"".join(parts), charset) for parts, charset in chunks]


def _word_bytes(kind: str, payload: str) -> bytes | None:
    if kind == "q":  # binascii, not email.quoprimime: that one compiles a regex on every call
        return binascii.a2b_qp(payload.encode("latin-1", "replace"), header=True)
    data = payload.encode("ascii", "replace")
    try:
        return binascii.a2b_base64(data + b"=" * (-len(data) % 4))  # Postel: add missing padding
    except binascii.Error:
        try:
            return binascii.a2b_base64(data[:len(data) // 4 * 4])
        except binascii.Error:
            return None


def decode_raw(data: bytes, hints: Iterable[str] = (), declared: str | None = None) -> str:
    """Decode raw header bytes that may mix encoded-words and unlabelled 8-bit text.

    :param data: the header (or parameter) value as it appeared in the source.
    :param hints: charsets declared elsewhere in the message, most likely first.
    :param declared: the charset the sender declared for this value (RFC 2231), if any.
    """
    hints = list(hints)
    chunks: list[tuple[bytes, str | None]] = [(data, declared)]
    if b"=?" in data:
        chunks = [(chunk, charset or declared) for chunk, charset in encoded_words(data.decode("latin-1"))]
    return "".join(guess_decode(chunk, charset, hints) for chunk, charset in chunks)


def guess_decode(data: bytes, declared: str | None = None, hints: Iterable[str] = ()) -> str:
    """Decode *data*: with the first candidate charset that decodes it strictly; when a
    (non-ASCII) charset was declared and nothing fits, with that charset and replacement
    characters.  The result holds no lone surrogates."""
    if data.isascii() and b"\x1b" not in data and _ascii_compatible(text_codec(declared)):
        return data.decode("ascii")
    for charset in candidates(data, declared, hints):
        try:
            return _decode(data, charset)
        except UnicodeDecodeError as exc:
            if (charset == "utf-8" and exc.reason == "unexpected end of data"
                    and not data[:exc.start].isascii()):
                return _decode(data, charset, "replace")  # UTF-8 cut short by a length limit
    if data.isascii() and b"\x1b" not in data:
        return data.decode("ascii")  # ASCII that a declared UTF-7/UTF-16 ... does not decode
    return _decode(data, text_codec(declared) or "latin-1", "replace")


def candidates(data: bytes, declared: str | None = None, hints: Iterable[str] = ()) -> list[str]:
    """Charsets to try for *data*, best first (Python codec names, no duplicates).

    A declared charset is trusted (after UTF-8 when it is a single-byte one, and with its
    usual mislabellings, e.g. Shift_JIS declared as ISO-2022-JP); guesses from the rest of the
    message and a CJK/Western default apply only to undeclared (or "us-ascii") bytes.  A
    declared name that is no text codec counts as undeclared.
    """
    out: list[str] = []

    def add(name: str | None) -> None:
        codec = text_codec(name)
        if codec and codec not in out:
            out.append(codec)
            for related in _RELATED.get(codec, ()):
                add(related)

    if b"\x1b" in data:
        add("iso-2022-jp")
    codec = text_codec(declared)
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


# -- parsed messages ---------------------------------------------------------------------------
def part_info(part: Message, hints: Sequence[str],
              defects: list[str]) -> tuple[str | None, str | None, str | None]:
    """(original file name, disposition, Content-ID) of *part*; the name is the
    Content-Disposition filename, else the Content-Type name, else None."""
    try:
        name = part.get_filename()
    except HEADER_ERRORS as exc:
        defects.append("file name unreadable by the parser: %s" % clean(str(exc))[:100])
        name = None
    if name is None or looks_broken(name):
        try:
            fallback = _raw_filename(part, hints)
        except HEADER_ERRORS as exc:
            defects.append("file name unreadable in the raw header: %s" % clean(str(exc))[:100])
            fallback = None
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
    name = clean(name).strip() if name else None
    return name or None, clean(disposition) if disposition else None, clean(cid) if cid else None


def _raw_filename(part: Message, hints: Sequence[str]) -> str | None:
    """Re-read filename/name from the raw headers with the compat32 parameter parser."""
    for header, param in (("content-disposition", "filename"), ("content-type", "name")):
        parsed = part.get(header)
        value: object
        if type(parsed) is _PlainParameterized:
            # read from the same raw header cleaned the same way (_parse): the parameter the
            # compat32 parser below would find, without reading the header again
            value = parsed.param(param)
        else:
            raw = raw_header(part, header)
            if raw is None or "name" not in raw.lower():  # no (file)name parameter to find
                continue
            scratch = _RawMessage(policy=_RAW)
            scratch[header] = _params_cleaned(header, _unfold(raw), HeaderBudget())
            value = scratch.get_param(param, None, header)
        if isinstance(value, tuple):  # RFC 2231: (charset, language, %-decoded text as Latin-1)
            charset, _lang, text = value
            try:
                data = text.encode("latin-1", "surrogateescape")
            except UnicodeEncodeError:
                data = to_bytes(text)
            return decode_raw(data, hints, declared=charset or None)
        if isinstance(value, str) and value:
            return decode_raw(to_bytes(value), hints)
    return None


def header_text(msg: Message, name: str, hints: Sequence[str], defects: list[str]) -> str | None:
    """The decoded, unfolded value of header *name*, or None."""
    try:
        value = msg.get(name)
        text = None if value is None else str(value)
        if isinstance(value, RawHeader):
            text = None  # not decoded: decode the source below
    except HEADER_ERRORS as exc:
        defects.append("header %s unreadable by the parser: %s" % (name, clean(str(exc))[:100]))
        text = None
    if text is None or looks_broken(text):
        raw = raw_header(msg, name)
        if raw is not None:
            text = decode_raw(to_bytes(raw), hints)
    return clean(" ".join(text.split())) if text else None


def addresses(msg: Message, name: str, hints: Sequence[str], defects: list[str]) -> tuple[str, ...]:
    """The addresses in header *name* as ``Display Name <user@host>`` strings."""
    try:
        header = msg.get(name)
        if header is None:
            return ()
        found = getattr(header, "addresses", None)
        if found and not looks_broken(str(header)):
            return tuple(clean(str(a)) for a in found)
    except HEADER_ERRORS as exc:
        defects.append("header %s unreadable by the parser: %s" % (name, clean(str(exc))[:100]))
    text = header_text(msg, name, hints, defects)
    return (text,) if text else ()


def date_iso(msg: Message, defects: list[str]) -> str | None:
    """The Date header in ISO 8601, or None (a defect is noted when it does not parse)."""
    try:
        header = msg.get("date")
        stamp = getattr(header, "datetime", None)
        iso = stamp.isoformat() if stamp is not None else None
    except HEADER_ERRORS as exc:
        defects.append("header date unreadable: %s" % clean(str(exc))[:100])
        return None
    if header is not None and iso is None:
        defects.append("header date is not an RFC 5322 date: %r" % clean(str(header))[:80])
    return iso
