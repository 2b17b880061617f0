"""From/To/Cc, Date, Subject and Message-ID values read without the header registry's parse tree
(mime/plainfields.py) give what the registry's header gives: the same text, addresses, date and
no defect; everything else is left to the registry, and no value costs more than linear time."""
from __future__ import annotations

import copy
import pickle
import time
from email.headerregistry import HeaderRegistry

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailingest.mime import headers
from mailingest.mime.parse import parse
from mailingest.mime.plainfields import PlainHeader, plain_header
from tests.unit.test_fastparse import _corpus

REGISTRY = HeaderRegistry()
NAMES = ("from", "to", "cc", "date", "subject", "message-id", "content-id")


def assert_same_reading(name: str, value: str) -> bool:
    """True when *value* was read without the registry; then it reads as the registry's does."""
    fast = plain_header(name, value, REGISTRY)
    if fast is None:
        return False
    full = REGISTRY(name, value)
    assert str(fast) == str(full)
    assert fast.defects == () and not full.defects
    assert fast.name == full.name
    if name in ("from", "to", "cc"):
        assert [(a.display_name, a.username, a.domain, str(a)) for a in fast.addresses] == [
            (a.display_name, a.username, a.domain, str(a)) for a in full.addresses]
        assert fast.groups == full.groups  # from the registry's parse, made when asked for
    if name == "date":
        assert fast.datetime == full.datetime
        assert fast.datetime.tzinfo == full.datetime.tzinfo
    return True


# -- generated values: plain shapes mixed with everything the fast path must leave alone --------
ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
ATOM = st.text(ATEXT, min_size=1, max_size=5)
NASTY = st.sampled_from(["(c)", "\\", '"', ".", "..", "[1.2.3.4]", "=?utf-8?q?x?=", ":", ";", "@", "<", ">", ",",
                         "é", "\x00", "\x7f", "group:", " ", "\t", ""])
BLANKS = st.sampled_from(["", " ", "\t", "  ", " \t "])
DOT_ATOM = st.lists(ATOM, min_size=1, max_size=3).map(".".join)
LOCAL = st.one_of(DOT_ATOM, DOT_ATOM.map(lambda t: t + "."), NASTY.map(lambda n: "a" + n))
DOMAIN = st.one_of(DOT_ATOM, NASTY.map(lambda n: "x" + n))
WORDS = st.lists(st.one_of(ATOM, NASTY), min_size=1, max_size=3).flatmap(
    lambda words: BLANKS.map(lambda blank: (blank or " ").join(words)))
QUOTED = st.text(" \tab,.;:<>()@[]!#~=?é\\\"", max_size=8).map(lambda t: '"%s"' % t)


@st.composite
def mailbox(draw: st.DrawFn) -> str:
    addr = "%s@%s" % (draw(LOCAL), draw(DOMAIN))
    display = draw(st.one_of(st.none(), WORDS, QUOTED))
    if display is None and draw(st.booleans()):
        return draw(BLANKS) + addr + draw(BLANKS)
    return "%s%s%s<%s>%s" % (draw(BLANKS), display or "", draw(BLANKS), addr, draw(BLANKS))


ADDRESS_LISTS = st.lists(st.one_of(mailbox(), NASTY), min_size=1, max_size=4).flatmap(
    lambda items: st.sampled_from([",", ", ", " ,", ";"]).map(lambda sep: sep.join(items)))


@settings(max_examples=1000, deadline=None)
@given(name=st.sampled_from(["from", "to", "cc"]), value=ADDRESS_LISTS)
def test_an_address_list_reads_as_the_registrys_or_is_left_to_it(name: str, value: str) -> None:
    assert_same_reading(name, value)


@settings(max_examples=300, deadline=None)
@given(value=st.lists(mailbox(), min_size=1, max_size=4).map(", ".join))
def test_plain_address_lists_are_read_without_the_registry_when_they_are_plain(value: str) -> None:
    assert_same_reading("to", value)


DAY = st.sampled_from(["", "Mon, ", "Tue,", "Fri , ", "Xyz, "])
ZONE = st.sampled_from(["+0000", "-0500", "GMT", "UT", "EST", "+1300", "-0000", "(CET)", "+0100 (CET)", "", "Z", "+05"])


@settings(max_examples=500, deadline=None)
@given(day=DAY, date=st.integers(0, 40), month=st.sampled_from(["Jan", "feb", "Dec", "Foo", "1"]),
       year=st.sampled_from(["1995", "95", "49", "50", "2026", "0", "99999"]), hour=st.integers(0, 25),
       minute=st.integers(0, 61), second=st.one_of(st.none(), st.integers(0, 61)), zone=ZONE, blank=BLANKS)
def test_a_date_reads_as_the_registrys_or_is_left_to_it(day, date, month, year, hour, minute, second, zone,
                                                       blank) -> None:
    clock = "%02d:%02d" % (hour, minute) + (":%02d" % second if second is not None else "")
    assert_same_reading("date", "%s%s%d %s %s %s %s" % (blank, day, date, month, year, clock, zone))


@settings(max_examples=500, deadline=None)
@given(value=st.text(st.characters(max_codepoint=0x17F), max_size=30))
def test_any_text_reads_as_the_registrys_or_is_left_to_it(value: str) -> None:
    for name in NAMES:
        assert_same_reading(name, value)


@settings(max_examples=300, deadline=None)
@given(lead=BLANKS, left=st.one_of(DOT_ATOM, LOCAL), right=st.one_of(DOT_ATOM, DOMAIN), tail=BLANKS)
def test_a_message_id_reads_as_the_registrys_or_is_left_to_it(lead: str, left: str, right: str, tail: str) -> None:
    assert_same_reading("message-id", "%s<%s@%s>%s" % (lead, left, right, tail))


@pytest.mark.parametrize("name, value", [
    ("to", "a@b (comment)"), ("to", "Group: a@b;"), ("to", 'John "Q" Smith <a@b>'), ("to", "John Q. Public <a@b>"),
    ("to", '"a\\"b" <a@b>'), ("to", "a@[1.2.3.4]"), ("to", "=?utf-8?q?J=C3=B6rg?= <a@b>"), ("to", "a@b,"),
    ("to", "<@route:a@b>"), ("to", "a.@b"), ("to", "Jörg <a@b>"), ("to", ""), ("date", ""), ("date", "Whenever"),
    ("subject", "=?utf-8?q?x?="), ("subject", "caf\udce9"), ("message-id", "<a@b"), ("message-id", "<a@b> x"),
    ("message-id", "<a@[1.2.3.4]>"), ("message-id", "a@b")])
def test_values_the_text_alone_may_misread_get_the_registrys_parse(name: str, value: str) -> None:
    assert not assert_same_reading(name, value)


def test_every_plain_summary_header_of_the_corpus_reads_as_the_registrys() -> None:
    taken = total = 0
    for path in _corpus():
        for part in parse(path.read_bytes()).walk():
            for name, value in part.raw_items():
                if name.lower() in NAMES:
                    total += 1
                    taken += assert_same_reading(name.lower(), headers._unfold(value))
    assert not _corpus() or taken > total * 3 // 4  # most summary headers of real mail are plain


@pytest.mark.parametrize("value", [
    "a" * 32_000, "a " * 16_000, '"' * 32_000, '"a' * 16_000, "<" * 32_000, "a@b," * 8_000, "a@" * 16_000,
    "a." * 16_000, "<a@b" * 8_000, "x <" * 10_000, ("a " * 10_000) + "<a@b>", ("a." * 10_000) + "@b",
    '"' + " " * 32_000, "=" * 32_000, "a@b " * 8_000])
def test_a_hostile_value_is_read_or_declined_in_linear_time(value: str) -> None:
    for name in NAMES:
        started = time.process_time()
        plain_header(name, value, REGISTRY)
        assert time.process_time() - started < 0.5


def test_a_plain_header_copies_and_pickles_as_the_same_reading() -> None:
    for name, value in (("to", "John Smith <j@x.org>, a@b"), ("date", "Mon, 20 Nov 1995 19:12:08 -0500"),
                        ("subject", "hello"), ("message-id", "<a@b>")):
        header = plain_header(name, value, headers.POLICY.header_factory)
        assert isinstance(header, PlainHeader)
        for other in (copy.copy(header), copy.deepcopy(header), pickle.loads(pickle.dumps(header))):
            assert str(other) == str(header) and other.name == header.name
            assert getattr(other, "addresses", None) == getattr(header, "addresses", None)
            assert getattr(other, "datetime", None) == getattr(header, "datetime", None)


def test_the_decoders_policy_reads_plain_summary_headers_without_the_registry() -> None:
    msg = parse(b"From: A <a@b.org>\nTo: c@d.org\nDate: Mon, 20 Nov 1995 19:12:08 -0500\nSubject: hi\n"
                b"Message-ID: <x@y>\nContent-ID: <part1@y>\n\nbody\n")
    for name in NAMES:
        if name != "cc":
            assert isinstance(msg[name], PlainHeader)
    assert msg["from"].addresses[0].username == "a"
    assert msg["date"].datetime.year == 1995
