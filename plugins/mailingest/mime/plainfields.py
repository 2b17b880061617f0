"""From, To, Cc, Date, Subject and Message-ID (and each part's Content-ID) in their plain shapes,
read without the header registry's parse tree.

The decoder reads six summary headers of every message and attached message.  The standard
library's header registry builds a full parse tree for each (its tokenizer is pure Python):
about a tenth of the decode of the corpus.  For the shapes most mail has, the registry's
result follows from the text alone:

* an address list of mailboxes ``local@domain``, ``<local@domain>``, ``Words <local@domain>``
  or ``"quoted words" <local@domain>`` (ASCII; dot-atoms; no comment, group, escape, route,
  domain literal, obsolete dot in a phrase, or encoded-word): the registry's addresses are
  ``Address(display name, local part, domain)`` (a phrase's words joined by one space, a quoted
  string's content as it is) and its text their ``str`` joined by ``", "``;
* a Date: the registry's ``datetime`` is ``email.utils.parsedate_to_datetime`` of the text and
  its text ``email.utils.format_datetime`` of that; only the parse tree of that text is skipped;
* a Subject or Content-ID of printable ASCII and blanks without ``=?``, and a Message-ID
  ``<dot-atom@dot-atom>`` between blanks: the registry's text is the value itself.

Anything else gets the registry's parse (:py:func:`plain_header` returns None).  The object
returned is the text with the attributes the decoder reads (``addresses``, ``datetime``,
``defects``, ``name``); anything else (``groups``, ``fold``...) is taken from the registry's
parse, made then.  ``tests/unit/test_plain_fields.py`` holds every such header of the corpus,
generated and hostile ones against the registry.  The patterns use possessive quantifiers
only, so a value is matched in time linear in its length.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from email import utils
from email.errors import HeaderDefect
from email.headerregistry import Address, HeaderRegistry
from typing import Any

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM = r"%s++(?:\.%s++)*+" % (_ATEXT, _ATEXT)
_BLANKS = r"[ \t]*+"
#: one mailbox at a position of an address list: a display name and <addr>, or addr alone
_MAILBOX = re.compile(
    r"%s(?:(?:(?P<words>%s++(?:[ \t]++%s++)*+)%s|\"(?P<quoted>[ \t!#-\[\]-~]++)\"%s)?+"
    r"<(?P<angle_local>%s)@(?P<angle_domain>%s)>|(?P<local>%s)@(?P<domain>%s))%s"
    % (_BLANKS, _ATEXT, _ATEXT, _BLANKS, _BLANKS, _DOT_ATOM, _DOT_ATOM, _DOT_ATOM, _DOT_ATOM, _BLANKS))
_MESSAGE_ID = re.compile(r"%s<%s@%s>%s" % (_BLANKS, _DOT_ATOM, _DOT_ATOM, _BLANKS))
_PRINTABLE = re.compile(r"[ \t!-~]*+")
_WORD_BREAKS = re.compile(r"[ \t]++")

_ADDRESSES = frozenset({"from", "to", "cc"})
#: headers the registry reads as unstructured text (Content-ID has no class of its own there)
_UNSTRUCTURED = frozenset({"subject", "content-id"})


class PlainHeader(str):
    """A header read from its text alone; what the text does not give comes from the
    registry's parse (made when first asked for)."""

    defects: tuple[HeaderDefect, ...] = ()
    name: str
    _source: str
    _factory: Callable[[str, str], object]

    def __new__(cls, name: str, source: str, text: str, factory: Callable[[str, str], object]) -> PlainHeader:
        self = super().__new__(cls, text)
        self.name = name
        self._source = source
        self._factory = factory
        return self

    def __reduce__(self) -> tuple[object, ...]:  # copies and pickles: read again from the source
        return _read_again, (self.name, self._source)

    def __getattr__(self, attr: str) -> object:  # only for what the text alone does not give
        if attr.startswith("__") or attr in ("_factory", "_parsed", "_source"):
            raise AttributeError(attr)
        parsed = self.__dict__.get("_parsed")
        if parsed is None:
            parsed = self.__dict__["_parsed"] = self._factory(self.name, self._source)
        return getattr(parsed, attr)


class _PlainAddresses(PlainHeader):
    addresses: tuple[Address, ...]


class _PlainDate(PlainHeader):
    datetime: Any


def plain_header(name: str, value: str, factory: Callable[[str, str], object]) -> PlainHeader | None:
    """*value* (unfolded) of header *name* read as the header registry would read it, when it
    has one of the plain shapes; else None (the caller asks the registry)."""
    lower = name.lower()
    if lower in _ADDRESSES:
        return _addresses(name, value, factory)
    if lower == "date":
        return _date(name, value, factory)
    if "=?" in value or not _PRINTABLE.fullmatch(value):
        return None
    if lower in _UNSTRUCTURED or (lower == "message-id" and _MESSAGE_ID.fullmatch(value)):
        return PlainHeader(name, value, value, factory)
    return None


def _addresses(name: str, value: str, factory: Callable[[str, str], object]) -> PlainHeader | None:
    if "=?" in value:
        return None
    found: list[Address] = []
    pos, end = 0, len(value)
    while True:
        match = _MAILBOX.match(value, pos)
        if match is None:
            return None
        words, quoted, local, domain = match.group("words", "quoted", "angle_local", "angle_domain")
        if local is None:
            local, domain = match.group("local", "domain")
        display = quoted if quoted is not None else " ".join(_WORD_BREAKS.split(words)) if words else ""
        found.append(Address(display, local, domain))
        pos = match.end()
        if pos == end:
            break
        if value[pos] != ",":
            return None
        pos += 1
    header = _PlainAddresses(name, value, ", ".join(str(address) for address in found), factory)
    header.addresses = tuple(found)
    return header


def _date(name: str, value: str, factory: Callable[[str, str], object]) -> PlainHeader | None:
    if not value:
        return None
    try:
        stamp = utils.parsedate_to_datetime(value)
        text = utils.format_datetime(stamp)
    except Exception:  # noqa: BLE001 - whatever it is, the registry's parse meets it and decides
        return None
    header = _PlainDate(name, value, text, factory)
    header.datetime = stamp
    return header


_REGISTRY: list[HeaderRegistry] = []


def _read_again(name: str, source: str) -> object:
    if not _REGISTRY:
        _REGISTRY.append(HeaderRegistry())
    return plain_header(name, source, _REGISTRY[0]) or _REGISTRY[0](name, source)
