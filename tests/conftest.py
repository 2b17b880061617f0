"""Shared fixtures: one private Dovecot and one private RabbitMQ per test session.

The servers are the plain classes of :py:mod:`tests.servers` (bench and demo scripts use
them directly).  A server that cannot start makes the tests that need it fail with the
server's RuntimeError (what failed, the port, the log); they are never skipped.

Under pytest-xdist (``-n``, on by default: see setup.cfg) every worker is a session of its
own: it starts its own servers on free ports, registers its own secrets and scans its own
base temporary directory.  See docs/testing.md.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.secret_scan import find_leaks, register_secret  # noqa: E402
from tests.servers import DovecotAccount, DovecotServer, RabbitMQServer  # noqa: E402
from tests.servers.dovecot import memory_tmp  # noqa: E402
from tests.sr3lock import sr3_processes  # noqa: E402

#: Workers for ``-n auto``: the integration tests spend most of their time waiting (on sr3's
#: cycles, on servers), so twice the cores, at least 4; at most 8, as every worker runs its own
#: RabbitMQ and Dovecot.  PYTEST_XDIST_AUTO_NUM_WORKERS overrides it, as in pytest-xdist.
MIN_WORKERS, MAX_WORKERS = 4, 8


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    override = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS")
    if override:
        return int(override)
    return min(MAX_WORKERS, max(MIN_WORKERS, 2 * (os.cpu_count() or 1)))


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """At the end of the session, fail if a registered secret is in any file under basetemp.

    Passwd-files, credentials.conf and the test keyring are skipped (tests/secret_scan.py).
    """
    yield
    leaks = find_leaks(tmp_path_factory.getbasetemp())
    if leaks:
        pytest.fail("secrets written to files during the test session:\n" + "\n".join(leaks[:50]), pytrace=False)


@pytest.fixture(autouse=True)
def sr3_stop_stays_in_its_worker(request: pytest.FixtureRequest,
                                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Integration tests hold a lock shared by all xdist workers; one marked ``sr3_stop`` holds it
    alone, since ``sr3 stop`` signals every sr3 process of the user (tests/sr3lock.py)."""
    if "integration" not in request.node.nodeid.split("::")[0].split("/"):
        yield
        return
    common = tmp_path_factory.getbasetemp().parent  # the run's directory, above each worker's
    with sr3_processes(common, exclusive=request.node.get_closest_marker("sr3_stop") is not None):
        yield


@pytest.fixture(scope="session")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    """Dovecot with imap (STARTTLS), imaps, pop3 (STLS) and pop3s; plaintext login allowed.

    Its Maildirs live in memory when possible (``memory_tmp``): the big scenarios write and
    remove 100,000 files."""
    with DovecotServer(tmp_path_factory.mktemp("dovecot"), mail_parent=memory_tmp()) as server:
        yield server


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQServer]:
    """A RabbitMQ broker; connect with ``rabbitmq.url`` (guest/guest over loopback)."""
    with RabbitMQServer(tmp_path_factory.mktemp("rabbitmq")) as server:
        yield server


@pytest.fixture
def mail_account(dovecot: DovecotServer) -> DovecotAccount:
    """A new user with a random name and password and an empty INBOX on the session Dovecot."""
    dovecot.start()  # no-op when running; revives it if an earlier test stopped it
    account = dovecot.new_account()
    register_secret(account.password)
    return account
