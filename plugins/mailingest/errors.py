"""The exceptions mailingest raises: the whole family, in one place.

Protocol modules translate library errors (imaplib, poplib, ssl, OSError) into these at the
edge, and read what a server's refusal means from its response code there too
(:mod:`mailingest.mailbox.replies`), so the sr3 entry points catch one family, decide by type
(``isinstance``, never by the text of a message) and log each failure once.  Messages say
what failed, where (the account without its secret), and what to check next.

::

    MailError
    ├── ConfigError                   fix the configuration
    │   └── KeyringUnavailableError   no usable keyring backend
    ├── MailConnectionError           transient: reconnect, retry with a backoff
    │   ├── ServerBusyError           the server asked to come back later (a response code)
    │   ├── SessionLimitError         the server refused one more session for the account
    │   ├── SessionBudgetBusyError    every mailSessionMax slot stayed in use for mailSessionWait
    │   └── OAuth2UnavailableError    the token endpoint is down
    ├── TlsError                      fix the CA or tlsRigour
    ├── MailAuthError                 the login was refused
    │   └── OAuth2Error               the authorization server refused (or is down: .transient)
    ├── MailboxError                  a folder could not be selected or listed
    │   └── FolderMissingError        the server says the folder does not exist
    ├── AccountUnavailableError       the download paused the account (retried later)
    ├── MessageGoneError              the message a notice names is gone
    ├── LocalWriteError               the download directory cannot be written
    └── MimeError                     a message could not be decoded
        └── DecodeLimitError          past a decoding bound
"""


class MailError(Exception):
    """Base class of every mailingest error."""


class ConfigError(MailError):
    """An option or URL is missing or wrong; fix the configuration."""


class KeyringUnavailableError(ConfigError):
    """No usable keyring backend (the ``keyring`` package or its backend is missing)."""


class MailConnectionError(MailError):
    """The server could not be reached or the connection broke (transient, retried)."""


class ServerBusyError(MailConnectionError):
    """The server refused with a code that asks to come back later (POP3 ``[IN-USE]``,
    ``[LOGIN-DELAY]``, ``[SYS/TEMP]``; IMAP ``[UNAVAILABLE]``, ``[INUSE]``): transient, retried."""


class SessionLimitError(MailConnectionError):
    """The server refused a session: the account already holds as many as the server allows."""


class SessionBudgetBusyError(MailConnectionError):
    """Every session slot of the account stayed in use for ``mailSessionWait``: retried later."""


class OAuth2UnavailableError(MailConnectionError):
    """The OAuth2 token endpoint is down, unreachable or answers 5xx: transient, retried with a backoff
    (a provider that *refuses* raises :class:`OAuth2Error`, a MailAuthError)."""


class TlsError(MailError):
    """TLS could not be set up or the server certificate is not trusted; fix the CA or tlsRigour."""


class MailAuthError(MailError):
    """The server refused the login (wrong password, expired token, ...)."""


class OAuth2Error(MailAuthError):
    """The authorization server refused or could not be reached; :attr:`code` says how.

    :attr:`code` is the provider's RFC 6749 error code, ``http_<status>`` for an answer that
    is not an OAuth2 error, or ``unreachable``; :attr:`transient` is True when retrying later
    without any change may succeed.
    """

    def __init__(self, message: str, code: str, transient: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.transient = transient


class LocalWriteError(MailError):
    """Writing to the local download directory failed; the OS error is in ``cause``."""

    def __init__(self, directory: str, cause: OSError) -> None:
        super().__init__(f"cannot write to {directory}: {cause.strerror or cause}")
        self.directory = directory
        self.cause = cause

    def describe(self) -> str:
        """``[Errno 30] Read-only file system`` (or the exception text)."""
        if self.cause.errno is not None and self.cause.strerror:
            return f"[Errno {self.cause.errno}] {self.cause.strerror}"
        return str(self.cause)


class MailboxError(MailError):
    """A folder could not be selected or listed."""


class FolderMissingError(MailboxError):
    """The server says the folder does not exist (IMAP ``[NONEXISTENT]``)."""


class AccountUnavailableError(MailError):
    """The download paused the account after a login/TLS failure or a long outage; the notice is
    retried later."""


class MessageGoneError(MailError):
    """The message a notice names is no longer on the server (expunged, moved, UIDVALIDITY changed)."""


class MimeError(MailError):
    """A message could not be decoded at all."""


class DecodeLimitError(MimeError):
    """A message exceeds a decoding bound (depth, parts, bytes); its raw .eml is kept."""


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
