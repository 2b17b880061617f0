"""ImapMailbox.idle_wait over a real socket, against a scripted server: what ends an IDLE wait, and
that no line is ever lost half-read (imapclient's idle_check loses one that arrives in pieces)."""

from __future__ import annotations

import imaplib
import socket
import threading
import time
from typing import Callable

from mailingest.errors import MailboxError, MailConnectionError
from mailingest.mailbox.account import resolve_account
from mailingest.mailbox.connection import ConnectionSettings
from mailingest.mailbox.idle import count_response, farewell
from mailingest.mailbox.imap import ImapMailbox

ACCOUNT = resolve_account("imaps://alice:pw@mail.example.com/", None)


class ScriptedServer:
    """The server end of a socket pair: reads the client's lines, sends what a script says."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = sock.makefile("rb")
        self.received: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def expect(self, command: bytes) -> bytes:
        """Read the client's next line, which must be ``command`` (after the tag); its tag."""
        line = self.reader.readline().rstrip(b"\r\n")
        self.received.append(line)
        tag, _, rest = line.partition(b" ")
        assert rest.upper() == command, line
        return tag

    def expect_line(self, expected: bytes) -> None:
        line = self.reader.readline().rstrip(b"\r\n")
        self.received.append(line)
        assert line == expected, line


class SocketIMAP4(imaplib.IMAP4):
    """imaplib on a given socket (the client end of the pair) instead of a TCP connection."""

    def __init__(self, sock: socket.socket) -> None:
        self._given = sock
        super().__init__("scripted")

    def open(self, host: str = "", port: int = 143, timeout: float | None = None) -> None:
        self.host, self.port = host, port
        self.sock = self._given
        self.file = self.sock.makefile("rb")


class Client:
    """The part of imapclient's IMAPClient that idle_wait uses."""

    def __init__(self, imap: imaplib.IMAP4) -> None:
        self._imap = imap

    def socket(self) -> socket.socket:
        return self._imap.sock

    def shutdown(self) -> None:
        self._imap.shutdown()


def run_idle(script: Callable[[ScriptedServer, bytes], None], wait: float = 30,
             should_stop: Callable[[], bool] = lambda: False, pending: bool = False):
    """idle_wait against ``script(server, idle_tag)``; (result or exception, seconds, whether the
    session was kept, server)."""
    client_end, server_end = socket.socketpair()
    client_end.settimeout(5)
    server = ScriptedServer(server_end)

    def serve() -> None:
        server.send(b"* OK scripted server ready\r\n")
        tag = server.expect(b"CAPABILITY")
        server.send(b"* CAPABILITY IMAP4rev1 IDLE\r\n" + tag + b" OK done\r\n")
        if not pending:
            script(server, server.expect(b"IDLE"))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    mailbox = ImapMailbox(ACCOUNT, ConnectionSettings(timeout=5))
    mailbox._connection = Client(SocketIMAP4(client_end))
    mailbox._status = {"uidvalidity": 1, "uidnext": 5, "exists": 4}
    if pending:
        mailbox._absorb([(5, b"EXISTS")])  # as a NOOP answer would carry it
    started = time.monotonic()
    try:
        outcome: object = mailbox.idle_wait(wait, should_stop, slice_seconds=0.05)
    except (MailboxError, MailConnectionError) as exc:
        outcome = exc
    took = time.monotonic() - started
    thread.join(5)
    kept = mailbox._connection is not None
    if kept:
        mailbox._drop()
    server.reader.close()
    server_end.close()
    client_end.close()
    return outcome, took, kept, server


def finish(server: ScriptedServer, tag: bytes) -> None:
    server.expect_line(b"DONE")
    server.send(tag + b" OK Idle completed.\r\n")


def test_new_mail_ends_the_wait_at_once():
    def script(server, tag):
        server.send(b"+ idling\r\n")
        time.sleep(0.2)
        server.send(b"* 5 EXISTS\r\n* 1 RECENT\r\n")
        finish(server, tag)
    outcome, took, kept, server = run_idle(script)
    assert outcome is True and took < 2
    assert server.received[-1] == b"DONE" and kept


def test_a_line_that_arrives_in_pieces_is_read_whole_and_the_session_stays_in_step():
    def script(server, tag):
        server.send(b"+ idling\r\n* OK Still here\r\n* 5 EX")
        time.sleep(0.3)
        server.send(b"ISTS\r\n")
        finish(server, tag)
    outcome, took, kept, _ = run_idle(script)
    assert outcome is True, outcome
    assert kept, "the session is kept: it is in step with the server"


def test_mail_reported_before_the_continuation_counts_as_arrived():
    def script(server, tag):
        server.send(b"* 5 EXISTS\r\n+ idling\r\n")
        finish(server, tag)
    outcome, took, _, _ = run_idle(script)
    assert outcome is True and took < 2


def test_a_quiet_server_is_waited_for_until_the_time_is_up_without_being_taken_for_closed():
    def script(server, tag):
        server.send(b"+ idling\r\n")
        finish(server, tag)
    outcome, took, kept, server = run_idle(script, wait=0.4)
    assert outcome is False and 0.4 <= took < 2
    assert server.received[-1] == b"DONE" and kept


def test_still_here_keepalives_do_not_end_the_wait():
    def script(server, tag):
        server.send(b"+ idling\r\n")
        for _ in range(4):
            time.sleep(0.1)
            server.send(b"* OK Still here\r\n")
        finish(server, tag)
    outcome, took, _, _ = run_idle(script, wait=0.8)
    assert outcome is False and took >= 0.8


def test_a_connection_closed_by_the_server_is_noticed_at_once_not_when_the_time_is_up():
    def script(server, tag):
        server.send(b"+ idling\r\n")
        time.sleep(0.1)
        server.sock.shutdown(socket.SHUT_RDWR)
    outcome, took, kept, _ = run_idle(script)
    assert isinstance(outcome, MailConnectionError) and "the connection was closed" in str(outcome)
    assert took < 2 and not kept, "the dead session is dropped"


def test_an_untagged_bye_is_the_server_closing_the_session():
    def script(server, tag):
        server.send(b"+ idling\r\n* BYE Server shutting down.\r\n")
    outcome, _, kept, _ = run_idle(script)
    assert isinstance(outcome, MailConnectionError)
    assert "closed the session (BYE Server shutting down.)" in str(outcome) and not kept


def test_a_refused_idle_is_an_error_and_the_session_is_not_reused():
    def script(server, tag):
        server.send(tag + b" BAD IDLE not allowed now\r\n")
    outcome, _, kept, _ = run_idle(script)
    assert isinstance(outcome, MailboxError) and "IDLE not allowed now" in str(outcome)
    assert not kept


def test_a_stop_request_ends_the_wait_within_one_slice():
    stop_at = time.monotonic() + 0.3

    def script(server, tag):
        server.send(b"+ idling\r\n")
        finish(server, tag)
    outcome, took, _, _ = run_idle(script, should_stop=lambda: time.monotonic() >= stop_at)
    assert outcome is False and took < 1


def test_mail_reported_before_idle_returns_at_once_without_idling():
    outcome, took, _, server = run_idle(lambda server, tag: None, pending=True)
    assert outcome is True and took < 0.5
    assert not any(line.endswith(b"IDLE") for line in server.received)


def test_untagged_lines_are_read_for_counts_and_farewells_only():
    assert count_response(b"* 12 EXISTS") == (12, b"EXISTS")
    assert count_response(b"* 3 expunge") == (3, b"EXPUNGE")
    assert count_response(b"* 3 FETCH (FLAGS (\\Seen))") is None
    assert count_response(b"* OK Still here") is None
    assert farewell(b"* BYE Autologout") == "BYE Autologout"
    assert farewell(b"* OK Still here") is None
