"""Logging in: password or OAuth2 bearer token, for IMAP (imapclient) and POP3 (poplib).

The only place that hands a secret to a protocol library.  Errors come back as
:class:`~mailingest.errors.MailAuthError` naming the account (never the secret) and the
server's reason.
"""

from __future__ import annotations

import base64
import poplib
from typing import Any

from imapclient.exceptions import IMAPClientError, LoginError

from mailingest.account import MailAccount
from mailingest.errors import MailAuthError


def imap_login(client: Any, account: MailAccount) -> None:
    """LOGIN, or AUTHENTICATE XOAUTH2/OAUTHBEARER when the account has a bearer token.

    :raises MailAuthError: the server refused.
    """
    try:
        if account.bearer_token:
            mech = (account.login_method or "XOAUTH2").upper()
            client.oauth2_login(account.username, account.bearer_token, mech=mech)
        else:
            client.login(account.username, account.password or "")
    except LoginError as exc:
        raise MailAuthError(f"login refused for {account.display}: {server_text(exc)}") from None
    except IMAPClientError as exc:
        if exc.__class__.__name__ == "IMAPClientAbortError":
            raise
        raise MailAuthError(f"login failed for {account.display}: {server_text(exc)}") from None


def pop3_login(connection: poplib.POP3, account: MailAccount) -> None:
    """USER/PASS, or AUTH XOAUTH2 when the account has a bearer token.

    :raises MailAuthError: the server refused.
    """
    try:
        if account.bearer_token:
            mech = (account.login_method or "XOAUTH2").upper()
            if mech != "XOAUTH2":
                raise MailAuthError(f"{account.display}: POP3 supports only XOAUTH2 bearer tokens here, not {mech}")
            token = base64.b64encode(
                f"user={account.username}\x01auth=Bearer {account.bearer_token}\x01\x01".encode()
            ).decode("ascii")
            connection._shortcmd(f"AUTH XOAUTH2 {token}")  # poplib has no SASL helper
        else:
            connection.user(account.username)
            connection.pass_(account.password or "")
    except poplib.error_proto as exc:
        raise MailAuthError(f"login refused for {account.display}: {server_text(exc)}") from None


def server_text(exc: BaseException) -> str:
    """The server's words from a library exception, without bytes-repr noise."""
    arg = exc.args[0] if exc.args else ""
    if isinstance(arg, (bytes, bytearray)):
        text = bytes(arg).decode("utf-8", "replace")
    else:
        text = str(arg)
        if text[:2] in ("b'", 'b"') and text[-1:] in ("'", '"'):
            text = text[2:-1]
    return text.strip() or exc.__class__.__name__
