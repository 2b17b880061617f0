"""TLS contexts for mail connections, honouring sr3's ``tlsRigour``.

=========  ==================================================================
tlsRigour  what is checked
=========  ==================================================================
lax        nothing: no certificate or host name verification (testing only)
normal     certificate chain and host name (Python's default context); also ``medium``
strict     as normal, and TLS 1.2 or newer only
=========  ==================================================================

``mailCaFile`` adds a CA bundle (PEM) to the trusted roots, for servers with a private CA.
"""

from __future__ import annotations

import ssl
from typing import Optional

from mailingest.errors import ConfigError

RIGOURS = ("lax", "normal", "medium", "strict")


def make_ssl_context(rigour: str = "normal", ca_file: Optional[str] = None) -> ssl.SSLContext:
    """Build a client TLS context.

    :raises ConfigError: unknown rigour or unreadable CA file.
    """
    rigour = (rigour or "normal").lower()
    if rigour not in RIGOURS:
        raise ConfigError(f"tlsRigour {rigour!r} is not one of {', '.join(RIGOURS)}")
    try:
        context = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load mailCaFile {ca_file!r}: {exc}") from None
    if rigour == "lax":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif rigour == "strict":
        context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
