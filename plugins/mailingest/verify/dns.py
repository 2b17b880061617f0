"""TXT lookups with a deadline, through the system resolver or the servers the operator names
(``mailDnsServers 127.0.0.1:5353``).  No answer (NXDOMAIN, no TXT record) is None; a lookup that
cannot be answered now (timeout, SERVFAIL/REFUSED from every server, no server reachable)
raises :class:`~mailingest.trust.dmarc.LookupTempError`, which the verdict turns into
``temperror``, never ``fail``.

Answers (a record or its absence) are kept for their TTL, at most :data:`CACHE_SECONDS`, so a
cycle of many messages from one domain asks DNS once per name; a failure is never kept.  After a
failure, every lookup not answered from the cache fails at once until :meth:`TxtResolver.retry`
(the poll calls it for each folder it checks), so a DNS outage costs one timeout per folder and
cycle, not one per message."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mailingest.errors import ConfigError
from mailingest.trust.dmarc import LookupTempError

if TYPE_CHECKING:
    import dns.resolver

logger = logging.getLogger(__name__)

CACHE_SECONDS = 300.0
CACHE_ENTRIES = 10_000


def parse_server(text: str) -> tuple[str, int]:
    """``host`` or ``host:port`` (``[v6]:port``) as (address, port).  :raises ConfigError:"""
    text = text.strip()
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port = _port(text, rest[1:])
    elif text.count(":") == 1:
        host, _, digits = text.partition(":")
        port = _port(text, digits)
    if not host:
        raise ConfigError(f"mailDnsServers {text!r}: use an IP address, optionally with :port (127.0.0.1:5353)")
    return host, port


def _port(text: str, digits: str) -> int:
    if not digits.isdigit() or not 0 < int(digits) < 65536:
        raise ConfigError(f"mailDnsServers {text!r}: the port must be a number from 1 to 65535")
    return int(digits)


class TxtResolver:
    """TXT records by name.  :param servers: ``host[:port]`` items; empty: /etc/resolv.conf."""

    def __init__(self, servers: Sequence[str] = (), timeout: float = 5.0) -> None:
        # dnspython costs ~20 ms to import: only a poll that screens senders loads it, when it starts
        import dns.nameserver
        import dns.resolver

        if servers:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [dns.nameserver.Do53Nameserver(host, port)
                                    for host, port in (parse_server(s) for s in servers)]
        else:
            try:
                resolver = dns.resolver.Resolver()
            except dns.resolver.NoResolverConfiguration as exc:
                raise ConfigError(f"no DNS resolver configured ({exc}): set mailDnsServers") from None
        resolver.timeout = timeout
        resolver.lifetime = timeout
        self._resolver: dns.resolver.Resolver = resolver
        self.timeout = timeout
        self._cache: dict[str, tuple[float, list[str]]] = {}
        self._failed: str | None = None

    def retry(self) -> None:
        """Ask DNS again (after a failure, lookups fail at once until this is called)."""
        self._failed = None

    def txt(self, name: str) -> list[str]:
        """Every TXT record at *name*, each record's strings joined; [] when there is none.

        :raises LookupTempError: DNS could not answer now.
        """
        key = name.lower()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        if self._failed is not None:
            raise LookupTempError(f"{name} not looked up: {self._failed}")
        try:
            records, ttl = self._ask(name)
        except LookupTempError as exc:
            self._failed = f"DNS failed earlier ({exc})"
            raise
        if len(self._cache) >= CACHE_ENTRIES:
            self._cache.clear()
        self._cache[key] = (time.monotonic() + min(ttl, CACHE_SECONDS), records)
        return records

    def _ask(self, name: str) -> tuple[list[str], float]:
        import dns.exception
        import dns.name
        import dns.resolver

        try:
            answer = self._resolver.resolve(dns.name.from_text(name), "TXT", raise_on_no_answer=False,
                                            search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.YXDOMAIN, dns.resolver.NoAnswer):
            return [], CACHE_SECONDS
        except dns.resolver.NoNameservers as exc:
            raise LookupTempError(f"no DNS server answered for {name}: {exc}") from None
        except dns.exception.Timeout:
            raise LookupTempError(f"DNS lookup of {name} timed out after {self.timeout:g} s") from None
        except (dns.name.EmptyLabel, dns.name.LabelTooLong, dns.name.NameTooLong, dns.name.BadEscape):
            return [], CACHE_SECONDS  # no such name can exist
        except dns.exception.DNSException as exc:
            raise LookupTempError(f"DNS lookup of {name} failed: {exc}") from None
        if answer.rrset is None:  # no TXT record (NOERROR, no data)
            return [], CACHE_SECONDS
        return ([b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer.rrset],
                float(answer.rrset.ttl))

    def first(self, name: str, prefix: str) -> str | None:
        """The TXT record at *name* starting with *prefix* (case-insensitive), else the only one."""
        records = self.txt(name)
        for record in records:
            if record.lstrip().lower().startswith(prefix.lower()):
                return record
        return records[0] if len(records) == 1 and not prefix.lower().startswith("v=dmarc") else None
