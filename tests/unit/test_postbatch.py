"""mailPostBatch's bookkeeping: which notices a lost transaction sends back to sr3's post retry,
and how sr3's putNewMessage is wrapped and given back (the broker side: tests/integration/test_post_batch.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from sarracenia.moth.amqp import AMQP

from mailingest import postbatch
from mailingest.errors import ConfigError


def notice(name: str, **fields: Any) -> dict[str, Any]:
    return {"relPath": name, "_deleteOnPost": {"new_dir"}, **fields}


def lost_on(index: int, *notices: dict[str, Any]) -> list[tuple[Any, dict[str, Any]]]:
    poster = SimpleNamespace(o={"publisher_index": index, "broker": "amqp://feeder@broker/"},
                             metrics={"txGoodCount": 10, "txBadCount": 0})
    held = postbatch._HeldCommits(poster)
    return [(held, n) for n in notices]


def test_a_lost_notice_moves_from_ok_to_failed_naming_its_publisher_as_sr3_does():
    a, b, c = notice("a"), notice("b"), notice("c")
    worklist = SimpleNamespace(ok=[a, b, c], failed=[])
    lost = lost_on(0, a, c)
    postbatch._to_retry(worklist, lost)
    assert worklist.ok == [b] and worklist.failed == [a, c]
    assert a["post_failures"] == [0] and "post_failures" in a["_deleteOnPost"]
    assert "post_failures" not in b
    metrics = lost[0][0].poster.metrics
    assert metrics == {"txGoodCount": 8, "txBadCount": 2}


def test_a_notice_sr3_already_failed_on_one_publisher_gets_the_lost_one_added_once():
    a = notice("a", post_failures=[1])
    worklist = SimpleNamespace(ok=[], failed=[a])
    postbatch._to_retry(worklist, lost_on(0, a) + lost_on(1, a))
    assert worklist.failed == [a] and a["post_failures"] == [0, 1]


def test_options_mailPostBatch_is_a_count_and_1_or_0_means_sr3s_own_posting():
    for raw, size in (("1000", 1000), ("1", 1), ("0", 1), (None, 1000)):
        options = _Options(mailPostBatch=raw)
        try:
            assert postbatch.enable(options) == size
            assert getattr(AMQP.putNewMessage, postbatch._WRAPPED, False) == (size > 1)
        finally:
            postbatch.uninstall()
    with pytest.raises(ConfigError):
        postbatch.enable(_Options(mailPostBatch="many"))


def test_the_wrapper_is_installed_once_and_uninstall_gives_sr3_its_own_back():
    sr3_own = AMQP.putNewMessage
    try:
        assert postbatch.install() and postbatch.install()
        assert AMQP.putNewMessage.__wrapped__ is sr3_own
    finally:
        postbatch.uninstall()
    assert AMQP.putNewMessage is sr3_own


class _Options(SimpleNamespace):
    """The part of sr3's options object that declaring and reading an option uses."""

    def __init__(self, **values: Any) -> None:
        super().__init__(**{k: v for k, v in values.items() if v is not None})

    def add_option(self, name: str, kind: str, default: Any) -> None:
        if getattr(self, name, None) is None:
            setattr(self, name, default)
