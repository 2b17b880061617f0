"""SASL messages for bearer-token logins: XOAUTH2 (Google/Microsoft) and OAUTHBEARER (RFC 7628).

Pure functions, no I/O: :mod:`mailingest.mailbox.auth` sends what they build.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

OAUTH_MECHANISMS = ("XOAUTH2", "OAUTHBEARER")
#: what the client answers to a server's error challenge, per mechanism
ERROR_ACK = {"XOAUTH2": b"", "OAUTHBEARER": b"\x01"}


def initial_response(mechanism: str, user: str, token: str, host: str = "", port: int = 0) -> bytes:
    """The client's first (and normally only) message for *mechanism*.

    :raises ValueError: an unknown mechanism.
    """
    if mechanism == "XOAUTH2":
        return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()
    if mechanism == "OAUTHBEARER":
        authzid = user.replace("=", "=3D").replace(",", "=2C")
        where = (f"host={host}\x01" if host else "") + (f"port={port}\x01" if port else "")
        return f"n,a={authzid},\x01{where}auth=Bearer {token}\x01\x01".encode()
    raise ValueError(f"not a bearer-token SASL mechanism: {mechanism}")


def choose(requested: str, offered: Iterable[str]) -> str:
    """The mechanism to use: *requested* unless ``auto``; then XOAUTH2 when the server offers it
    (Gmail and Microsoft 365 both do), else OAUTHBEARER when offered, else XOAUTH2."""
    requested = (requested or "auto").upper()
    if requested != "AUTO":
        return requested
    offered = {m.upper() for m in offered}
    return "OAUTHBEARER" if "OAUTHBEARER" in offered and "XOAUTH2" not in offered else "XOAUTH2"


def describe_challenge(challenge: bytes) -> str | None:
    """The error a server put in its challenge after a refused token, e.g. ``status 401``.

    Both mechanisms answer a bad token with a JSON object (``{"status": "401", "schemes":
    "bearer", "scope": "..."}``) before the final failure.
    """
    try:
        data = json.loads(challenge.decode("utf-8", "replace"))
    except ValueError:
        return None
    if not isinstance(data, dict) or "status" not in data:
        return None
    status = str(data["status"])[:40]
    scope = str(data.get("scope") or "")[:200]
    return f"status {status}" + (f", scope {scope}" if scope else "")
