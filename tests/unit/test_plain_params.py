"""A part's parameters, disposition, file name, charset and boundary read from a Content-Type or
Content-Disposition of the plain shape (``headers._PlainParameterized.param``: the text alone,
read once per header value) are exactly what the standard library's accessors give over the
same header; every other value is left to those accessors.  And a header block whose lines all
start or continue a header is read by the fast parser in one piece, as the feed parser reads it."""
from __future__ import annotations

from email.message import EmailMessage, Message
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailingest.mime import headers
from mailingest.mime.parse import parse
from tests.unit.test_fastparse import assert_same_tree_or_irregular

CORPUS = Path("/work/shared/corpus/messages")
PARAMS = ("charset", "CharSet", "name", "filename", "boundary", "format", "absent", "", "x")


class StandardAccessors(EmailMessage):
    """The standard library's accessors with only the decoder's guards (the ones of
    ``headers._SafeParams``: no exception, no RFC 2231 charset that is no text codec, no
    boundary past ``MAX_BOUNDARY``): the reference."""

    def get_param(self, param, failobj=None, header="content-type", unquote=True):  # type: ignore[no-untyped-def]
        try:
            value = super().get_param(param, failobj, header, unquote)
        except headers.HEADER_ERRORS:
            return failobj
        return value if value is failobj else headers._safe_rfc2231(value)

    def get_content_charset(self, failobj=None):  # type: ignore[no-untyped-def]
        try:
            return super().get_content_charset(failobj)
        except headers.HEADER_ERRORS:
            return failobj

    def get_boundary(self, failobj=None):  # type: ignore[no-untyped-def]
        boundary = super().get_boundary(failobj)
        return failobj if isinstance(boundary, str) and len(boundary) > headers.MAX_BOUNDARY else boundary


def _asked(msg: Message) -> list[str]:
    """Parameter names worth asking: the usual ones, and each item's name as the header has it
    (the type or disposition itself among them)."""
    names = list(PARAMS)
    for header in ("content-type", "content-disposition"):
        for item in str(msg.get(header, "")).split(";")[:6]:
            name = item.split("=", 1)[0].strip()
            names += [name, name.upper()]
    return names


def answers(msg: Message, names: list[str]) -> list[object]:
    out: list[object] = []

    def ask(call):  # type: ignore[no-untyped-def]
        try:
            out.append(call())
        except headers.HEADER_ERRORS as exc:  # the same failure on both sides
            out.append(("raised", type(exc).__name__))

    for header in ("content-type", "content-disposition", "Content-Type"):
        for name in names:
            for unquote in (True, False):
                ask(lambda: msg.get_param(name, "-", header, unquote))
    for call in (msg.get_filename, msg.get_content_charset, msg.get_boundary, msg.get_content_disposition,
                 msg.get_content_type, msg.is_attachment, lambda: msg.get_params("-"),
                 lambda: msg.get_params("-", "content-disposition")):
        ask(call)
    return out


def assert_reads_as_the_standard_library(msg: Message) -> None:
    reference = StandardAccessors(policy=msg.policy)
    reference._headers = msg._headers  # type: ignore[attr-defined]  # the same header objects
    reference.set_default_type(msg.get_default_type())
    names = _asked(msg)
    for _ in range(2):  # the second time from what was remembered
        assert answers(msg, names) == answers(reference, names)


def message_with(content_type: str | None, disposition: str | None) -> Message:
    head = "".join("%s: %s\n" % (name, value) for name, value in
                   (("Content-Type", content_type), ("Content-Disposition", disposition)) if value is not None)
    with headers.active_budget():
        return parse(headers.to_bytes(head + "\nbody\n"))


@pytest.mark.parametrize("content_type, disposition", [
    ("text/plain", None),
    ("text/plain; charset=UTF-8", "attachment; filename=a.txt"),
    ('text/plain; charset="ISO-8859-1"; name="r\u00e9sum\u00e9.txt"', "inline"),  # 8-bit: the registry's way
    ('application/octet-stream; name="<a.bin>"', 'attachment; filename="<b.bin>"'),  # <> taken off by get_filename
    ('application/octet-stream; name=""', "attachment; filename="),
    ('text/plain; name="a;b=c.txt"', 'attachment; filename="  x y  "'),
    ("text/plain; text/plain=1", "attachment; attachment=x; ATTACHMENT=y"),  # the first item wins
    ("text/plain; Name=a; NAME=b", None),  # one name twice: the registry's rule
    ("multipart/mixed; boundary=\"--=_a b c \"", None),  # a boundary's blanks at the end go
    ("text/plain; charset=\"utf-8\" ; format=flowed  ", "attachment ;filename=\"q.txt\""),
    ("TEXT/PLAIN; CHARSET=KOI8-R", "ATTACHMENT; FILENAME=A.TXT"),
    ("text/plain; name*=utf-8''%e2%82%ac.txt", "attachment; filename*0=a; filename*1=b"),  # RFC 2231
    ('text/plain; name="=?utf-8?q?x?="', 'attachment; filename="a\\"b"'),  # encoded word, escape
    ("text/plain (comment); charset=us-ascii", "attachment; filename=a.txt (c)"),
    ("text/plain;", "attachment;;"),
    ("text", "attachment filename=x"),
    ("text/plain; charset=\"\"", None),
])
def test_hand_picked_values_read_as_the_standard_library(content_type, disposition):
    assert_reads_as_the_standard_library(message_with(content_type, disposition))


def test_a_plain_header_is_read_from_its_text() -> None:
    msg = message_with('text/plain; charset=utf-8; name="a b.txt"', 'attachment; filename="<c.txt>"')
    assert type(msg.get("content-type")) is headers._PlainParameterized
    assert type(msg.get("content-disposition")) is headers._PlainParameterized
    assert (msg.get_filename(), msg.get_content_charset(), msg.get_param("name")) == ("c.txt", "utf-8", "a b.txt")
    assert msg.get_param("name", unquote=False) == '"a b.txt"'
    assert msg.get_param("text/plain") == "" and msg.get_param("absent", 7) == 7


TOKEN = st.text("abcXYZ019!#$%&'+.^_`|~-", min_size=1, max_size=6)
QUOTED = st.text(" \tabc=?()<>@,;:/[]{}!#~'", max_size=8).map(lambda t: '"%s"' % t)
BLANKS = st.sampled_from(["", " ", "\t"])
NAMES = st.sampled_from(["name", "filename", "charset", "boundary", "Name", "FILENAME", "x-y", "a.b"])
PLAIN_PARAMS = st.lists(st.tuples(BLANKS, BLANKS, st.one_of(NAMES, TOKEN), st.one_of(TOKEN, QUOTED)),
                        max_size=4).map(lambda items: "".join("%s;%s%s=%s" % item for item in items))
#: pieces of hostile values: quotes, escapes, RFC 2231 stars and apostrophes, encoded words,
#: comments, 8-bit and control characters, separators where they do not belong
PIECES = st.sampled_from(["text/plain", "attachment", ";", "=", '"', "\\", "'", "*", "*0*", "*1", "(", ")",
                          "<", ">", " ", "\t", "name", "filename", "charset", "boundary", "utf-8", "=?utf-8?q?",
                          "?=", "%e2%82", "\u00e9", "\x00", "\x7f", ",", ":", "/", "a", "b.txt", "\n "])
HOSTILE = st.lists(PIECES, max_size=14).map("".join)


@settings(max_examples=300, deadline=None)
@given(lead=BLANKS, kind=TOKEN, sub=TOKEN, params=PLAIN_PARAMS, disposition=TOKEN, dparams=PLAIN_PARAMS)
def test_generated_plain_values_read_as_the_standard_library(lead, kind, sub, params, disposition, dparams):
    assert_reads_as_the_standard_library(message_with(lead + kind + "/" + sub + params, disposition + dparams))


@settings(max_examples=300, deadline=None)
@given(content_type=st.one_of(st.none(), HOSTILE), disposition=st.one_of(st.none(), HOSTILE))
def test_generated_hostile_values_read_as_the_standard_library(content_type, disposition):
    assert_reads_as_the_standard_library(message_with(content_type, disposition))


@settings(max_examples=300, deadline=None)
@given(lead=BLANKS, kind=TOKEN, sub=TOKEN, params=PLAIN_PARAMS, disposition=TOKEN, dparams=PLAIN_PARAMS)
def test_a_plain_headers_file_name_is_the_one_the_raw_header_gives(lead, kind, sub, params, disposition, dparams):
    """part_info's fallback reads (file)name of a plain header from the header object: what the
    compat32 parser finds in the raw header, cleaned the same way."""
    msg = message_with(lead + kind + "/" + sub + params, disposition + dparams)
    for header, param in (("content-disposition", "filename"), ("content-type", "name")):
        parsed = msg.get(header)
        if type(parsed) is not headers._PlainParameterized:
            continue
        scratch = headers._RawMessage(policy=headers._RAW)
        scratch[header] = headers._params_cleaned(header, headers._unfold(headers.raw_header(msg, header) or ""),
                                                  headers.HeaderBudget())
        assert parsed.param(param) == scratch.get_param(param, None, header)


@pytest.mark.skipif(not CORPUS.exists(), reason="the shared corpus is not on this machine")
def test_every_part_of_every_corpus_message_reads_as_the_standard_library() -> None:
    plain = 0
    for path in sorted(CORPUS.rglob("*.eml")):
        with headers.active_budget():
            for part in parse(path.read_bytes()).walk():
                assert_reads_as_the_standard_library(part)
                plain += type(part.get("content-type")) is headers._PlainParameterized
    assert plain > 1000


@pytest.mark.parametrize("head", [
    "A: 1\nB:\n\tcontinued\n C\n",
    "A: 1\r\nB: \t\r\n\tcontinued\r\n",
    "A:\nB:   \nC:x\n",
    "X-A: a: b: c\nX-B:\t\tv  \n",
    "A: 1\n   \nB: 2\n",  # a continuation of blanks only
    "A: 1\nB: 2",  # the last line without its line end (no body)
])
def test_header_blocks_read_in_one_piece_are_the_feed_parsers(head: str) -> None:
    for body in ("", "\nbody\n", "\r\nbody\r\n"):
        assert assert_same_tree_or_irregular((head + body).encode())


@settings(max_examples=300, deadline=None)
@given(text=st.text(st.sampled_from("a=?\x1b\ufffd\ud800\udcff\u00e9 ")) | st.text())
def test_ascii_text_is_cleaned_and_judged_as_by_the_regular_expressions(text: str) -> None:
    assert headers.clean(text) == headers._SURROGATE.sub("\ufffd", text)
    assert headers.looks_broken(text) == ("\ufffd" in text or "\x1b" in text or ("=?" in text and "?=" in text)
                                          or headers._SURROGATE.search(text) is not None)


@pytest.mark.parametrize("content_type, disposition", [
    ('text/plain; name="=?utf-8?q?a?="', "attachment"),  # one of the two left to the registry
    ("text/plain", 'attachment; filename="=?utf-8?q?b?="'),
    ("text/plain; name*=utf-8''c", "attachment; filename=d"),
    (None, "inline"), (None, None), ("text/plain; name=e", None),
])
def test_a_file_name_is_the_standard_librarys_whichever_header_is_plain(content_type, disposition):
    assert_reads_as_the_standard_library(message_with(content_type, disposition))
