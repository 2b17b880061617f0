"""Logging in: password, a fixed bearer token, or OAuth2 with refresh, for IMAP and POP3.

The only place that hands a secret to a protocol library.  Errors come back as
:class:`~mailingest.errors.MailAuthError` naming the account (never the secret) and the
server's reason.

With OAuth2 (``account.oauth2``) the access token comes from a
:class:`~mailingest.oauth2.tokens.TokenSource` (or, app-only, an
:class:`~mailingest.oauth2.apponly.AppTokenSource`): cached until shortly before expiry, refreshed when
needed, and refreshed once more (then retried once, on the same connection) when the
server refuses it.  The mechanism is XOAUTH2 or OAUTHBEARER (``mailOAuth2Mechanism``, or
``login_method`` in credentials.conf, or chosen from what the server offers).
"""

from __future__ import annotations

import base64
import binascii
import logging
import poplib
from typing import Any

from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from mailingest.errors import MailAuthError, OAuth2UnavailableError, ServerBusyError, server_text
from mailingest.mailbox import sasl
from mailingest.mailbox.account import MailAccount
from mailingest.mailbox.replies import is_temporary, refusal
from mailingest.mailbox.sessionlimit import is_session_limit, session_limit_error
from mailingest.oauth2 import tokens as oauth2
from mailingest.oauth2.endpoint import OAuth2Error

logger = logging.getLogger(__name__)


class _Refused(Exception):
    """The server said no to one authentication attempt (internal to this module)."""

    def __init__(self, server_says: str, detail: str | None = None) -> None:
        super().__init__(f"{server_says} ({detail})" if detail else server_says)


class _ImapSasl:
    """An IMAP session's ways to log in: LOGIN, or AUTHENTICATE."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def password_login(self, username: str, password: str) -> None:
        self.client.login(username, password)

    def offered(self) -> list[str]:
        return [c.decode("ascii", "replace")[5:] for c in self.client.capabilities() if c.upper().startswith(b"AUTH=")]

    def authenticate(self, mechanism: str, message: bytes) -> None:
        challenges: list[bytes] = []

        def respond(challenge: bytes) -> bytes:
            challenges.append(challenge)
            return message if len(challenges) == 1 else sasl.ERROR_ACK[mechanism]

        try:
            self.client.sasl_login(mechanism, respond)
        except LoginError as exc:
            if isinstance(exc.__context__, IMAPClientAbortError):
                raise exc.__context__ from None
            if is_temporary(exc):
                raise  # imap_login turns it into a transient error
            detail = sasl.describe_challenge(challenges[-1]) if len(challenges) > 1 else None
            raise _Refused(server_text(exc), detail) from None


class _Pop3Sasl:
    """RFC 5034 AUTH without an initial response (long tokens exceed POP3's 255-octet lines)."""

    def __init__(self, connection: poplib.POP3) -> None:
        self.conn = connection

    def password_login(self, username: str, password: str) -> None:
        self.conn.user(username)
        self.conn.pass_(password)

    def offered(self) -> list[str]:
        try:
            return list(self.conn.capa().get("SASL", []))
        except poplib.error_proto:
            return []

    def authenticate(self, mechanism: str, message: bytes) -> None:
        conn: Any = self.conn  # poplib has no SASL helper: use its line primitives
        conn._putcmd(f"AUTH {mechanism}")
        line, _ = conn._getline()
        if is_temporary(_pop_text(line)):
            raise poplib.error_proto(line)  # pop3_login turns it into a transient error
        if not line.startswith(b"+") or line.startswith(b"+OK"):
            raise _Refused(_pop_text(line))
        conn._putcmd(base64.b64encode(message).decode("ascii"))
        line, _ = conn._getline()
        if line.startswith(b"+OK"):
            return
        detail = None
        if line.startswith(b"+"):  # an error challenge: acknowledge it, then read the -ERR
            try:
                detail = sasl.describe_challenge(base64.b64decode(line[1:].strip()))
            except (binascii.Error, ValueError):
                detail = None
            conn._putcmd(base64.b64encode(sasl.ERROR_ACK[mechanism]).decode("ascii"))
            line, _ = conn._getline()
        if is_temporary(_pop_text(line)):
            raise poplib.error_proto(line)  # pop3_login turns it into a transient error
        raise _Refused(_pop_text(line), detail)


def imap_login(client: Any, account: MailAccount) -> None:
    """LOGIN, or AUTHENTICATE XOAUTH2/OAUTHBEARER with a bearer token.

    :raises MailAuthError: the server refused, or no OAuth2 token could be obtained.
    :raises MailConnectionError: the server answered with a temporary code (RFC 2449/3206).
    """
    try:
        _log_in(_ImapSasl(client), account)
    except LoginError as exc:
        if is_session_limit(server_text(exc)):
            raise session_limit_error(account.display, server_text(exc)) from None
        if is_temporary(exc):  # NO [UNAVAILABLE]: the server's authentication back end is down, ...
            raise _busy(account, exc) from None
        raise MailAuthError(_refused(account, exc)) from None
    except IMAPClientError as exc:
        if is_session_limit(server_text(exc)):  # some servers answer BYE (an abort) at the login
            raise session_limit_error(account.display, server_text(exc)) from None
        if isinstance(exc, IMAPClientAbortError):
            raise
        raise refusal(exc, MailAuthError)(f"login failed for {account.display}: {server_text(exc)}") from None


def pop3_login(connection: poplib.POP3, account: MailAccount) -> None:
    """USER/PASS, or AUTH XOAUTH2/OAUTHBEARER with a bearer token.

    :raises MailAuthError: the server refused, or no OAuth2 token could be obtained.
    :raises MailConnectionError: the server answered with a temporary code (RFC 2449/3206).
    """
    try:
        _log_in(_Pop3Sasl(connection), account)
    except poplib.error_proto as exc:
        if is_session_limit(server_text(exc)):
            raise session_limit_error(account.display, server_text(exc)) from None
        if is_temporary(exc):  # maildrop locked by another session, server shutting down, ...
            raise _busy(account, exc) from None
        raise MailAuthError(_refused(account, exc)) from None


def _log_in(session: Any, account: MailAccount) -> None:
    """With a bearer token (OAuth2, or a fixed one) over SASL, else with the password."""
    if account.oauth2 is not None or account.bearer_token:
        _bearer_login(session, account)
    else:
        session.password_login(account.username, account.password or "")


def _refused(account: MailAccount, exc: Exception) -> str:
    """A refused login, with what to check when it was a password login."""
    hint = "" if account.oauth2 is not None or account.bearer_token else (
        "; check the account's password in credentials.conf (percent-encoded, docs/authentication.md) "
        "or in the keyring")
    return f"login refused for {account.display}: {server_text(exc)}{hint}"


def _bearer_login(session: Any, account: MailAccount) -> None:
    client = account.oauth2
    requested = account.login_method or "auto"
    if client is not None and client.mechanism != "auto":
        requested = client.mechanism
    if requested.upper() not in (*sasl.OAUTH_MECHANISMS, "AUTO"):
        requested = "auto"  # login_method=PLAIN etc. is about passwords
    offered = session.offered()
    mechanism = sasl.choose(requested, offered)
    if offered and mechanism not in {m.upper() for m in offered}:
        raise MailAuthError(f"{account.display} does not offer {mechanism} login (it offers {' '.join(offered)}); "
                            f"set mailOAuth2Mechanism to one it offers, or check the server accepts OAuth2")
    if client is None:
        _static_token_login(session, account, mechanism)
        return
    source = oauth2.token_source(client, account.username, account.display)
    token = _access_token(source)
    try:
        session.authenticate(mechanism, _message(mechanism, account, token))
        return
    except _Refused as exc:
        logger.info("%s refused the OAuth2 access token (%s); refreshing it and trying once more", account.display, exc)
    token = _access_token(source, rejected=token)
    try:
        session.authenticate(mechanism, _message(mechanism, account, token))
    except _Refused as exc:
        raise MailAuthError(
            f"login refused for {account.display} with a fresh OAuth2 access token ({mechanism}): {exc}; "
            f"{_refused_token_hint(account)}") from None


def _refused_token_hint(account: MailAccount) -> str:
    """What to check when the mail server refuses a fresh token, for the flow that got it."""
    client = account.oauth2
    assert client is not None
    protocol = account.protocol.upper()
    if client.flow == "client_credentials":
        return (f"the token is app-only: check that Exchange Online knows the application {client.client_id} (New-ServicePrincipal), that "
                f"it has FullAccess to {account.username} (Add-MailboxPermission), that the app has the "
                f"{'POP' if protocol == 'POP3' else 'IMAP'}.AccessAsApp permission with admin consent and that "
                f"the mailbox allows {protocol} (docs/authentication.md)")
    if client.flow == "service_account":
        return (f"the token is app-only: check that {account.username} is a user the service account may act for and that the "
                f"mailbox allows {protocol} access")
    return (f"check that the token is for user {account.username} with scope {client.scope!r} and that the "
            f"mailbox allows {protocol} access")


def _access_token(source: oauth2.AccessTokenSource, rejected: str | None = None) -> str:
    """An access token from *source*.

    :raises OAuth2UnavailableError: the token endpoint is down, unreachable or answers 5xx/429
        (a transient failure: retried with a backoff, like a mail server that is down).
    :raises OAuth2Error: the provider refused (invalid_grant, invalid_client...): fix the configuration.
    """
    try:
        return source.access_token(rejected=rejected)
    except OAuth2Error as exc:
        if exc.transient:
            raise OAuth2UnavailableError(str(exc)) from None
        raise


def _static_token_login(session: Any, account: MailAccount, mechanism: str) -> None:
    try:
        session.authenticate(mechanism, _message(mechanism, account, account.bearer_token or ""))
    except _Refused as exc:
        raise MailAuthError(
            f"login refused for {account.display} with the bearer_token from credentials.conf ({mechanism}): {exc}; "
            f"such a token expires: set mailOAuth2Provider so mailingest refreshes it (docs/authentication.md)"
        ) from None


def _message(mechanism: str, account: MailAccount, token: str) -> bytes:
    return sasl.initial_response(mechanism, account.username, token, account.host, account.port)


def _pop_text(line: bytes) -> str:
    return line.decode("utf-8", "replace").strip() or "no answer"


def _busy(account: MailAccount, exc: Exception) -> ServerBusyError:
    """A login the server answered with a code that asks to come back later."""
    return ServerBusyError(f"{account.display} cannot take a login now: {server_text(exc)}; will retry")
