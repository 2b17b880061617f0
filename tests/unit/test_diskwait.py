"""Specification of mailingest.fetcher.diskwait: an unwritable download directory is waited out with a
bounded backoff and few log lines."""

import errno
import logging
import os

import pytest

from mailingest.fetcher.diskwait import PROBES, DirectoryWait, LocalWriteError, probe_writable

READ_ONLY = OSError(errno.EROFS, "Read-only file system")


class FakeTime:
    def __init__(self):
        self.now = 1000.0
        self.stop_at = float("inf")

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds

    def should_stop(self):
        return self.now >= self.stop_at


def failing_until(fake, fixed_at):
    probes = []

    def probe():
        probes.append(fake.now)
        if fake.now < fixed_at:
            raise READ_ONLY
    return probe, probes


def test_probes_back_off_to_every_30_seconds_and_pass_soon_after_the_fix(caplog):
    fake = FakeTime()
    waiter = DirectoryWait(fake.should_stop, fake.clock, fake.sleep)
    probe, probes = failing_until(fake, fixed_at=1000.0 + 600)
    assert waiter.wait(LocalWriteError("/data/mail", READ_ONLY), "imaps://alice@mail/INBOX/1.eml", probe)
    gaps = [b - a for a, b in zip([1000.0, *probes], probes)]
    assert gaps[:6] == pytest.approx([PROBES.delay(n) for n in range(1, 7)]) == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert max(gaps) == pytest.approx(30.0)
    assert probes[-1] - 1600 < 30  # recovered within 30 s of the fix


def test_at_most_three_error_lines_in_any_minute_of_a_long_outage(caplog):
    caplog.set_level(logging.INFO)
    fake = FakeTime()
    waiter = DirectoryWait(fake.should_stop, fake.clock, fake.sleep)
    probe, _probes = failing_until(fake, fixed_at=1000.0 + 1800)
    stamps = []
    handler = logging.Handler()
    handler.emit = lambda record: stamps.append((fake.now, record.levelno))
    logging.getLogger("mailingest.fetcher.diskwait").addHandler(handler)
    try:
        assert waiter.wait(LocalWriteError("/data/mail", READ_ONLY), "imaps://alice@mail/INBOX/1.eml", probe)
        waiter.written("/data/mail")
    finally:
        logging.getLogger("mailingest.fetcher.diskwait").removeHandler(handler)
    errors = [t for t, level in stamps if level == logging.ERROR]
    assert 2 <= len(errors) <= 31
    assert all(sum(1 for t in errors if start <= t < start + 60) <= 3 for start in errors)
    assert stamps[-1][1] == logging.INFO


def test_the_first_error_line_names_the_message_the_directory_and_the_os_error(caplog):
    fake = FakeTime()
    waiter = DirectoryWait(fake.should_stop, fake.clock, fake.sleep)
    probe, _ = failing_until(fake, fixed_at=1005)
    waiter.wait(LocalWriteError("/data/mail", READ_ONLY), "imaps://alice@mail/INBOX/1.eml", probe)
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "imaps://alice@mail/INBOX/1.eml" in line and "/data/mail" in line
    assert "[Errno 30] Read-only file system" in line
    assert "Traceback" not in caplog.text


def test_a_second_message_in_the_same_outage_logs_nothing_new(caplog):
    fake = FakeTime()
    waiter = DirectoryWait(fake.should_stop, fake.clock, fake.sleep)
    probe, _ = failing_until(fake, fixed_at=1010)
    waiter.wait(LocalWriteError("/data/mail", READ_ONLY), "message 1", probe)
    waiter.wait(LocalWriteError("/data/mail", READ_ONLY), "message 2", probe)
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1


def test_a_stop_request_ends_the_wait_within_a_second():
    fake = FakeTime()
    fake.stop_at = 1000.0 + 42
    waiter = DirectoryWait(fake.should_stop, fake.clock, fake.sleep)
    probe, _ = failing_until(fake, fixed_at=float("inf"))
    assert waiter.wait(LocalWriteError("/data/mail", READ_ONLY), "m", probe) is False
    assert fake.now - fake.stop_at < 1


def test_the_probe_leaves_nothing_behind_and_fails_where_nothing_can_be_written(tmp_path):
    probe_writable(str(tmp_path))
    assert os.listdir(tmp_path) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError):
        probe_writable(str(tmp_path / "file" / "sub"))
