"""``mailSessionMax``: a poll and six download workers on two hosts (network namespaces) share a
budget of 2 sessions for one account; Dovecot never sees more than 2 sessions of that user, and
every message arrives once (real Dovecot, real RabbitMQ, real ``sr3 foreground``)."""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import eml_files, make_home, poll_config, subscribe_config, wait_until
from tests.mailgen import sample_message
from tests.netns import Host, skip_without_netns

pytestmark = [pytest.mark.integration,
              skip_without_netns()]

MESSAGES = 60
BUDGET = 2
EXCHANGE = "xs_budget"


class SessionSampler:
    """The most sessions Dovecot showed for ``user`` at once, sampled every 10 ms."""

    def __init__(self, dovecot, user: str) -> None:
        self.dovecot, self.user = dovecot, user
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.most = max(self.most, self.dovecot.sessions(self.user))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.most


def most_sessions_in_log(log: Path, user: str) -> int:
    """The most sessions of ``user`` open at once according to Dovecot's log (a login opens one,
    the mail process's ``Disconnected`` closes it; lines in the order Dovecot wrote them)."""
    login = re.compile(r"-login: Info: Login: user=<" + re.escape(user) + r">.*session=<([^>]+)>")
    logout = re.compile(r"(?:imap|pop3)\(" + re.escape(user) + r"\)<\d+><([^>]+)>: Info: Disconnected")
    open_sessions: set = set()
    most = 0
    for line in log.read_text(errors="replace").splitlines():
        if match := login.search(line):
            open_sessions.add(match.group(1))
            most = max(most, len(open_sessions))
        elif match := logout.search(line):
            open_sessions.discard(match.group(1))
    return most


@pytest.fixture
def hosts(rabbitmq, mail_account) -> Iterator[list[Host]]:
    made = [Host([rabbitmq.port, mail_account.server.imaps_port]) for _ in range(2)]
    try:
        yield made
    finally:
        for host in made:
            host.close()


def test_a_budget_of_two_sessions_holds_for_a_poll_and_six_workers_on_two_hosts_and_every_message_arrives(
        tmp_path, rabbitmq, mail_account, hosts):
    directory = tmp_path / "mail"
    budget = f"mailSessionMax {BUDGET}\nmailSessionWait 30\n"
    homes = []
    for h in range(2):
        home = make_home(tmp_path / f"host{h}", rabbitmq, mail_account)
        for w in range(3):
            home.write_config("subscribe", f"dl{w}", subscribe_config(
                rabbitmq, directory, exchange=EXCHANGE, queue="q_guest_budget_shared", extra=budget))
        homes.append(home)
    homes[0].write_config("poll", "p", poll_config(rabbitmq, mail_account, exchange=EXCHANGE, extra=budget))
    for target in ("poll/p", "subscribe/dl0"):  # the exchange, then the workers' shared queue
        declared = homes[0].run("declare", target)
        assert declared.returncode == 0 and "ERROR" not in declared.stderr, declared.stderr
    for i in range(MESSAGES):
        mail_account.deliver(sample_message(i, attachments=False))
    sampler = SessionSampler(mail_account.server, mail_account.user)
    try:
        with homes[0].foreground("poll/p", prefix=hosts[0].prefix) as poll, \
                homes[0].foreground("subscribe/dl0", prefix=hosts[0].prefix), \
                homes[0].foreground("subscribe/dl1", prefix=hosts[0].prefix), \
                homes[0].foreground("subscribe/dl2", prefix=hosts[0].prefix), \
                homes[1].foreground("subscribe/dl0", prefix=hosts[1].prefix), \
                homes[1].foreground("subscribe/dl1", prefix=hosts[1].prefix), \
                homes[1].foreground("subscribe/dl2", prefix=hosts[1].prefix):
            poll.wait_for_log(f"{MESSAGES} new message(s) to announce", timeout=120)
            wait_until(lambda: len(eml_files(directory)) >= MESSAGES, timeout=240, what="every message's file")
        most = sampler.stop()
    finally:
        sampler.stop()
    files = eml_files(directory)
    assert len(files) == MESSAGES
    assert not [p for p, n in Counter(f.name for f in files).items() if n > 1]
    assert 1 <= most <= BUDGET, f"Dovecot saw {most} sessions of the account at once (its processes)"
    in_log = most_sessions_in_log(mail_account.server.log_path, mail_account.user)
    assert 1 <= in_log <= BUDGET, f"Dovecot's log shows {in_log} sessions of the account at once"
