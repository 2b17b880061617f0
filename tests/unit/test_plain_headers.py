"""Content-Type/-Disposition values read as text without the header registry's parse give what
the registry's header gives: the same text, no defect, the same type, disposition and parameters."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailingest.mime import headers
from mailingest.mime.parse import parse

CORPUS = Path("/work/shared/corpus/messages")
TOKEN = st.text("abcXYZ019!#$%&'+.^_`|~-", min_size=1, max_size=8)
QUOTED = st.text(" \tabc=?()<>@,;:/[]{}!#~'", max_size=10).map(lambda t: '"%s"' % t)
BLANKS = st.sampled_from(["", " ", "\t", "  "])
PARAMS = st.lists(st.tuples(BLANKS, BLANKS, TOKEN, st.one_of(TOKEN, QUOTED)), max_size=4).map(
    lambda items: "".join("%s;%s%s=%s" % item for item in items))


def both(name: str, value: str) -> tuple[object, object]:
    """(the fast header, the registry's header) of *value*."""
    policy = headers.message_policy()
    fast = policy.header_fetch_parse(name, value)
    full = headers.POLICY.header_factory(name, value)
    return fast, full


def assert_same_reading(name: str, value: str) -> bool:
    """True when *value* was read without the registry; then it reads as the registry's does."""
    fast, full = both(name, value)
    if not isinstance(fast, headers._PlainParameterized):
        return False
    assert str(fast) == str(full)
    assert not full.defects
    assert fast.params == full.params
    if name == "content-type":
        assert (fast.content_type, fast.maintype, fast.subtype) == (full.content_type, full.maintype, full.subtype)
    else:
        assert fast.content_disposition == full.content_disposition
    for raw in (parse(("%s: %s\n\nx" % (name, value)).encode()),):
        assert str(raw[name]) == str(headers.POLICY.header_factory(name, value.lstrip(" \t")))
    return True


@settings(max_examples=400, deadline=None)
@given(lead=BLANKS, kind=TOKEN, sub=TOKEN, params=PARAMS, tail=BLANKS)
def test_a_plain_content_type_reads_as_the_registrys(lead, kind, sub, params, tail):
    assert_same_reading("content-type", lead + kind + "/" + sub + params + tail)


@settings(max_examples=400, deadline=None)
@given(lead=BLANKS, kind=TOKEN, params=PARAMS, tail=BLANKS)
def test_a_plain_content_disposition_reads_as_the_registrys(lead, kind, params, tail):
    assert_same_reading("content-disposition", lead + kind + params + tail)


@pytest.mark.parametrize("value", [
    'text/plain; charset="=?utf-8?q?x?="', "text/plain; name*=utf-8''a", 'text/plain; name="a\\"b"',
    "text/plain (comment)", "text/plain;", 'text/plain; name="é"', "text/plain; a=b/c"])
def test_values_the_text_alone_may_misread_get_the_registrys_parse(value):
    assert not assert_same_reading("content-type", value)


@pytest.mark.skipif(not CORPUS.exists(), reason="the shared corpus is not on this machine")
def test_every_plain_content_type_and_disposition_of_the_corpus_reads_as_the_registrys():
    taken = 0
    for path in sorted(CORPUS.rglob("*.eml")):
        for part in parse(path.read_bytes()).walk():
            for name, value in part.raw_items():
                if name.lower() in ("content-type", "content-disposition"):
                    taken += assert_same_reading(name.lower(), headers._unfold(value))
    assert taken > 1000
