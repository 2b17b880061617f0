"""The fast path builds the feed parser's tree, or leaves the message to the feed parser."""
from __future__ import annotations

import copy
import pickle
import re
from email.feedparser import FeedParser
from email.message import Message
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailingest.mime import headers
from mailingest.mime.fastparse import Irregular, _delimiter, parse_fast
from mailingest.mime.parse import parse
from tests.fuzz import generators

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "messages"
if not CORPUS.exists():
    CORPUS = Path("/work/shared/corpus/messages")


def feed_parsed(raw: bytes) -> Message:
    parser = FeedParser(policy=headers.message_policy())
    parser.feed(raw.decode("ascii", "surrogateescape"))
    return parser.close()


def shape(msg: Message) -> object:
    """Everything the parser decides about a message, as plain values."""
    payload = msg._payload  # the parser's own result, not get_payload's view of it
    return {
        "class": type(msg).__name__,
        "headers": list(msg._headers),
        "unixfrom": msg.get_unixfrom(),
        "default_type": msg.get_default_type(),
        "preamble": msg.preamble,
        "epilogue": msg.epilogue,
        "defects": [(type(d).__name__, str(d)) for d in msg.defects],
        "payload": [shape(p) for p in payload] if isinstance(payload, list) else payload,
    }


def assert_same_tree_or_irregular(raw: bytes) -> bool:
    """True when the fast path took *raw* (and built the feed parser's tree)."""
    expected = shape(feed_parsed(raw))
    try:
        fast = parse_fast(raw, headers.message_policy())
    except Irregular:
        return False
    assert shape(fast) == expected
    return True


def _corpus() -> list[Path]:
    return sorted(CORPUS.rglob("*.eml")) if CORPUS.exists() else []


@pytest.mark.skipif(not _corpus(), reason="the shared corpus is not on this machine")
def test_the_fast_path_builds_the_feed_parsers_tree_for_every_corpus_message_it_takes() -> None:
    files = _corpus()
    taken = sum(assert_same_tree_or_irregular(f.read_bytes()) for f in files)
    assert taken >= len(files) * 3 // 4  # the corpus is mostly well-formed: most take the fast path


@pytest.mark.parametrize("crlf", [False, True])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=generators.entities())
def test_the_fast_path_builds_the_feed_parsers_tree_for_generated_messages(raw: bytes, crlf: bool) -> None:
    assert_same_tree_or_irregular(generators.to_crlf(raw) if crlf else raw)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=generators.hostile_message())
def test_the_fast_path_builds_the_feed_parsers_tree_or_declines_hostile_messages(raw: bytes) -> None:
    assert_same_tree_or_irregular(raw)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=300), cut=st.integers(0, 400))
def test_the_fast_path_builds_the_feed_parsers_tree_or_declines_mutated_messages(raw: bytes, cut: int) -> None:
    base = SIMPLE[:cut % len(SIMPLE)] + raw + SIMPLE[cut % len(SIMPLE):]
    assert_same_tree_or_irregular(base)


SIMPLE = (b"From: a@example.org\nSubject: s\nContent-Type: multipart/mixed; boundary=\"b\"\n\n"
          b"pre\n--b\nContent-Type: text/plain\n\nhello\n\n--b\nContent-Type: message/rfc822\n\n"
          b"Subject: inner\nContent-Type: multipart/alternative; boundary=c\n\n--c\n\nx\n--c--\nepi\n\n"
          b"--b--  \npost\n")

EDGE_CASES = {
    "well-formed": (SIMPLE, True),
    "unix From line": (b"From someone Mon Jan 1\n" + SIMPLE, True),
    "no blank line after the headers": (b"Subject: x", True),
    "headers to a delimiter": (b"Content-Type: multipart/mixed; boundary=b\n\n--b\nX-A: 1\n--b--\n", True),
    "empty parts": (b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\n--b\n\n\n--b--", True),
    "close delimiter at the end without a line end": (b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--", True),
    "delimiter look-alikes": (b"Content-Type: multipart/mixed; boundary=b\n\n--bx\n--b\n\n--b-x\n--b--\n--b\n", True),
    "digest": (b"Content-Type: multipart/digest; boundary=b\n\n--b\n\nSubject: in\n\nx\n--b--\n", True),
    "CRLF": (SIMPLE.replace(b"\n", b"\r\n"), True),
    "big payloads, left in the message until asked for": (
        SIMPLE.replace(b"hello\n", b"hello\n" * 20000).replace(b"\nx\n", b"\n" + b"\xe9x" * 40000 + b"\n"), True),
    "8-bit bytes": (b"Subject: \xe9t\xe9\n\n\xff\xfe body\n", True),
    "lone carriage return": (b"Subject: x\r\n\r\nbody\rmore\r\n", False),
    "missing separator": (b"Subject: x\nnot a header\nbody\n", True),
    "missing separator in a part": (b"Content-Type: multipart/mixed; boundary=b\n\n--b\nX: 1\nbody\n--b--\n", True),
    "first line continuation": (b" folded\nSubject: x\n\nbody\n", True),
    "misplaced From": (b"Subject: x\nFrom nobody\nTo: y\n\nbody\n", True),
    "From as the last header": (b"Subject: x\nFrom nobody\n\nbody\n", False),
    "no header name": (b": x\nSubject: y\n\nbody\n", True),
    "continuation after a line with no header name": (b"Subject: x\n: y\n z\nTo: w\n\nbody\n", True),
    "continuation after a misplaced From": (b"Subject: x\nFrom nobody\n z\nTo: w\n\nbody\n", True),
    "continuation after the envelope From line": (b"From nobody\n z\nSubject: x\n\nbody\n", True),
    "folded headers, blanks kept inside": (b"Subject:   a\n\t b \n  c\nTo:\tx\nX:\n y\n\nbody\n", True),
    "folded headers, CRLF": (b"Subject: a\r\n b\r\nTo: x\r\n\r\nbody\r\n", True),
    "no boundary": (b"Content-Type: multipart/mixed\n\nbody\n", False),
    "no start delimiter": (b"Content-Type: multipart/mixed; boundary=b\n\nbody\n", False),
    "no close delimiter": (b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\nbody\n", True),
    "no close delimiter, nested": (b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: multipart/mixed;"
                                   b" boundary=c\n\n--c\n\nx\n\n--b\n\ny\n--b--\n", True),
    "no close delimiter, empty last part": (b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b\n", True),
    "only a close delimiter": (b"Content-Type: multipart/mixed; boundary=b\n\n--b--\n", False),
    "two delimiters in a row": (b"Content-Type: multipart/mixed; boundary=b\n\n--b\n--b\n\nx\n--b--\n", False),
    "encoded multipart": (b"Content-Type: multipart/mixed; boundary=b\nContent-Transfer-Encoding: base64\n\n"
                          b"--b\n\nx\n--b--\n", False),
    "delivery status": (b"Content-Type: message/delivery-status\n\nA: 1\n\nB: 2\n", False),
    "headers to the end": (b"Subject: x\nTo: y\n", True),
    "headers to the end, CRLF": (b"Subject: x\r\nTo: y\r\n", True),
    "empty headers": (b"\nbody\n", True),
    "empty headers, CRLF": (b"\r\nbody\r\n", True),
    "CRLF blank line before an LF one": (b"Subject: x\r\n\r\nbody\n\nmore\n", True),
    "LF blank line before a CRLF one": (b"Subject: x\n\nbody\r\n\r\nmore\r\n", True),
    "missing separator before a blank line": (b"Subject: x\nnot a header\n\nbody\n", True),
    "header block longer than one read": (b"".join(b"X-%d: %s\n" % (i, b"v" * 70) for i in range(2000))
                                          + b"\nbody\n", True),
    "header block longer than one read, no blank line": (b"Subject: x\n" + b"X: " + b"v" * 70000 + b"\nbody", True),
    "form feed and vertical tab in headers": (b"Subject: a\x0cb\x0bc\x1cd\nTo: e\n\nbody\n", True),
    "only a continuation line, without a line end": (b" folded", True),
    "misplaced From, headers to the end without a line end": (b"Subject: x\nFrom nobody\nTo: y", True),
    "empty and blank values, folded, CRLF": (b"Subject:\r\n b\r\nTo: \t\r\nX:\r\n\r\nbody\r\n", True),
    "missing separator at a line with a colon": (b"Subject: x\nnot a header: y\nbody\n", True),
    "missing separator in a part, CRLF": (b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nX: 1\r\n"
                                          b"body\r\n--b--\r\n", True),
}


@pytest.mark.parametrize("name", sorted(EDGE_CASES))
def test_the_fast_path_takes_well_formed_edge_cases_and_declines_the_others(name: str) -> None:
    raw, taken = EDGE_CASES[name]
    assert assert_same_tree_or_irregular(raw) is taken


#: the feed parser's delimiter line test (``email.feedparser``), on what follows the separator
_FEED_DELIMITER = re.compile(rb"(--)?[ \t]*(?:\r\n|\r|\n)?$")


@given(st.lists(st.sampled_from([b"-", b"--", b" ", b"\t", b"x", b"\r\n", b"\n"]), max_size=6).map(b"".join))
def test_the_delimiter_test_says_what_the_feed_parsers_pattern_says(rest: bytes) -> None:
    line = b"--b" + rest
    if b"\n" in rest[:-1] or b"\r" in rest.replace(b"\r\n", b""):
        return  # a line holds one line end, at its end; a lone CR goes to the feed parser
    matched = _FEED_DELIMITER.match(line, 3)
    expected = None if matched is None else bool(matched.group(1))
    assert _delimiter(line, 3, len(line)) == expected


class _TaggingPolicy(headers.BoundedPolicy):
    def header_source_parse(self, sourcelines: list[str]) -> tuple[str, str]:
        name, value = super().header_source_parse(sourcelines)
        return name.upper(), "[%d] %s" % (len(sourcelines), value)


def test_a_policy_that_reads_header_lines_its_own_way_is_asked_for_every_header() -> None:
    raw = b"Subject: a\n b\nTo: x\n\nbody\n"
    policy = _TaggingPolicy()
    parser = FeedParser(policy=policy)
    parser.feed(raw.decode("ascii"))
    assert shape(parse_fast(raw, policy)) == shape(parser.close())
    assert parse_fast(raw, policy)._headers == [("SUBJECT", "[2] a\n b"), ("TO", "[1] x")]


def test_nesting_deeper_than_the_bound_goes_to_the_feed_parser() -> None:
    inner = b"Subject: leaf\n\nx\n"
    for _level in range(40):
        inner = b"Content-Type: message/rfc822\n\n" + inner
    assert assert_same_tree_or_irregular(inner) is False


def test_a_parsed_tree_with_lazy_payloads_and_remembered_parameters_copies() -> None:
    raw = EDGE_CASES["big payloads, left in the message until asked for"][0]
    msg = parse(raw)
    for part in msg.walk():  # fill the parameter memo and the lazy headers
        part.get_content_charset()
        part.get_filename()
        part.is_attachment()
    expected = shape(parse(raw))
    assert shape(copy.deepcopy(msg)) == expected
    header = msg["content-type"]  # a plain one, read without the registry
    assert pickle.loads(pickle.dumps(header)).params == header.params
