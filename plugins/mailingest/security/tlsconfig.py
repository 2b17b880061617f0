"""TLS contexts for mail connections (and OAuth2 token endpoints), honouring sr3's ``tlsRigour``.

=========  ==================================================================================
tlsRigour  what is checked
=========  ==================================================================================
lax        nothing: no certificate or host name verification (testing only; logged as a warning)
normal     certificate chain and host name, TLS 1.2 or newer (Python's default context);
           ``medium`` is the same
strict     as normal, plus RFC 5280 strict certificate checks (``VERIFY_X509_STRICT``) and, for
           TLS 1.2, only forward-secret AEAD cipher suites (ECDHE with AES-GCM or ChaCha20)
=========  ==================================================================================

``mailCaFile`` adds a CA bundle (PEM) to the system's trusted roots, for servers with a
private CA (the system roots stay trusted, so OAuth2 token endpoints keep working).
"""

from __future__ import annotations

import ssl

from mailingest.errors import ConfigError

RIGOURS = ("lax", "normal", "medium", "strict")
#: tlsRigour when not set
DEFAULT_RIGOUR = "normal"
#: seconds to connect and for each read (mail servers, OAuth2 token endpoints) when sr3's timeout is not set
DEFAULT_TIMEOUT = 60.0
STRICT_TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def make_ssl_context(rigour: str = DEFAULT_RIGOUR, ca_file: str | None = None) -> ssl.SSLContext:
    """Build a client TLS context.

    :raises ConfigError: unknown rigour or unreadable CA file.
    """
    rigour = (rigour or DEFAULT_RIGOUR).lower()
    if rigour not in RIGOURS:
        raise ConfigError(f"tlsRigour {rigour!r} is not one of {', '.join(RIGOURS)}")
    context = ssl.create_default_context()
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
            raise ConfigError(f"cannot load mailCaFile {ca_file!r}: {reason}; it must be a PEM file of CA "
                              f"certificates") from None
    context.minimum_version = max(context.minimum_version, ssl.TLSVersion.TLSv1_2)
    if rigour == "lax":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif rigour == "strict":
        context.verify_flags |= ssl.VERIFY_X509_STRICT
        context.set_ciphers(STRICT_TLS12_CIPHERS)
    return context
