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

from tests import sr3lock  # noqa: E402
from tests.secret_scan import find_leaks, register_secret  # noqa: E402
from tests.servers import DovecotAccount, DovecotServer, RabbitMQServer  # noqa: E402
from tests.servers.dovecot import memory_tmp  # noqa: E402
from tests.sr3lock import sr3_processes  # noqa: E402

#: Workers for ``-n auto``: the integration tests spend most of their time waiting (on sr3's
#: cycles, on servers), so four per core, at least 4; at most 8, as every worker runs its own
#: RabbitMQ and Dovecot (measured on 2 cores, clean clone, 1,578 tests: 6 workers 265 s,
#: 8 workers 231 s, 10 workers 245 s, every test passing).  PYTEST_XDIST_AUTO_NUM_WORKERS
#: overrides it, as in pytest-xdist.
MIN_WORKERS, MAX_WORKERS = 4, 8


def pytest_configure(config: pytest.Config) -> None:
    sr3lock.enforced = True  # `sr3 start` and `sr3 stop` only in tests with their marker


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    override = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS")
    if override:
        return int(override)
    return min(MAX_WORKERS, max(MIN_WORKERS, 4 * (os.cpu_count() or 1)))


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
    """A test that runs ``sr3 start`` (marker ``sr3_daemons``) holds a lock shared by all xdist
    workers; one marked ``sr3_stop`` holds it alone, since ``sr3 stop`` signals the daemons of
    every other test (tests/sr3lock.py).  Other tests (``sr3 foreground`` flows) need no lock."""
    exclusive = request.node.get_closest_marker("sr3_stop") is not None
    if not exclusive and request.node.get_closest_marker("sr3_daemons") is None:
        yield
        return
    common = tmp_path_factory.getbasetemp().parent  # the run's directory, above each worker's
    with sr3_processes(common, exclusive=exclusive):
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


#: The longest tests (seconds, measured with 4 workers on the loaded 2-core machine; ``file::test``,
#: every parametrization).  Under ``--dist worksteal`` each worker first gets one contiguous share
#: of the collection and runs it from the front, and idle workers steal from the back of the
#: others' shares; so a long test at the end of a share would start last and bound the wall time.
#: ``pytest_collection_modifyitems`` puts these at the front of the shares, spread so the shares'
#: long work is about equal.  Update the figures when a test's duration changes much
#: (``--durations=60``); a test missing here just runs in collection order.
LONG_TESTS: dict[str, float] = {
    "test_idle_push.py::test_mail_is_announced_within_a_second_whenever_it_arrives_in_a_60_s_interval": 67,
    "test_oauth2.py::test_refresh_failures_give_one_clear_line_each_and_the_poll_recovers": 52,
    "test_reannounce.py::test_notices_published_before_any_queue_existed_are_announced_again_and_each_message_arrives_once": 46,
    "test_bench_smoke.py::test_quick_bench_writes_a_row_for_every_scenario": 45,
    "test_unwritable_directory.py::test_a_read_only_download_directory_is_waited_out_and_the_download_recovers": 44,
    "test_unwritable_directory.py::test_a_download_directory_that_cannot_be_created_is_waited_out_not_dropped": 43,
    "test_download_depth.py::test_kill_minus_nine_at_random_moments_loses_and_doubles_nothing": 34,
    "test_download_depth.py::test_a_rabbitmq_restart_mid_run_loses_and_doubles_nothing": 33,
    "test_capability_fallbacks.py::test_mail_idle_without_idle_in_sr3_polls_every_scheduled_interval_not_continuously": 31,
    "test_oauth2_apponly.py::test_poll_and_download_log_in_app_only_through_token_expiry_without_a_failure": 28,
    "test_decode_recovery.py::test_a_worker_killed_at_random_moments_leaves_every_message_decoded_and_announced": 27,
    "test_idle_push.py::test_housekeeping_runs_on_time_while_the_poll_waits_in_idle": 22,
    "test_operator_config.py::test_a_wrong_password_fixed_in_credentials_conf_is_used_without_restart_by_the_poll_and_the_download": 21,
    "test_oauth2.py::test_poll_and_download_refresh_expiring_tokens_without_a_failure": 20,
    "test_poll_depth.py::test_big_mailbox_later_cycles_cost_follows_new_mail": 18,
    "test_oauth2_apponly.py::test_an_expired_certificate_and_a_key_for_another_client_each_give_one_clear_line": 17,
    "test_poll_depth.py::test_uidvalidity_change_reannounces_or_skips_with_a_warning": 15,
    "test_poll_depth.py::test_idle_announces_within_a_second_and_survives_a_server_restart": 15,
    "test_download_depth.py::test_four_workers_download_each_of_1000_messages_exactly_once": 13,
    "test_ha_poll.py::test_with_post_exchange_split_the_passive_node_follows_every_exchange_and_takes_over_without_repeats": 44,
    "test_ha_poll.py::test_the_vip_moving_between_two_nodes_mid_cycle_and_back_announces_every_message_exactly_once": 40,
    "test_idle_push.py::test_push_holds_with_sr3s_default_sleep_a_long_interval_a_short_idle_window_and_another_folder": 39,
    "test_operator_config.py::test_a_wrong_password_fixed_in_the_keyring_is_used_without_restart_by_the_poll_and_the_download": 30,
    "test_decode_fuzz.py::test_a_subscriber_decoding_hostile_messages_in_a_row_keeps_a_flat_rss": 15,
}


def expected_seconds(item: pytest.Item) -> float:
    path, _, name = item.nodeid.partition("::")
    return LONG_TESTS.get(f"{path.rsplit('/', 1)[-1]}::{name.split('[')[0]}", 0.0)


def worksteal_shares(total: int, workers: int) -> list[int]:
    """The sizes of the contiguous shares pytest-xdist's worksteal scheduler first hands out
    (xdist/scheduler/worksteal.py, ``check_schedule``: each node in turn gets pending // nodes left)."""
    sizes = []
    for i in range(workers):
        sizes.append(total // (workers - i))
        total -= sizes[-1]
    return sizes


@pytest.hookimpl(trylast=True)  # after -k / -m deselected: the shares are of what runs
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Start the long tests first, each worker's share with its own (see ``LONG_TESTS``).

    The test that runs ``sr3 stop`` goes first of the first share: it holds the sr3 lock alone
    and then waits for no ``sr3 start`` test (marker ``sr3_daemons``), none of which starts a share.
    Every worker computes the same order (xdist requires it) from its worker count."""
    workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
    first = [item for item in items if item.get_closest_marker("sr3_stop")]
    long = sorted((item for item in items if expected_seconds(item) and item not in first),
                  key=expected_seconds, reverse=True)
    rest = [item for item in items if item not in first and item not in long]
    heads: list[list[pytest.Item]] = [[] for _ in range(workers)]
    heads[0].extend(first)
    load = [sum(expected_seconds(item) + 15 for item in first)] + [0.0] * (workers - 1)
    for item in long:  # longest first onto the least loaded share
        share = min(range(workers), key=lambda i: load[i])
        heads[share].append(item)
        load[share] += expected_seconds(item)
    for share in heads:  # a test holding the sr3 lock shared never opens a share
        daemons = [item for item in share if item.get_closest_marker("sr3_daemons")]
        if share and share[0] in daemons and len(daemons) < len(share):
            other = next(item for item in share if item not in daemons)
            share.remove(other)
            share.insert(0, other)
    ordered: list[pytest.Item] = []
    for size, share in zip(worksteal_shares(len(items), workers), heads):
        take = max(0, size - len(share))
        ordered += share + rest[:take]
        rest = rest[take:]
    items[:] = ordered + rest
