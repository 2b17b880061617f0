"""A private DNS server (dnsmasq) on loopback, serving TXT records from its own config: DKIM keys
and DMARC records for the trust tests.

Every name under the served zones (``local=/<zone>/``) that has no record is answered NXDOMAIN
at once, and nothing is forwarded (``no-resolv``), so the server never asks the real DNS.
Stopping it makes every lookup fail (a DNS outage: ``temperror``); :meth:`start` brings it back
on the same port.

Example::

    with DnsmasqServer(tmp / "dns", {"sel._domainkey.met.test": "v=DKIM1; k=rsa; p=..."},
                       zones=["test"]) as dns:
        resolver_address = f"{dns.host}:{dns.port}"
"""

from __future__ import annotations

import logging
import os
import pwd
from collections.abc import Iterable, Mapping
from pathlib import Path

import dns.exception
import dns.message
import dns.query

from . import process
from .debian import ensure_packages
from .ports import LOOPBACK, free_port

logger = logging.getLogger(__name__)

PACKAGES = {"dnsmasq": "dnsmasq-base"}
#: a TXT character-string holds at most 255 bytes; longer records are split into several
_TXT_CHUNK = 255


def _quoted_chunks(text: str) -> str:
    chunks = [text[i:i + _TXT_CHUNK] for i in range(0, len(text), _TXT_CHUNK)] or [""]
    for chunk in chunks:
        if '"' in chunk or "\n" in chunk:
            raise ValueError(f"TXT text with a quote or newline is not supported here: {chunk!r}")
    return ",".join(f'"{chunk}"' for chunk in chunks)


class DnsmasqServer(process.ManagedServer):
    """dnsmasq answering TXT queries for *records* (name -> text) on 127.0.0.1 (UDP and TCP).

    :param zones: domains answered locally (NXDOMAIN for names without a record).
    """

    def __init__(self, base_dir: Path, records: Mapping[str, str], zones: Iterable[str] = ("test",)) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.host = LOOPBACK
        self.port = free_port(self.host)
        self.records = dict(records)
        self.zones = list(zones)
        self.config_path = self.base_dir / "dnsmasq.conf"
        self.log_path = self.base_dir / "dnsmasq.log"
        self.binary = ensure_packages(PACKAGES)["dnsmasq"]
        self._process: process.ServerProcess | None = None
        self._write_config()
        process.register(self)

    @property
    def address(self) -> str:
        """``host:port``, as ``mailDnsServers`` takes it."""
        return f"{self.host}:{self.port}"

    def config_text(self) -> str:
        lines = [
            f"port={self.port}",
            f"listen-address={self.host}",
            "bind-interfaces",
            "no-resolv",
            "no-hosts",
            "no-poll",
            "keep-in-foreground",
            "pid-file=",
            f"user={pwd.getpwuid(os.getuid()).pw_name}",
            f"log-facility={self.log_path}",
            "log-queries",
            "cache-size=0",
        ]
        lines += [f"local=/{zone}/" for zone in self.zones]
        lines += [f"txt-record={name},{_quoted_chunks(text)}" for name, text in sorted(self.records.items())]
        return "\n".join(lines) + "\n"

    def _write_config(self) -> None:
        self.config_path.write_text(self.config_text(), encoding="utf-8")

    def start(self, timeout: float = 15) -> None:
        if self.pid is not None:
            return
        self._process = process.ServerProcess(
            "dnsmasq", [self.binary, f"--conf-file={self.config_path}"],
            console_path=self.base_dir / "dnsmasq.console.log")
        self._process.start()
        why = process.wait_for(self._ready, self._process, timeout)
        if why is not None:
            log = process.tail(self.base_dir / "dnsmasq.console.log")
            self._process.stop()
            raise RuntimeError(f"dnsmasq on {self.address}: {why}\n{log}")

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()

    def _ready(self) -> bool:
        """It answers a query over UDP, as the resolvers under test ask (a TCP connection alone
        was accepted while a restarted dnsmasq still let the first UDP lookup time out)."""
        query = dns.message.make_query(f"ready.{self.zones[0] if self.zones else 'test'}", "TXT")
        try:
            dns.query.udp(query, self.host, timeout=0.5, port=self.port)
        except (OSError, dns.exception.DNSException):
            return False
        return True
