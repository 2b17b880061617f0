"""The charset hints of every message level, from one walk over the tree, are what
``charset_hints`` (a walk of that level alone) says for it."""
from __future__ import annotations

from email.message import Message

from hypothesis import HealthCheck, given, settings

from mailingest.mime.hints import TreeHints, usable_charset
from mailingest.mime.parse import parse
from tests.fuzz import generators
from tests.unit.test_fastparse import _corpus


def charset_hints(msg: Message) -> list[str]:
    """The definition: the usable charsets declared anywhere in *msg*, most frequent first, ties
    in the order first seen (the decoder's walk per level before TreeHints)."""
    counts: dict[str, int] = {}
    for sub in msg.walk():
        charset = usable_charset(sub)
        if charset:
            counts[charset] = counts.get(charset, 0) + 1
    return sorted(counts, key=lambda c: -counts[c])


def assert_hints_of_every_part(raw: bytes) -> None:
    tree = parse(raw)
    hints = TreeHints(tree)
    for part in tree.walk():
        assert hints.of(part) == charset_hints(part)


def test_every_corpus_message_and_part_gets_the_hints_charset_hints_gives() -> None:
    for path in _corpus():
        assert_hints_of_every_part(path.read_bytes())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=generators.entities())
def test_generated_messages_get_the_hints_charset_hints_gives(raw: bytes) -> None:
    assert_hints_of_every_part(raw)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=generators.hostile_message())
def test_hostile_messages_get_the_hints_charset_hints_gives(raw: bytes) -> None:
    assert_hints_of_every_part(raw)


def test_a_message_of_another_tree_has_no_hints_there() -> None:
    raw = b"Content-Type: text/plain; charset=koi8-r\n\nx\n"
    assert TreeHints(parse(raw)).of(parse(raw)) is None
    assert TreeHints(parse(raw)).of(Message()) is None


def test_the_walk_is_not_recursive_however_deep_the_tree() -> None:
    top = inner = Message()
    for _ in range(5000):
        child = Message()
        child["Content-Type"] = "text/plain; charset=koi8-r"
        inner.set_payload([child])
        inner = child
    assert TreeHints(top).of(top) == ["koi8-r"]


def test_hints_are_counted_only_when_read_and_then_as_charset_hints_counts_them() -> None:
    tree = parse(b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain; charset=koi8-r\n\n"
                 b"x\n--b\nContent-Type: message/rfc822\n\nContent-Type: text/plain; charset=big5\n\ny\n--b--\n")
    hints = TreeHints(tree)
    inner = tree.get_payload()[1].get_payload()[0]
    top, nested = hints.lazy_of(tree), hints.lazy_of(inner)
    assert hints._runs is None  # nothing walked yet
    assert list(nested) == charset_hints(inner) == ["big5"]
    assert list(top) == charset_hints(tree) and len(top) == 2 and top[0] in ("koi8-r", "big5")


def test_lazy_hints_of_a_message_outside_the_tree_are_its_own() -> None:
    other = parse(b"Content-Type: text/plain; charset=koi8-r\n\nx\n")
    tree = parse(b"Content-Type: text/plain; charset=big5\n\ny\n")
    assert list(TreeHints(tree).lazy_of(other)) == ["koi8-r"]
