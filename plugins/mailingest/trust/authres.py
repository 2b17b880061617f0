"""``Authentication-Results`` and ``ARC-Authentication-Results`` (RFC 8601, RFC 8617) parsed.

Only what a trust decision needs: the authserv-id, the ARC instance, and each method's result
with its properties (``dkim=pass header.d=example.org``).  Comments (nested), quoted strings and
folding are handled; a header without an authserv-id (Exchange Online writes
``Authentication-Results: spf=pass ...; dkim=pass ...``) parses with ``authserv_id`` None.

Hostile input is bounded: a value longer than :data:`MAX_LENGTH` characters, or with more than
:data:`MAX_RESULTS` results, is not parsed (None), and the work is linear in the length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_LENGTH = 16_384
MAX_RESULTS = 64

_PAIR = re.compile(r'([A-Za-z0-9_./-]+)[ \t]*=[ \t]*("(?:[^"\\]|\\.)*"|[^\s";=]*)')
_INSTANCE = re.compile(r"^\s*i\s*=\s*(\d{1,3})\s*$", re.IGNORECASE)
_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.@:\[\]]+$")


@dataclass(frozen=True)
class MethodResult:
    """One ``method=result`` with its properties (``header.d``, ``smtp.mailfrom`` ...), lower-cased keys."""

    method: str
    result: str
    properties: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        props = " ".join(f"{k}={v}" for k, v in sorted(self.properties.items()))
        return f"{self.method}={self.result}" + (f" {props}" if props else "")


@dataclass(frozen=True)
class AuthResults:
    """One parsed header: who wrote it (``authserv_id``, None if it names nobody) and what it says."""

    authserv_id: str | None
    results: tuple[MethodResult, ...]
    #: the ARC instance (``i=``) of an ARC-Authentication-Results, else None
    instance: int | None = None

    def of(self, method: str) -> list[MethodResult]:
        return [r for r in self.results if r.method == method]


def strip_comments(value: str) -> str:
    """*value* with RFC 5322 comments (nested, backslash-escaped) replaced by a space and quoted
    strings kept; an unclosed comment runs to the end.  Linear time."""
    out: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    for char in value:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(char)
            continue
        if char == "\\":
            escaped = True
            if depth == 0:
                out.append(char)
            continue
        if quoted:
            out.append(char)
            if char == '"':
                quoted = False
            continue
        if char == "(":
            depth += 1
            continue
        if char == ")" and depth:
            depth -= 1
            if depth == 0:
                out.append(" ")
            continue
        if depth:
            continue
        if char == '"':
            quoted = True
        out.append(char)
    return "".join(out)


def _split_semicolons(value: str) -> list[str]:
    """Split at ``;`` outside quoted strings (comments are already gone)."""
    parts: list[str] = []
    start = 0
    quoted = False
    escaped = False
    for index, char in enumerate(value):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ";" and not quoted:
            parts.append(value[start:index])
            start = index + 1
    parts.append(value[start:])
    return parts


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _result_of(segment: str) -> MethodResult | None:
    pairs = _PAIR.findall(segment)
    if not pairs:
        return None
    method, result = pairs[0]
    method = method.split("/", 1)[0].lower()  # dkim/1 -> dkim
    if "." in method or not method:
        return None
    properties: dict[str, str] = {}
    for key, value in pairs[1:]:
        key = key.lower()
        if "." in key or key == "reason":
            properties.setdefault(key, _unquote(value))
    return MethodResult(method=method, result=_unquote(result).lower(), properties=properties)


def parse(value: str, arc: bool = False) -> AuthResults | None:
    """The header's content, or None when it cannot be read (too long, too many results, no
    authserv-id where one is required by ``arc``).  Never raises."""
    if len(value) > MAX_LENGTH:
        return None
    segments = [s.strip() for s in _split_semicolons(" ".join(strip_comments(value).split()))]
    if len(segments) > MAX_RESULTS + 2:
        return None
    instance = None
    if arc:
        match = _INSTANCE.match(segments[0]) if segments else None
        if match is None:
            return None
        instance = int(match.group(1))
        segments = segments[1:]
    if not segments:
        return None
    authserv_id: str | None = None
    head = segments[0]
    if "=" not in head.split(" ", 1)[0]:
        words = head.split()
        if not words:
            return None
        candidate = _unquote(words[0])
        if not _TOKEN.match(candidate):
            return None
        authserv_id = candidate.lower().rstrip(".")
        segments = segments[1:]
    elif arc:
        return None
    results = []
    for segment in segments:
        if not segment or segment.lower() == "none":
            continue
        found = _result_of(segment)
        if found is not None:
            results.append(found)
    return AuthResults(authserv_id=authserv_id, results=tuple(results), instance=instance)


def domain_of(result: MethodResult) -> str | None:
    """The domain a passing result authenticates: ``header.d`` (or ``header.i``'s domain) for dkim,
    ``smtp.mailfrom`` (or ``smtp.helo``) for spf, ``header.from`` for dmarc; lower case."""
    props = result.properties
    if result.method == "dkim":
        value = props.get("header.d") or props.get("header.i", "").rpartition("@")[2]
    elif result.method == "spf":
        value = props.get("smtp.mailfrom", "").rpartition("@")[2] or props.get("smtp.helo", "")
    elif result.method == "dmarc":
        value = props.get("header.from", "").rpartition("@")[2]
    else:
        return None
    value = value.strip().strip("<>").rpartition("@")[2].lower().rstrip(".")
    return value or None
