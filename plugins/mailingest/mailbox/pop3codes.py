"""POP3 extended response codes (RFC 2449, RFC 3206): which ``-ERR`` answers are temporary.

A server that answers ``-ERR [IN-USE]`` (another session holds the maildrop lock),
``-ERR [LOGIN-DELAY]`` or ``-ERR [SYS/TEMP]`` (e.g. ``Server shutting down`` when an
administrator kicks the session) asks the client to come back later: that is a transient
failure to retry, not a wrong password and not a message that is gone.
"""

from __future__ import annotations

import re
from typing import Optional

from mailingest.errors import server_text

#: response codes that mean "try again later"
TEMPORARY_CODES = frozenset({"IN-USE", "LOGIN-DELAY", "SYS/TEMP"})

_CODE = re.compile(r"^-ERR\s*\[([A-Za-z0-9/-]+)\]")


def response_code(answer: str) -> Optional[str]:
    """``SYS/TEMP`` for ``-ERR [SYS/TEMP] Server shutting down.``; None without a code."""
    match = _CODE.match(answer.strip())
    return match.group(1).upper() if match else None


def is_temporary(error: "BaseException | str") -> bool:
    """True when the server's ``-ERR`` (a poplib error or the answer line) asks to retry later."""
    answer = error if isinstance(error, str) else server_text(error)
    return response_code(answer) in TEMPORARY_CODES
