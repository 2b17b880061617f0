"""mailPostBatch: sr3's own post callback, in this process against the real RabbitMQ, posting a
mailingest flow's notices many per AMQP transaction; what the broker routed is read with pika."""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pika
import pytest
import sarracenia
import sarracenia.config
from sarracenia.config.credentials import CredentialDB
from sarracenia.flowcb.post.message import Message as Sr3Post

from mailingest import postbatch
from tests.sr3env import NoticeCollector

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def sr3_as_shipped() -> Iterator[None]:
    """Each spec starts from sr3's own putNewMessage and gives it back."""
    postbatch.uninstall()
    yield
    postbatch.uninstall()


def flow_options(rabbitmq, exchange: str, tmp_path: Path, **extra: Any) -> Any:
    o = sarracenia.config.no_file_config()
    o.component, o.config, o.action, o.no = "subscribe", "postbatch", "foreground", 0
    o.credentials = CredentialDB()
    o.credentials._parse(rabbitmq.url)
    o.post_broker = f"amqp://{rabbitmq.user}@{rabbitmq.host}:{rabbitmq.port}/"
    o.post_exchange = exchange
    o.post_baseUrl = "file:/data"
    o.post_baseDir = str(tmp_path)
    for name, value in extra.items():
        setattr(o, name, value)
    o.finalize("subscribe", "postbatch")
    return o


def notices(count: int, tmp_path: Path, options: Any) -> list[sarracenia.Message]:
    """*count* notices of files under ``post_baseDir``, as a decode makes them."""
    made = []
    for i in range(count):
        path = tmp_path / f"file-{i:03d}.txt"
        path.write_text(f"notice {i}\n")
        made.append(sarracenia.Message.fromFileInfo(str(path), options, sarracenia.stat(str(path))))
    return made


@contextlib.contextmanager
def sr3_posting(rabbitmq, exchange: str, tmp_path: Path, **options: Any) -> Iterator[tuple[Any, Sr3Poster]]:
    """A flow's options with a mailingest callback's ``mailPostBatch`` declared (as the callbacks
    do when sr3 loads them), and sr3's post callback for them."""
    o = flow_options(rabbitmq, exchange, tmp_path, **options)
    batch = postbatch.enable(o)
    sr3 = Sr3Poster(o, batch)
    try:
        yield o, sr3
    finally:
        sr3.close()


class Sr3Poster:
    """sr3's post callback for *options*, as a flow loads it, with the real channel's commits counted."""

    def __init__(self, options: Any, batch: int) -> None:
        self.batch = batch
        self.callback = Sr3Post(options)
        self.callback.on_start()
        self.poster = self.callback.posters[0]
        self.commits = 0
        self._count_commits()

    def _count_commits(self) -> None:
        channel = self.poster.channel
        real = channel.tx_commit

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.commits += 1
            return real(*args, **kwargs)

        channel.tx_commit = counted

    def post(self, msgs: list[sarracenia.Message]) -> SimpleNamespace:
        """One sr3 pass's post: sr3's post callback, then a mailingest callback's ``post``."""
        worklist = SimpleNamespace(ok=list(msgs), failed=[], incoming=[], rejected=[], directories_ok=[])
        self.callback.post(worklist)
        postbatch.flush(worklist)
        return worklist

    def close(self) -> None:
        self.callback.on_stop()


@pytest.fixture
def exchange(rabbitmq) -> Iterator[tuple[str, NoticeCollector]]:
    name = f"xs_postbatch_{uuid.uuid4().hex[:8]}"
    collector = NoticeCollector(rabbitmq.url, name)
    try:
        yield name, collector
    finally:
        collector.close()


def posted_names(collector: NoticeCollector) -> list[str]:
    return [n["relPath"].rsplit("/", 1)[-1] for n in collector.drain()]


def test_a_pass_goes_out_in_order_with_one_commit_per_chunk_of_mailPostBatch(rabbitmq, exchange, tmp_path):
    name, collector = exchange
    with sr3_posting(rabbitmq, name, tmp_path, mailPostBatch="3") as (o, sr3):
        assert sr3.batch == 3
        msgs = notices(7, tmp_path, o)
        worklist = sr3.post(msgs)
        assert sr3.commits == 3  # 3 + 3 at the chunk size, the last 1 at the end of the post
        assert worklist.ok == msgs and worklist.failed == []
        assert posted_names(collector) == [f"file-{i:03d}.txt" for i in range(7)]
        assert sr3.poster.metrics["txGoodCount"] == 7


def test_held_publishes_wait_in_a_corked_socket_and_the_commit_uncorks_it_so_all_arrive(rabbitmq, exchange, tmp_path):
    name, collector = exchange
    with sr3_posting(rabbitmq, name, tmp_path, mailPostBatch="4") as (o, sr3):
        msgs = notices(6, tmp_path, o)
        worklist = SimpleNamespace(ok=msgs, failed=[])
        sr3.callback.post(worklist)  # 4 committed at the chunk size, 2 held
        sock = sr3.poster.connection.transport.sock
        assert corked(sock), "the socket should hold the 2 publishes of the open transaction"
        postbatch.flush(worklist)
        assert not corked(sock)
        assert sr3.commits == 2 and worklist.failed == []
        assert posted_names(collector) == [f"file-{i:03d}.txt" for i in range(6)]


def corked(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK))


def test_mailPostBatch_1_posts_as_sr3_does_one_commit_per_notice(rabbitmq, exchange, tmp_path):
    name, collector = exchange
    with sr3_posting(rabbitmq, name, tmp_path, mailPostBatch="1") as (o, sr3):
        assert sr3.batch == 1
        worklist = sr3.post(notices(4, tmp_path, o))
        assert sr3.commits == 4
        assert len(worklist.ok) == 4
        assert len(posted_names(collector)) == 4


def test_a_commit_the_broker_refuses_sends_the_notice_to_sr3s_post_retry_and_the_retry_posts_it_once(
        rabbitmq, exchange, tmp_path, caplog):
    name, collector = exchange
    with sr3_posting(rabbitmq, name, tmp_path) as (o, sr3):
        try:
            msgs = notices(1, tmp_path, o)
            _delete_exchange(rabbitmq.url, name)  # the publish goes out; the broker refuses it at the commit
            worklist = sr3.post(msgs)
            assert worklist.ok == [] and worklist.failed == msgs
            assert msgs[0]["post_failures"] == [0] and "post_failures" in msgs[0]["_deleteOnPost"]
            assert sr3.poster.metrics["txGoodCount"] == 0 and sr3.poster.metrics["txBadCount"] == 1
            assert "cannot commit 1 notice(s)" in caplog.text and "NOT_FOUND" in caplog.text
            assert f":{rabbitmq.password}@" not in caplog.text  # sr3's broker, printed without its password

            # what sr3's post retry does next: post the same notice again, to the publisher named
            collector.close()
            collector = NoticeCollector(rabbitmq.url, name)  # the exchange is back
            retried = sr3.post(worklist.failed)
            assert retried.failed == [] and retried.ok == msgs
            assert posted_names(collector) == ["file-000.txt"]
        finally:
            collector.close()


def test_every_notice_of_a_chunk_whose_commit_fails_goes_to_the_retry(rabbitmq, exchange, tmp_path, caplog):
    name, collector = exchange
    with sr3_posting(rabbitmq, name, tmp_path) as (o, sr3):
        def refused(*_args: Any, **_kwargs: Any) -> None:
            raise ConnectionResetError("connection reset by the broker")

        sr3.poster.channel.tx_commit = refused
        msgs = notices(5, tmp_path, o)
        worklist = sr3.post(msgs)
        assert worklist.ok == [] and worklist.failed == msgs
        assert all(m["post_failures"] == [0] for m in msgs)
        assert "cannot commit 5 notice(s)" in caplog.text
        assert posted_names(collector) == []  # the broker dropped the uncommitted transaction
        assert sr3.poster.connection is None  # closed: the next post connects anew
        again = sr3.post(worklist.failed)
        assert len(again.ok) == 5 and posted_names(collector) == [f"file-{i:03d}.txt" for i in range(5)]


def test_a_connection_that_breaks_with_commits_held_loses_them_to_the_retry_not_to_the_void(
        rabbitmq, exchange, tmp_path, caplog):
    name, collector = exchange
    with sr3_posting(rabbitmq, name, tmp_path) as (o, sr3):
        msgs = notices(6, tmp_path, o)
        first = SimpleNamespace(ok=msgs[:2], failed=[])
        sr3.callback.post(first)  # published, commits held
        sr3.poster.connection.transport.sock.close()  # the connection breaks
        second = SimpleNamespace(ok=msgs[2:], failed=[])
        sr3.callback.post(second)  # sr3 fails one notice, connects anew and commits the others itself
        worklist = SimpleNamespace(ok=first.ok + second.ok, failed=second.failed)
        postbatch.flush(worklist)
        assert msgs[0] in worklist.failed and msgs[1] in worklist.failed  # held on the broken connection
        assert all(m["post_failures"] == [0] for m in worklist.failed)
        assert "broke with 2 notice(s) posted but not committed" in caplog.text
        delivered = posted_names(collector)
        failed_names = {m["relPath"].rsplit("/", 1)[-1] for m in worklist.failed}
        assert set(delivered).isdisjoint(failed_names)
        assert set(delivered) | failed_names == {f"file-{i:03d}.txt" for i in range(6)}


def _delete_exchange(url: str, exchange: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        connection.channel().exchange_delete(exchange)
    finally:
        connection.close()
