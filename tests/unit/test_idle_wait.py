"""ImapMailbox.idle_wait against a scripted imapclient (no server): what ends an IDLE wait."""

import time
from typing import List

import pytest

from mailingest.errors import MailConnectionError
from mailingest.mailbox.account import resolve_account
from mailingest.mailbox.connection import ConnectionSettings
from mailingest.mailbox.imap import ImapMailbox, _bye

ACCOUNT = resolve_account("imaps://alice:pw@mail.example.com/", None)


class ScriptedClient:
    """Answers ``idle_check`` from a script: a list of responses, or ``"wait"`` (nothing until the
    timeout, as a quiet server), or ``"eof"`` (nothing at once, as imapclient after EOF)."""

    def __init__(self, script: List) -> None:
        self.script = list(script)
        self.checks = 0
        self.done = False

    def idle(self) -> None:
        pass

    def idle_check(self, timeout: float) -> list:
        self.checks += 1
        step = self.script.pop(0) if self.script else "eof"
        if step == "wait":
            time.sleep(timeout)
            return []
        return [] if step == "eof" else step

    def idle_done(self) -> tuple:
        self.done = True
        return b"Idle completed", []

    def shutdown(self) -> None:
        pass


def idling(client: ScriptedClient) -> ImapMailbox:
    mailbox = ImapMailbox(ACCOUNT, ConnectionSettings(timeout=5))
    mailbox._connection = client
    mailbox._status = {"uidvalidity": 1, "uidnext": 5, "exists": 4}
    return mailbox


def test_new_mail_ends_the_wait_at_once():
    client = ScriptedClient(["wait", [(5, b"EXISTS")]])
    assert idling(client).idle_wait(30, lambda: False, slice_seconds=0.05)
    assert client.done


def test_a_quiet_server_is_waited_for_until_the_time_is_up_without_being_taken_for_closed():
    client = ScriptedClient(["wait"] * 100)
    started = time.monotonic()
    assert not idling(client).idle_wait(0.3, lambda: False, slice_seconds=0.05)
    assert 0.3 <= time.monotonic() - started < 2 and client.done


def test_a_socket_closed_by_the_server_is_noticed_at_once_not_when_the_time_is_up():
    client = ScriptedClient([[(b"OK", b"Still here")], "eof", "eof", "eof"])
    mailbox = idling(client)
    started = time.monotonic()
    with pytest.raises(MailConnectionError, match="the connection was closed"):
        mailbox.idle_wait(30, lambda: False)
    assert time.monotonic() - started < 1
    assert mailbox._connection is None, "the dead session is dropped"


def test_an_untagged_bye_is_the_server_closing_the_session():
    client = ScriptedClient([[(b"BYE", b"Server", b"shutting", b"down.")]])
    with pytest.raises(MailConnectionError, match=r"closed the session \(BYE Server shutting down.\)"):
        idling(client).idle_wait(30, lambda: False)
    assert _bye([(1, b"EXISTS"), (b"OK", b"Still here")]) is None


def test_a_stop_request_ends_the_wait_within_one_slice():
    client = ScriptedClient(["wait"] * 100)
    stop_at = time.monotonic() + 0.2
    started = time.monotonic()
    assert not idling(client).idle_wait(30, lambda: time.monotonic() >= stop_at, slice_seconds=0.1)
    assert time.monotonic() - started < 0.5 and client.done


def test_mail_reported_before_idle_returns_at_once_without_idling():
    client = ScriptedClient(["wait"] * 100)
    mailbox = idling(client)
    mailbox._absorb([(5, b"EXISTS")])  # as a NOOP answer would carry it
    assert mailbox.idle_wait(30, lambda: False)
    assert client.checks == 0
