"""Header lookups of a parsed message, each made once until the headers change.

The decoder asks a part for the same headers many times: its Content-Type for the type, the
main type, the charset, the name, the boundary (the parser, the charset hints of every message
level above it, ``get_body``, the walk), its Content-Disposition for ``is_attachment`` and the
file name.  ``Message.get`` scans every header of the part, lower-casing each name, and then
asks the policy for the header object (a cache look-up keyed by the whole value): 57,000 calls
and a fifth of the decode over the corpus.  :py:class:`RememberedLookups` answers a repeated
``get`` (and so ``[]``, ``get_param``, ``get_content_type``, ``get_content_charset``,
``get_filename``...) from a memo per message, and ``get_content_type`` and ``get_param`` from
memos of their own, kept with the header object they were read from.

A remembered answer is used only while the header list is the same list object, of the same
length, with the same entry at the position found, under the same policy: the standard
library changes headers only by appending (``set_raw``, ``[]=``, ``add_header``), by replacing
the first entry of a name in place (``replace_header``, ``set_param``) or by building a new
list (``del``, ``make_mixed``...), and each of these fails one of the checks.  The values are
the ones ``Message.get`` returns (the same objects); copies and pickles leave the memo behind.
"""
from __future__ import annotations

from email import utils
from email.message import Message
from typing import Any

_GET_MEMO = "_get_memo"
_TYPE_MEMO = "_type_memo"
_PARAM_MEMO = "_param_memo"
#: the memos that copies and pickles leave behind (the message class's ``__getstate__``)
MEMOS = (_GET_MEMO, _TYPE_MEMO, _PARAM_MEMO)
_MISSING = object()


class RememberedLookups(Message):
    """A mixin for a :py:class:`email.message.Message` class: ``get``, ``get_content_type`` and
    ``get_param`` remembered per message while its headers stay as they are."""

    def get(self, name: str, failobj: Any = None) -> Any:
        headers = self._headers  # type: ignore[attr-defined]
        policy = self.policy
        memo = self.__dict__.get(_GET_MEMO)
        # one check of the list, its length and the policy for every name remembered
        if memo is None or memo[0] is not headers or memo[1] != len(headers) or memo[2] is not policy:
            memo = self.__dict__[_GET_MEMO] = (headers, len(headers), policy, {}, _first_positions(headers))
        else:
            known = memo[3].get(name)
            if known is not None:
                position, entry, value = known
                if position < 0:
                    return failobj
                if headers[position] is entry:
                    return value
        names: dict[str, tuple[int, Any, Any]] = memo[3]
        position = memo[4].get(name.lower(), -1)
        if position < 0:
            names[name] = (-1, None, None)
            return failobj
        entry = headers[position]
        value = policy.header_fetch_parse(*entry)
        names[name] = (position, entry, value)
        return value

    def get_content_type(self) -> str:
        """``Message.get_content_type``: the type before the first ``;``, lower-cased, when it
        has one ``/``; ``text/plain`` when not; the default type without the header."""
        value = self.get("content-type", _MISSING)
        if value is _MISSING:
            return self.get_default_type()
        known = self.__dict__.get(_TYPE_MEMO)
        if known is not None and known[0] is value:
            return known[1]  # type: ignore[no-any-return]
        ctype = str(value).partition(";")[0].strip().lower()
        if ctype.count("/") != 1:
            ctype = "text/plain"
        self.__dict__[_TYPE_MEMO] = (value, ctype)
        return ctype

    def get_param(self, param: str, failobj: Any = None, header: str = "content-type",
                  unquote: bool = True) -> Any:
        """``Message.get_param``, the parameters split once per header object."""
        value = self.get(header, _MISSING)
        if value is _MISSING:
            return failobj
        memo = self.__dict__.get(_PARAM_MEMO)
        if memo is None:
            memo = self.__dict__[_PARAM_MEMO] = {}
        key = (header, param, unquote)  # as asked: another spelling is remembered apart
        known = memo.get(key)
        if known is not None and known[0] is value:
            found = known[1]
        else:
            found = _MISSING
            wanted = param.lower()
            for name, text in self._get_params_preserve(failobj, header):  # type: ignore[attr-defined]
                if name.lower() == wanted:
                    found = _unquoted(text) if unquote else text
                    break
            memo[key] = (value, found)
        return failobj if found is _MISSING else found


def _first_positions(headers: list[tuple[str, str]]) -> dict[str, int]:
    """Each lower-cased header name -> the position of its first entry: one pass over the
    list for every name asked of it (the first look-up of a name scanned the list)."""
    positions: dict[str, int] = {}
    for position, entry in enumerate(headers):
        lower = entry[0].lower()
        if lower not in positions:
            positions[lower] = position
    return positions


def _unquoted(value: Any) -> Any:
    """``email.message._unquotevalue``: an RFC 2231 value stays a (charset, language, text) tuple."""
    if isinstance(value, tuple):
        return value[0], value[1], utils.unquote(value[2])
    return utils.unquote(value)
