"""Which failures are transient (reconnect and retry) and which need the operator."""

import poplib
import ssl

import pytest
from imapclient.exceptions import IMAPClientError

from mailingest.errors import (
    FolderMissingError,
    MailAuthError,
    MailboxError,
    MailConnectionError,
    ServerBusyError,
    TlsError,
)
from mailingest.mailbox.account import resolve_account
from mailingest.mailbox.connection import connection_error
from mailingest.mailbox.replies import is_temporary, refusal, response_code

ACCOUNT = resolve_account("pops://alice:pw@mail.example.com/", None)


@pytest.mark.parametrize("answer, code", [
    (b"-ERR [SYS/TEMP] Server shutting down.", "SYS/TEMP"),
    (b"-ERR [IN-USE] Mailbox locked by another session", "IN-USE"),
    (b"-ERR [AUTH] Authentication failed.", "AUTH"),
    (b"-ERR no such message", None),
])
def test_the_rfc_2449_response_code_is_read_from_the_servers_answer(answer, code):
    assert response_code(answer.decode()) == code
    assert is_temporary(poplib.error_proto(answer)) == (code in ("SYS/TEMP", "IN-USE"))


def test_login_delay_is_temporary_and_a_wrong_password_is_not():
    assert is_temporary("-ERR [LOGIN-DELAY] wait 5 minutes")
    assert not is_temporary("-ERR [AUTH] Authentication failed.")
    assert not is_temporary("-ERR [SYS/PERM] mailbox corrupt")


@pytest.mark.parametrize("reply, code", [
    (b"[UNAVAILABLE] Temporary authentication failure. [host:2026-11-29 10:00:00]", "UNAVAILABLE"),
    (b"[AUTHENTICATIONFAILED] Authentication failed.", "AUTHENTICATIONFAILED"),
    ("select failed: [NONEXISTENT] Mailbox doesn't exist: Nope", "NONEXISTENT"),
    ("A0003 NO [INUSE] Mailbox in use", "INUSE"),
    ("select failed: Mailbox doesn't exist: [Gmail]/Sent", None),
    ("-ERR no such message [1]", None),
])
def test_the_rfc_5530_response_code_is_read_from_an_imap_refusal(reply, code):
    assert response_code(IMAPClientError(reply) if isinstance(reply, bytes) else reply) == code


@pytest.mark.parametrize("reply, otherwise, raised", [
    ("-ERR [IN-USE] Mailbox locked by another session", MailAuthError, ServerBusyError),
    ("-ERR [SYS/TEMP] Server shutting down.", MailboxError, ServerBusyError),
    ("[UNAVAILABLE] Temporary authentication failure.", MailAuthError, ServerBusyError),
    ("[AUTHENTICATIONFAILED] Authentication failed.", MailAuthError, MailAuthError),
    ("-ERR [AUTH] Authentication failed.", MailAuthError, MailAuthError),
    ("select failed: [NONEXISTENT] Mailbox doesn't exist: Nope", MailboxError, FolderMissingError),
    ("examine failed: [NOPERM] Permission denied", MailboxError, MailboxError),
    ("FETCH failed: [NONEXISTENT] odd", MailConnectionError, MailConnectionError),
])
def test_a_refusal_is_raised_as_the_type_its_response_code_names(reply, otherwise, raised):
    assert refusal(reply, otherwise) is raised


def test_a_server_that_asks_to_come_back_later_is_a_transient_connection_failure():
    assert issubclass(ServerBusyError, MailConnectionError)
    assert issubclass(FolderMissingError, MailboxError)


@pytest.mark.parametrize("doing", ["read headers on", "retrieve from", "log in to", "IDLE on"])
def test_a_tls_session_closed_midway_is_a_lost_connection(doing):
    error = connection_error(ACCOUNT, ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), doing)
    assert isinstance(error, MailConnectionError)
    assert "the connection was closed" in str(error) and "check the port" not in str(error)


@pytest.mark.parametrize("doing", ["connect to", "start TLS with"])
def test_a_tls_handshake_cut_short_points_at_the_port_and_scheme(doing):
    error = connection_error(ACCOUNT, ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), doing)
    assert isinstance(error, TlsError)
    assert "check the port and scheme" in str(error)
