"""Settings shared by every mail connection, and turning socket/TLS errors into mailingest errors."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from typing import Optional

from mailingest.account import MailAccount
from mailingest.errors import MailConnectionError, MailError, TlsError
from mailingest.tlsconfig import make_ssl_context


@dataclass(frozen=True)
class ConnectionSettings:
    """How to connect: timeouts and TLS policy (from sr3 options, see docs/configuration.md)."""

    timeout: float = 60.0
    tls_rigour: str = "normal"
    ca_file: Optional[str] = None
    #: log in over an unencrypted connection when the server offers no STARTTLS (mailAllowPlaintext)
    allow_plaintext: bool = False
    ssl_context: ssl.SSLContext = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.ssl_context is None:
            object.__setattr__(self, "ssl_context", make_ssl_context(self.tls_rigour, self.ca_file))


def connection_error(account: MailAccount, exc: BaseException, doing: str = "connect to") -> MailError:
    """A :class:`MailError` that says what failed, where, and what to try."""
    where = account.display
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TlsError(
            f"cannot {doing} {where}: server certificate not trusted ({exc.verify_message}); "
            f"set mailCaFile to the CA that signed it, or tlsRigour lax to skip verification"
        )
    if isinstance(exc, ssl.SSLError):
        return TlsError(f"cannot {doing} {where}: TLS failed ({exc.reason or exc}); check the port and scheme")
    if isinstance(exc, socket.gaierror):
        return MailConnectionError(f"cannot {doing} {where}: host name does not resolve ({exc.strerror})")
    if isinstance(exc, ConnectionRefusedError):
        return MailConnectionError(f"cannot {doing} {where}: connection refused; is the server up and the port right?")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return MailConnectionError(f"cannot {doing} {where}: timed out; check the network or raise timeout")
    return MailConnectionError(f"cannot {doing} {where}: {exc.__class__.__name__}: {exc}")
