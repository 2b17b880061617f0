"""A highly available poll under sr3's ``vip``: two (then three) poll nodes, each in its own
network namespace, the virtual IP an address the test moves between their loopbacks; real
Dovecot, real RabbitMQ, real ``sr3 foreground``, notices checked with an independent pika client.

Whoever holds the VIP when mail arrives, every message is announced exactly once: the passive
node follows the active node's notices, the poll lease on the broker keeps a node that gets the
VIP from polling while the other still finishes its cycle (or holds the VIP too), and a node
that was down the whole time starts from the state the last active node handed over.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.helpers import make_home, poll_config, wait_until
from tests.mailgen import sample_message
from tests.netns import Host, skip_without_netns
from tests.sr3env import NoticeCollector

pytestmark = [pytest.mark.integration,
              skip_without_netns()]

VIP = "10.77.0.1"
EXCHANGE = "xs_ha_poll"


@pytest.fixture
def hosts(rabbitmq, mail_account) -> Iterator[list[Host]]:
    made = [Host([rabbitmq.port, mail_account.server.imaps_port]) for _ in range(3)]
    try:
        yield made
    finally:
        for host in made:
            host.close()


def node_config(rabbitmq, mail_account, split: int = 0) -> str:
    """vip: sr3 consumes the poll's own post_exchange (exchange = post_exchange) on every node.
    With post_exchangeSplit N sr3 binds one of the N exchanges (a poll config cannot declare
    bindings: ``broker`` means post_broker there); mailingest binds the others."""
    split_lines = f"post_exchangeSplit {split}\nexchange {EXCHANGE}00\n" if split else f"exchange {EXCHANGE}\n"
    return poll_config(rabbitmq, mail_account, exchange=EXCHANGE, extra=f"{split_lines}vip {VIP}\nexpire 1d\n")


def last_uid(home) -> int:
    path = home.cache_dir / "poll" / "p" / "mailingest_state.json"
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return 0
    return int(next(iter(data.values()), {}).get("INBOX", {}).get("last_uid", 0))


def deliver(account, first: int, count: int) -> None:
    for i in range(first, first + count):
        account.deliver(sample_message(i, attachments=False))


class Collectors:
    """Independent consumers of every exchange the poll posts to."""

    def __init__(self, url: str, exchanges: list[str]) -> None:
        self.collectors = [NoticeCollector(url, exchange) for exchange in exchanges]

    def relpaths(self, settle: float = 0.0) -> list[str]:
        return [n["relPath"] for c in self.collectors for n in c.drain(settle=settle)]

    def close(self) -> None:
        for collector in self.collectors:
            collector.close()


def unique_notices(collectors: Collectors, count: int) -> list[str]:
    """Wait for ``count`` notices in all; their relPaths (each must be announced once)."""
    wait_until(lambda: len(collectors.relpaths()) >= count, timeout=180, what=f"{count} notices")
    paths = collectors.relpaths(settle=2.0)
    repeated = {p: n for p, n in Counter(paths).items() if n > 1}
    assert not repeated, f"announced more than once: {repeated}"
    assert len(paths) == count, f"{len(paths)} notices, expected {count}"
    return paths


def test_the_vip_moving_between_two_nodes_mid_cycle_and_back_announces_every_message_exactly_once(
        tmp_path, rabbitmq, mail_account, hosts):
    a_host, b_host, c_host = hosts
    homes = {}
    for name in ("a", "b", "c"):
        home = make_home(tmp_path / name, rabbitmq, mail_account)
        home.write_config("poll", "p", node_config(rabbitmq, mail_account))
        homes[name] = home
    for name in ("a", "b"):  # B's queue exists before A announces (else only when B's consumer connects)
        declared = homes[name].run("declare", "poll/p")
        assert declared.returncode == 0, declared.stderr
    collector = Collectors(rabbitmq.url, [EXCHANGE])
    deliver(mail_account, 0, 50)
    a_host.add_address(VIP)
    try:
        with homes["a"].foreground("poll/p", prefix=a_host.prefix) as a, \
                homes["b"].foreground("poll/p", prefix=b_host.prefix) as b:
            unique_notices(collector, 50)
            wait_until(lambda: last_uid(homes["b"]) == 50, timeout=120, what="the passive node to follow the 50")

            # 20 more arrive; the VIP moves to B while A is in the middle of its cycle
            deliver(mail_account, 50, 20)
            a.wait_for_log("20 new message(s) to announce", timeout=120)
            a_host.remove_address(VIP)
            b_host.add_address(VIP)
            unique_notices(collector, 70)
            b.wait_for_log("now the active poll node", timeout=120)
            a.wait_for_log("poll lease released", timeout=120)

            # while B is active, 10 more, then back to A
            deliver(mail_account, 70, 10)
            unique_notices(collector, 80)
            wait_until(lambda: last_uid(homes["a"]) == 80, timeout=120, what="node A to follow node B")
            b_host.remove_address(VIP)
            a_host.add_address(VIP)
            deliver(mail_account, 80, 10)
            unique_notices(collector, 90)

            # both hold the VIP for a while: B waits for A's lease, still once each
            b_host.add_address(VIP)
            b.wait_for_log("now active on vip", timeout=120, count=2)
            deliver(mail_account, 90, 10)
            unique_notices(collector, 100)
            b.wait_for_log("another poll node still holds the poll lease", timeout=120)
            a_host.remove_address(VIP)
            deliver(mail_account, 100, 5)
            unique_notices(collector, 105)
            b_host.remove_address(VIP)
            b.wait_for_log("poll lease released", timeout=120, count=1)
        # node C was down the whole run (its queue never existed): started passive, then made active
        with homes["c"].foreground("poll/p", prefix=c_host.prefix) as c:
            c.wait_for_log("now passive on vips", timeout=120)
            c_host.add_address(VIP)
            c.wait_for_log("now the active poll node", timeout=120)
            deliver(mail_account, 105, 5)
            unique_notices(collector, 110)
            assert "merged from the previous node's hand-over" in c.log_text()
    finally:
        collector.close()


def test_with_post_exchange_split_the_passive_node_follows_every_exchange_and_takes_over_without_repeats(
        tmp_path, rabbitmq, mail_account, hosts):
    a_host, b_host, _ = hosts
    split = 2
    homes = []
    for name in ("a", "b"):
        home = make_home(tmp_path / name, rabbitmq, mail_account)
        home.write_config("poll", "p", node_config(rabbitmq, mail_account, split=split))
        homes.append(home)
    for home in homes:  # the exchanges, and B's queue before A announces
        declared = home.run("declare", "poll/p")
        assert declared.returncode == 0, declared.stderr
    collectors = Collectors(rabbitmq.url, [f"{EXCHANGE}{i:02d}" for i in range(split)])
    deliver(mail_account, 0, 20)
    a_host.add_address(VIP)
    try:
        with contextlib.ExitStack() as nodes:
            b = nodes.enter_context(homes[1].foreground("poll/p", prefix=b_host.prefix))
            b.wait_for_log("follows every exchange of post_exchangeSplit", timeout=120)  # before A announces
            a = nodes.enter_context(homes[0].foreground("poll/p", prefix=a_host.prefix))
            unique_notices(collectors, 20)
            assert all(c.drain() for c in collectors.collectors), "notices on every split exchange"
            wait_until(lambda: last_uid(homes[1]) == 20, timeout=120, what="the passive node to follow both exchanges")
            a_host.remove_address(VIP)
            b_host.add_address(VIP)
            a.wait_for_log("poll lease released", timeout=120)
            b.wait_for_log("now the active poll node", timeout=120)
            deliver(mail_account, 20, 10)
            unique_notices(collectors, 30)
    finally:
        collectors.close()
