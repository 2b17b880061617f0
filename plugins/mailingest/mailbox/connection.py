"""Settings shared by every mail connection, and turning socket/TLS errors into mailingest errors."""

from __future__ import annotations

import logging
import socket
import ssl
from dataclasses import dataclass, field

from mailingest.errors import MailConnectionError, MailError, TlsError
from mailingest.mailbox.account import MailAccount
from mailingest.oauth2.config import OAuth2Settings
from mailingest.security.tlsconfig import DEFAULT_RIGOUR, DEFAULT_TIMEOUT, make_ssl_context

logger = logging.getLogger(__name__)

# OpenSSL X509_V_ERR_* codes that need a different remedy than "trust the CA"
_HOSTNAME_MISMATCH = (62, 64)  # HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH
_EXPIRED = (9, 10)  # CERT_NOT_YET_VALID, CERT_HAS_EXPIRED
#: the ``doing`` of connection_error while TLS is being set up (other steps run inside a TLS session)
_TLS_SETUP = ("connect to", "start TLS with")


@dataclass(frozen=True)
class ConnectionSettings:
    """How to connect and log in: timeouts, TLS policy, OAuth2 (from sr3 options, see
    docs/authentication.md)."""

    timeout: float = DEFAULT_TIMEOUT
    tls_rigour: str = DEFAULT_RIGOUR
    ca_file: str | None = None
    #: log in over an unencrypted connection when the server offers no STARTTLS (mailAllowPlaintext)
    allow_plaintext: bool = False
    #: log in with OAuth2 (mailOAuth2Provider and friends); None: password or bearer_token
    oauth2: OAuth2Settings | None = None
    ssl_context: ssl.SSLContext = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.ssl_context is None:
            object.__setattr__(self, "ssl_context", make_ssl_context(self.tls_rigour, self.ca_file))
            if self.tls_rigour.lower() == "lax":
                logger.warning("tlsRigour lax: mail server certificates and host names are NOT verified")


def connection_error(account: MailAccount, exc: BaseException, doing: str = "connect to") -> MailError:
    """A :class:`MailError` that says what failed, where, and what to try."""
    where = account.display
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _verify_error(where, doing, exc)
    if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)) and doing not in _TLS_SETUP:
        # TLS was up: the server (or something between) closed the connection mid-session
        return MailConnectionError(f"cannot {doing} {where}: the connection was closed ({_reason(exc)})")
    if isinstance(exc, ssl.SSLError):
        return TlsError(f"cannot {doing} {where}: TLS failed ({_reason(exc)}); check the port and scheme "
                        f"(imaps/pops for implicit TLS, imap/pop for STARTTLS)")
    if isinstance(exc, socket.gaierror):
        return MailConnectionError(f"cannot {doing} {where}: host name does not resolve ({exc.strerror})")
    if isinstance(exc, ConnectionRefusedError):
        return MailConnectionError(f"cannot {doing} {where}: connection refused; is the server up and the port right?")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return MailConnectionError(f"cannot {doing} {where}: timed out; check the network or raise timeout")
    return MailConnectionError(f"cannot {doing} {where}: {exc.__class__.__name__}: {exc}")


def _reason(exc: ssl.SSLError) -> str:
    return str(getattr(exc, "reason", None) or exc)


def _verify_error(where: str, doing: str, exc: ssl.SSLCertVerificationError) -> TlsError:
    why = exc.verify_message or str(exc.reason or exc)
    if exc.verify_code in _HOSTNAME_MISMATCH:
        return TlsError(f"cannot {doing} {where}: the server certificate is not for this host name ({why}); "
                        f"use the host name the certificate names, or tlsRigour lax to skip verification")
    if exc.verify_code in _EXPIRED:
        return TlsError(f"cannot {doing} {where}: the server certificate is outside its validity period ({why}); "
                        f"the server must renew it (or check this host's clock)")
    return TlsError(f"cannot {doing} {where}: server certificate not trusted ({why}); "
                    f"set mailCaFile to the CA that signed it, or tlsRigour lax to skip verification")
