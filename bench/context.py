"""What every scenario shares: the private servers, sample mail, accounts and sr3 homes."""

from __future__ import annotations

import logging
import os
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # tests.servers, tests.sr3env, tests.mailgen
    sys.path.insert(0, str(REPO))

from tests.mailgen import sample_message  # noqa: E402
from tests.servers import DovecotAccount, DovecotServer, RabbitMQServer  # noqa: E402
from tests.sr3env import Sr3Home  # noqa: E402

logger = logging.getLogger(__name__)

#: size of the end-to-end messages (a text body, a CSV and a PDF-like attachment)
MESSAGE_BYTES = 70_000


@dataclass(frozen=True)
class RunningBroker:
    """A RabbitMQ that is already running (``bench/run.py --broker URL``): the bench only connects."""

    url: str
    host: str
    port: int
    user: str

    @classmethod
    def from_url(cls, url: str) -> RunningBroker:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "amqp" or not parsed.hostname or not parsed.username:
            raise ValueError(f"--broker {parsed.scheme}://{parsed.hostname}...: give amqp://USER:PASSWORD@HOST:PORT/")
        return cls(url, parsed.hostname, parsed.port or 5672, urllib.parse.unquote(parsed.username))

    def close(self) -> None:
        """Not ours to stop."""


@dataclass
class BenchContext:
    """Servers and knobs for one bench run.

    :param messages: N, the number of ~70 KB messages of the throughput scenarios.
    :param quick: reduced mode (small sizes and sample counts, as in the test suite).
    :param broker_url: a running RabbitMQ to use instead of starting a private one.
    """

    work: Path
    messages: int
    quick: bool
    broker_url: str | None = None
    _dovecot: DovecotServer | None = field(default=None, repr=False)
    _rabbitmq: RabbitMQServer | RunningBroker | None = field(default=None, repr=False)
    _pool: list[bytes] = field(default_factory=list, repr=False)
    _loaded: dict[str, DovecotAccount] = field(default_factory=dict, repr=False)
    _homes: int = 0
    #: figures one scenario leaves for another (e.g. the end-to-end rate for the fetchmail row)
    results: dict[str, Any] = field(default_factory=dict)

    # -- servers: started on first use, so a run of scenarios that need none (decode) boots none
    @property
    def dovecot(self) -> DovecotServer:
        if self._dovecot is None:
            self._dovecot = _started(DovecotServer(self.work / "dovecot"))
        return self._dovecot

    @property
    def rabbitmq(self) -> RabbitMQServer | RunningBroker:
        if self._rabbitmq is None and self.broker_url:
            self._rabbitmq = RunningBroker.from_url(self.broker_url)
        if self._rabbitmq is None:
            self._rabbitmq = _started(RabbitMQServer(self.work / "rabbitmq"))
        return self._rabbitmq

    def close(self) -> None:
        """Stop the servers this run started."""
        for server in (self._dovecot, self._rabbitmq):
            if server is not None:
                server.close()
        self._dovecot = self._rabbitmq = None

    # -- mail ---------------------------------------------------------------------------------
    def pool(self) -> list[bytes]:
        """N sample messages of ~70 KB with two attachments (made once per run)."""
        if len(self._pool) < self.messages:
            started = time.monotonic()
            self._pool.extend(sample_message(i, size_hint=MESSAGE_BYTES)
                              for i in range(len(self._pool), self.messages))
            logger.info("made %d sample messages in %.1fs", self.messages, time.monotonic() - started)
        return self._pool[: self.messages]

    @property
    def pool_bytes(self) -> int:
        return sum(len(m) for m in self.pool())

    def loaded_account(self, purpose: str = "shared") -> DovecotAccount:
        """An account whose INBOX holds the N unread sample messages, one per *purpose*.

        ``"shared"`` is for read-only clients (raw IMAP, listing).  Anything that downloads
        gets its own copy: ``mailingest.download`` marks mail ``\\Seen`` by default
        (``mailAfterDownload seen``), fetchmail and sr3's poll.mail do too.
        """
        account = self._loaded.get(purpose)
        if account is None:
            account = self.dovecot.new_account(prefix=purpose.replace("_", "")[:8])
            started = time.monotonic()
            self.dovecot.deliver_many(account.user, self.pool())
            # the mailbox just written (~140 MB at N = 2,000) would otherwise be written back to
            # disk during the run that reads it, slowing every fsync of what is measured (the sr3
            # floor syncs nothing, so only the other side of its ratio paid)
            os.sync()
            logger.info("delivered %d messages to %s in %.1fs (synced)", self.messages, account.user,
                        time.monotonic() - started)
            self._loaded[purpose] = account
        return account

    # -- sr3 ----------------------------------------------------------------------------------
    def sr3_home(self, name: str, account: DovecotAccount | None = None) -> Sr3Home:
        """A fresh sr3 home (config, cache, credentials) wired to the private servers."""
        self._homes += 1
        base = self.work / "sr3" / f"{self._homes:02d}-{name}"
        home = Sr3Home(base, self.rabbitmq.url, f"{self.rabbitmq.host}:{self.rabbitmq.port}")
        home.declarations.update(AMQP_USER=self.rabbitmq.user)
        if account is not None:
            server = account.server
            home.declarations.update(MAIL_USER=account.user, MAIL_HOST=f"{server.host}:{server.imaps_port}")
            home.defaults.append(f"mailCaFile {server.ca_pem}")
            home.add_credential(self.imaps_url(account, with_password=True))
        home.write()
        return home

    def imaps_url(self, account: DovecotAccount, *, with_password: bool = False) -> str:
        server = account.server
        secret = f":{account.password}" if with_password else ""
        return f"imaps://{account.user}{secret}@{server.host}:{server.imaps_port}/"

    def amqp_url(self) -> str:
        return self.rabbitmq.url


_Server = TypeVar("_Server", DovecotServer, RabbitMQServer)


def _started(server: _Server) -> _Server:
    """*server*, started; closed again if it fails to start."""
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    return server


def mb(nbytes: float) -> float:
    return nbytes / 1e6


def env_with_pythonpath(env: dict[str, str], *paths: Path) -> dict[str, str]:
    env = dict(env)
    parts = [str(p) for p in paths] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env
