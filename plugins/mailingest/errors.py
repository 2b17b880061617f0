"""The exceptions mailingest raises.

Protocol modules translate library errors (imaplib, poplib, ssl, OSError) into these at the
edge, so the sr3 entry points catch one family and log each failure once.  Messages say what
failed, where (the account without its secret), and what to check next.
"""


class MailError(Exception):
    """Base class of every mailingest error."""


class ConfigError(MailError):
    """An option or URL is missing or wrong; fix the configuration."""


class MailConnectionError(MailError):
    """The server could not be reached or the connection broke (transient, retried)."""


class OAuth2UnavailableError(MailConnectionError):
    """The OAuth2 token endpoint is down, unreachable or answers 5xx: transient, retried with a backoff
    (a provider that *refuses* raises :class:`mailingest.oauth2.endpoint.OAuth2Error`, a MailAuthError)."""


class TlsError(MailError):
    """TLS could not be set up or the server certificate is not trusted; fix the CA or tlsRigour."""


class MailAuthError(MailError):
    """The server refused the login (wrong password, expired token, ...)."""


class MailboxError(MailError):
    """A folder could not be selected or listed."""


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
