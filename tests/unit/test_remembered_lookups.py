"""Header look-ups remembered per message (mime/lookups.py), and parameter splits shared between
messages (mime/headers.py), answer what the standard library's look-ups answer, before and after
every way the standard library changes headers."""
from __future__ import annotations

import copy
from email.message import EmailMessage, Message

from hypothesis import given, settings
from hypothesis import strategies as st

from mailingest.mime import headers
from mailingest.mime.parse import parse
from tests.fuzz import generators
from tests.unit.test_fastparse import _corpus

NAMES = ("content-type", "Content-Type", "CONTENT-TYPE", "content-disposition", "from", "to", "subject",
         "x-absent", "received")
PARAMS = ("charset", "name", "boundary", "filename", "format", "absent")


def plain_answers(msg: Message) -> list[object]:
    """The standard library's own answers, bypassing every memo."""
    out: list[object] = [Message.get(msg, name, "-") for name in NAMES]
    out += [Message.get_content_type(msg), msg.get_all("received")]
    for header in ("content-type", "content-disposition"):
        try:
            out.append(Message._get_params_preserve(msg, "-", header))  # the split itself, not shared
        except headers.HEADER_ERRORS:
            out.append("!")
        for param in PARAMS:
            for unquote in (True, False):
                try:
                    out.append(headers._safe_rfc2231(EmailMessage.get_param(msg, param, "-", header, unquote)))
                except headers.HEADER_ERRORS:
                    out.append("-")  # what the hardened accessor turns a failure into
    return out


def remembered_answers(msg: Message) -> list[object]:
    out: list[object] = [msg.get(name, "-") for name in NAMES]
    out += [msg.get_content_type(), msg.get_all("received")]
    for header in ("content-type", "content-disposition"):
        try:
            out.append(msg._get_params_preserve("-", header))  # split once per value, shared
        except headers.HEADER_ERRORS:
            out.append("!")
        for param in PARAMS:
            for unquote in (True, False):
                out.append(msg.get_param(param, "-", header, unquote))
    return out


def assert_same_answers(msg: Message) -> None:
    for _ in range(2):  # the second time from the memos
        for part in msg.walk():
            assert remembered_answers(part) == plain_answers(part)


def test_every_corpus_part_answers_as_the_standard_library() -> None:
    for path in _corpus():
        with headers.active_budget():
            assert_same_answers(parse(path.read_bytes()))


@settings(max_examples=150, deadline=None)
@given(raw=generators.entities())
def test_generated_messages_answer_as_the_standard_library(raw: bytes) -> None:
    with headers.active_budget():
        assert_same_answers(parse(raw))


@settings(max_examples=100, deadline=None)
@given(raw=generators.hostile_message())
def test_hostile_messages_answer_as_the_standard_library(raw: bytes) -> None:
    with headers.active_budget():
        assert_same_answers(parse(raw))


def _change(msg: EmailMessage, how: str, value: str) -> None:
    try:
        if how == "append":
            msg["Content-Type"] = "text/%s; charset=%s" % (value, value)
        elif how == "set_raw":
            msg.set_raw("content-disposition", "attachment; filename=%s" % value)
        elif how == "delete":
            del msg["content-type"]
        elif how == "replace":
            msg.replace_header("Content-Type", "application/%s; name=%s" % (value, value))
        elif how == "set_param":
            msg.set_param("charset", value)
        elif how == "del_param":
            msg.del_param("charset")
        elif how == "set_type":
            msg.set_type("text/%s" % value)
        elif how == "default_type":
            msg.set_default_type("message/rfc822" if value == "x" else "text/plain")
        elif how == "make_mixed":
            msg.make_mixed()
    except (KeyError, ValueError, TypeError):
        pass  # e.g. replace_header of a header that is not there, make_mixed of a multipart


@settings(max_examples=200, deadline=None)
@given(changes=st.lists(st.tuples(st.sampled_from(["append", "set_raw", "delete", "replace", "set_param",
                                                   "del_param", "set_type", "default_type", "make_mixed"]),
                                  st.sampled_from(["x", "plain", "html"])), max_size=8))
def test_every_change_of_the_headers_is_seen_by_the_next_look_up(changes: list[tuple[str, str]]) -> None:
    with headers.active_budget():
        msg = parse(b"Content-Type: text/plain; charset=us-ascii\nContent-Type: text/html\nSubject: s\n\nbody\n")
        assert_same_answers(msg)
        for how, value in changes:
            _change(msg, how, value)
            assert_same_answers(msg)


def test_copies_leave_the_memos_behind() -> None:
    with headers.active_budget():
        msg = parse(b"Content-Type: text/plain; charset=koi8-r\n\nx\n")
        assert msg.get_content_charset() == "koi8-r"
        assert msg.__getstate__().keys().isdisjoint({"_get_memo", "_type_memo", "_param_memo"})  # pickles too
        for other in (copy.copy(msg), copy.deepcopy(msg)):
            assert not {"_get_memo", "_type_memo", "_param_memo"} & set(vars(other))
            assert other.get_content_charset() == "koi8-r"
