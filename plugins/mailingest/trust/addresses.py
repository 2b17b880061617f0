"""Sender addresses: the one ``From:`` address of a message, and the allow-list (``mailAcceptFrom``).

Allow-list items, matched case-insensitively against the authenticated ``From:`` address:

* ``obs@met.example``: that address;
* ``met.example`` (or ``@met.example``): any address at exactly that domain;
* ``*.noaa.gov``: any address at a subdomain of noaa.gov (``a.noaa.gov``, ``x.y.noaa.gov``),
  not at noaa.gov itself (list ``noaa.gov`` too for that).
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mailingest.errors import ConfigError
from mailingest.trust.authres import strip_comments

#: a From: value longer than this is not read (hostile input stays bounded)
MAX_FROM_LENGTH = 4096
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$")
_LOCAL = re.compile(r"^[^\s@\"(),:;<>\[\]\\]{1,64}$")


def normal_domain(domain: str) -> str | None:
    """*domain* in lower case without a trailing dot (IDNA-encoded when not ASCII), None if it is no
    host name with at least two labels."""
    domain = domain.strip().rstrip(".").lower()
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    return domain if "." in domain and _DOMAIN.match(domain) else None


def from_address(values: Sequence[str]) -> tuple[str | None, str | None]:
    """``(address, domain)`` of the message's author, from all its ``From:`` header values; (None, None)
    unless there is exactly one header with exactly one address (DMARC's rule: a message with
    several authors cannot be aligned)."""
    if len(values) != 1 or len(values[0]) > MAX_FROM_LENGTH:
        return None, None
    pairs = [pair for pair in parse_addresses([values[0]]) if pair[1]]
    if len(pairs) != 1:
        return None, None
    address = pairs[0][1].strip()
    local, at, domain = address.rpartition("@")
    norm = normal_domain(domain) if at and local else None
    if norm is None:
        return None, None
    return f"{local}@{norm}".lower(), norm


def parse_addresses(values: Sequence[str]) -> list[tuple[str, str]]:
    """:func:`email.utils.getaddresses` of *values*, comments removed first (the stdlib follows nested
    comments by recursion, so a long run of ``(`` would exhaust the stack); never raises."""
    try:
        return email.utils.getaddresses([strip_comments(value) for value in values])
    except (RecursionError, ValueError, IndexError):
        return []


def is_subdomain(name: str, parent: str) -> bool:
    """*name* is *parent* or a subdomain of it."""
    return name == parent or name.endswith("." + parent)


@dataclass(frozen=True)
class AllowList:
    """``mailAcceptFrom``: addresses, domains and ``*.`` subdomain patterns."""

    addresses: frozenset = frozenset()
    domains: frozenset = frozenset()
    subdomains_of: frozenset = frozenset()

    @classmethod
    def parse(cls, items: Iterable[str], option: str = "mailAcceptFrom") -> AllowList:
        """:raises ConfigError: an item that is no address, domain or ``*.domain``."""
        addresses, domains, parents = set(), set(), set()
        for raw in items:
            item = raw.strip().lower()
            if not item:
                continue
            local, at, domain = item.rpartition("@")
            wildcard = domain.startswith("*.")
            norm = normal_domain(domain[2:] if wildcard else domain)
            if norm is None or (at and local and (wildcard or not _LOCAL.match(local))):
                raise ConfigError(f"{option} {raw!r}: use an address (obs@met.example), a domain (met.example) "
                                  "or a domain's subdomains (*.noaa.gov)")
            if at and local and local != "*":
                addresses.add(f"{local}@{norm}")
            elif wildcard:
                parents.add(norm)
            else:
                domains.add(norm)
        return cls(frozenset(addresses), frozenset(domains), frozenset(parents))

    def __bool__(self) -> bool:
        return bool(self.addresses or self.domains or self.subdomains_of)

    def admits(self, address: str | None) -> bool:
        """True if *address* (as :func:`from_address` gives it) is on the list."""
        if not address:
            return False
        domain = address.rpartition("@")[2]
        return (address in self.addresses or domain in self.domains
                or any(domain.endswith("." + parent) for parent in self.subdomains_of))

    def describe(self) -> str:
        items = sorted(self.addresses) + sorted(self.domains) + [f"*.{p}" for p in sorted(self.subdomains_of)]
        return ",".join(items)
