"""DMARC records, the organizational domain and identifier alignment (RFC 7489, DMARCbis).

The organizational domain is found with DMARCbis's DNS tree walk rather than a public-suffix
list: starting at the domain, ``_dmarc.<name>`` is looked up for it and each parent (at most
:data:`MAX_WALK` names); a record with ``psd=n`` names the organizational domain, a record with
``psd=y`` makes the name one label below it the organizational domain, otherwise the record
closest to the root wins.  When no record is found at all, a domain and its subdomains count as
one organization (``met.example`` and ``mx.met.example``), and unrelated names never do.

The DNS answers come from a *lookup* function the caller supplies (``name -> TXT text or
None``); it raises :class:`LookupTempError` when DNS cannot answer now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from mailingest.trust.addresses import is_subdomain

MAX_WALK = 8
MAX_RECORD = 2048


class LookupTempError(Exception):
    """DNS could not answer now (timeout, SERVFAIL, no server reachable): try again later."""


Lookup = Callable[[str], Optional[str]]


@dataclass(frozen=True)
class DmarcRecord:
    policy: str = "none"
    subdomain_policy: str | None = None
    #: "r" (relaxed, the default) or "s" (strict)
    adkim: str = "r"
    aspf: str = "r"
    #: "y", "n" or None (not given)
    psd: str | None = None


def parse_record(text: str | None) -> DmarcRecord | None:
    """A ``v=DMARC1`` TXT record, or None when *text* is not one."""
    if not text or len(text) > MAX_RECORD:
        return None
    tags: dict[str, str] = {}
    for part in text.split(";"):
        key, eq, value = part.partition("=")
        if eq:
            tags.setdefault(key.strip().lower(), value.strip())
    if tags.get("v", "").upper() != "DMARC1" or not text.strip().lower().startswith("v"):
        return None

    def word(name: str, allowed: tuple, default: str | None) -> str | None:
        value = tags.get(name, "").lower()
        return value if value in allowed else default

    return DmarcRecord(policy=word("p", ("none", "quarantine", "reject"), "none") or "none",
                       subdomain_policy=word("sp", ("none", "quarantine", "reject"), None),
                       adkim=word("adkim", ("r", "s"), "r") or "r", aspf=word("aspf", ("r", "s"), "r") or "r",
                       psd=word("psd", ("y", "n", "u"), None))


def record_of(domain: str, lookup: Lookup) -> DmarcRecord | None:
    """The DMARC record published at ``_dmarc.<domain>``.  :raises LookupTempError:"""
    return parse_record(lookup(f"_dmarc.{domain}"))


def organizational_domain(domain: str, lookup: Lookup) -> str | None:
    """The organizational domain of *domain* by the tree walk (module doc), None when no record was
    found on the way.  :raises LookupTempError:"""
    labels = domain.split(".")
    names = [".".join(labels[i:]) for i in range(len(labels))]
    if len(names) > MAX_WALK:  # the domain itself, then from MAX_WALK - 1 labels up (DMARCbis)
        names = [names[0]] + names[len(names) - (MAX_WALK - 1):]
    highest: str | None = None
    for index, name in enumerate(names):
        record = record_of(name, lookup)
        if record is None:
            continue
        if record.psd == "n":
            return name
        if record.psd == "y":
            return names[index - 1] if index > 0 else name
        highest = name
    return highest


class Alignment:
    """Whether an authenticated domain is aligned with the ``From:`` domain, with the DNS answers
    (the From domain's DMARC record, organizational domains) looked up once per message."""

    def __init__(self, from_domain: str, lookup: Lookup) -> None:
        self.from_domain = from_domain
        self._lookup = lookup
        self._org: dict[str, str | None] = {}
        self._record: DmarcRecord | None = None
        self._record_read = False

    def record(self) -> DmarcRecord | None:
        """The DMARC record that governs the From domain (its own, else its organizational domain's).
        :raises LookupTempError:"""
        if not self._record_read:
            record = record_of(self.from_domain, self._lookup)
            if record is None:
                org = self.org(self.from_domain)
                if org and org != self.from_domain:
                    record = record_of(org, self._lookup)
            self._record, self._record_read = record, True
        return self._record

    def org(self, domain: str) -> str | None:
        if domain not in self._org:
            self._org[domain] = organizational_domain(domain, self._lookup)
        return self._org[domain]

    def aligned(self, domain: str, method: str = "dkim") -> bool:
        """:raises LookupTempError:"""
        if domain == self.from_domain:
            return True
        record = self.record()
        mode = (record.adkim if method == "dkim" else record.aspf) if record else "r"
        if mode == "s":
            return False
        mine, theirs = self.org(self.from_domain), self.org(domain)
        if mine is not None or theirs is not None:
            return mine is not None and mine == theirs
        return is_subdomain(domain, self.from_domain) or is_subdomain(self.from_domain, domain) and "." in domain
