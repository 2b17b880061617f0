"""Specification of the per-account session budget (mailSessionMax) and of a server's session-limit refusal."""

import logging

import pytest

from mailingest.errors import MailConnectionError
from mailingest.fetcher.sessions import AccountUnavailableError, SessionPool
from mailingest.mailbox.budget import SessionBudget, SessionBudgetBusyError
from mailingest.mailbox.connection import ConnectionSettings
from mailingest.mailbox.sessionlimit import SessionLimitError, SessionLimitLog, is_session_limit
from tests.unit.test_ha_poll import MemoryBroker, MemoryLocks


@pytest.mark.parametrize("answer", [
    "[LIMIT] Maximum number of connections from user+IP exceeded (mail_max_userip_connections=10)",
    "-ERR [IN-USE] Maximum number of connections from user+IP exceeded (mail_max_userip_connections=1)",
    "[ALERT] Too many simultaneous connections. (Failure)",
])
def test_servers_answers_for_too_many_sessions_are_recognised(answer):
    assert is_session_limit(answer)


@pytest.mark.parametrize("answer", ["[AUTHENTICATIONFAILED] Authentication failed.", "-ERR [AUTH] bad password",
                                    "-ERR [IN-USE] Mailbox is locked by another POP3 session"])
def test_a_wrong_password_or_a_locked_maildrop_is_not_a_session_limit(answer):
    assert not is_session_limit(answer)


def test_a_session_limit_refusal_is_transient():
    assert issubclass(SessionLimitError, MailConnectionError)


def test_the_session_limit_warning_is_logged_once_a_minute_per_account(caplog):
    log = SessionLimitLog(every=60)
    with caplog.at_level(logging.DEBUG):
        for _ in range(5):
            log.refused("imaps://a@h:993", SessionLimitError("a refused one more session"))
    assert [r.levelname for r in caplog.records].count("WARNING") == 1


def test_no_more_than_the_budget_is_held_across_processes_and_a_release_lets_the_next_one_in():
    broker = MemoryBroker()
    budgets = [SessionBudget(MemoryLocks(broker), 2, wait_seconds=0.3) for _ in range(3)]
    budgets[0].acquire("acct")
    budgets[1].acquire("acct")
    with pytest.raises(SessionBudgetBusyError, match="mailSessionMax"):
        budgets[2].acquire("acct")
    budgets[0].release("acct")
    budgets[2].acquire("acct")
    assert len(broker.owners) == 2


def test_accounts_have_separate_budgets():
    broker = MemoryBroker()
    budget = SessionBudget(MemoryLocks(broker), 1, wait_seconds=0.1)
    other = SessionBudget(MemoryLocks(broker), 1, wait_seconds=0.1)
    budget.acquire("a")
    other.acquire("b")


def test_a_slot_lost_with_the_broker_is_no_longer_held():
    locks = MemoryLocks(MemoryBroker())
    budget = SessionBudget(locks, 1)
    budget.acquire("acct")
    locks.crash()
    assert not budget.still_held("acct")


class FakeMailbox:
    opened = 0

    def __init__(self, account: object = None, refuse: bool = False) -> None:
        self.refuse = refuse
        self.account = account

    def connect(self):
        if self.refuse:
            raise SessionLimitError("the server said [LIMIT]")
        FakeMailbox.opened += 1
        return self

    def close(self):
        FakeMailbox.opened -= 1
        return True

    def is_alive(self):
        return True


def test_a_download_worker_holds_a_slot_while_logged_in_and_gives_it_back_when_it_logs_out(monkeypatch):
    from mailingest.mailbox import kept

    monkeypatch.setattr(kept, "new_mailbox", lambda account, settings: FakeMailbox(account))
    broker = MemoryBroker()
    pool = SessionPool(ConnectionSettings(), lambda mailbox: None, {}, budget=SessionBudget(MemoryLocks(broker), 1))

    class Account:
        display = "imaps://a@h:993"

    assert pool.run(Account(), lambda mailbox: "ok") == "ok"  # type: ignore[arg-type]
    assert len(broker.owners) == 1
    pool.close_all()
    assert broker.owners == {}


def test_a_server_session_limit_gives_the_notice_back_without_pausing_the_account(monkeypatch):
    from mailingest.mailbox import kept

    monkeypatch.setattr(kept, "new_mailbox", lambda account, settings: FakeMailbox(account, refuse=True))
    metrics: dict = {}
    broker = MemoryBroker()
    pool = SessionPool(ConnectionSettings(), lambda mailbox: None, metrics, budget=SessionBudget(MemoryLocks(broker), 1))

    class Account:
        display = "imaps://a@h:993"

    with pytest.raises(AccountUnavailableError, match="simultaneous|LIMIT"):
        pool.run(Account(), lambda mailbox: "ok")  # type: ignore[arg-type]
    assert metrics["sessionsRefused"] == 1 and broker.owners == {}
    assert not pool._paused
