"""A part whose transfer encoding leaves its bytes as they are (7bit, 8bit, binary, none, an
unknown one) gives, from payloads.leaf_data, exactly the bytes get_payload(decode=True) gives:
its text encoded back, or its span of the raw message; well-formed base64 (no defect) gives
them too."""
from __future__ import annotations

import base64
from email.message import Message

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailingest.mime import headers, payloads
from mailingest.mime.parse import parse
from tests.fuzz import generators

CTES = st.sampled_from(["base64", "base64", "", "7bit", "8BIT", "binary", " 7bit ", "x-token", "base64 ", " quoted-printable",
                        "x-uuencode ", "uue", "base64", "quoted-printable"])
BODIES = st.one_of(st.binary(max_size=200), st.binary(max_size=150).map(lambda b: base64.encodebytes(b)),
                   st.lists(st.sampled_from([b"a", b"\r\n", b"\n", b"\xe9", b"\xff", b"=", b" ", b"begin 644 x"]),
                            max_size=40).map(b"".join))


def assert_leaves_give_the_standard_librarys_bytes(raw: bytes) -> None:
    with headers.active_budget():
        leaves = [p for p in parse(raw).walk() if not p.is_multipart()]
        ours = [payloads.leaf_bytes(p) for p in leaves]
        plain = [p for p in parse(raw).walk() if not p.is_multipart()]
        theirs = [Message.get_payload(p, decode=True) for p in plain]
    assert len(ours) == len(theirs)
    for mine, reference, part, read in zip(ours, theirs, leaves, plain):
        cte = str(part.get("content-transfer-encoding", "")).lower()
        if cte not in payloads._DECODED_CTES and cte.strip() not in payloads._DECODED_CTES:
            assert mine == reference
        elif cte == "base64" and not read.defects:  # well-formed: the standard library's bytes
            assert mine == reference


@settings(max_examples=300, deadline=None)
@given(cte=CTES, body=BODIES, crlf=st.booleans(), big=st.booleans())
def test_a_leaf_left_as_it_is_gives_its_bytes(cte, body, crlf, big):
    body = body * (1 + 400 * big)  # past the size left in the raw message until asked for
    head = b"Content-Type: text/plain; charset=utf-8\n" + (b"Content-Transfer-Encoding: %s\n" % cte.encode()
                                                           if cte else b"")
    raw = head + b"\n" + body
    assert_leaves_give_the_standard_librarys_bytes(generators.to_crlf(raw) if crlf else raw)


@settings(max_examples=100, deadline=None)
@given(raw=generators.entities())
def test_generated_messages_give_the_standard_librarys_bytes(raw: bytes) -> None:
    assert_leaves_give_the_standard_librarys_bytes(raw)


@settings(max_examples=100, deadline=None)
@given(raw=generators.hostile_message())
def test_hostile_messages_give_the_standard_librarys_bytes(raw: bytes) -> None:
    assert_leaves_give_the_standard_librarys_bytes(raw)


@pytest.mark.parametrize("body", [b"plain\n", b"\xe9t\xe9\r\n", b"", b"a\rb\n"])
def test_hand_picked_leaves_give_their_bytes(body: bytes) -> None:
    assert_leaves_give_the_standard_librarys_bytes(b"Content-Transfer-Encoding: 8bit\n\n" + body)
