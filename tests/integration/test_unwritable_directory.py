"""A download directory that cannot be written (issue 12): one error line naming the account, the
message, the directory and the OS error, no traceback, a bounded retry inside the download, and
recovery within a minute of the fix; nothing lost, and the message is not marked \\Seen before its
file exists.  Real Dovecot, real RabbitMQ, real ``sr3 foreground`` with the examples.

The tests run as root, which permissions do not stop: the directory is made read-only with a
small tmpfs mounted on it and remounted read-only (``chattr +i`` where mounting is not allowed),
or it lies under a regular file (ENOTDIR) so it cannot even be created.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

import mailingest.download
from mailingest.backoff import Backoff
from mailingest.fetcher.diskwait import probe_writable
from tests.helpers import imap_flags, make_home, wait_until
from tests.inprocess import callback, download_notice, url_of
from tests.sr3env import NoticeCollector

pytestmark = pytest.mark.integration

#: seconds the directory stays unwritable after the first error line: past the probes at 1, 3, 7 and
#: 15 s (fetcher/diskwait.py), so four failed retries show that retrying logs no error line of its
#: own; the fix then lands mid-wait, 14 s before the 30-s probe (recovery must take under 60 s)
OUTAGE = 16.0
ERROR_LINE = re.compile(r"^\S+ \S+ \[(ERROR|CRITICAL)\] ", re.MULTILINE)


def message() -> bytes:
    msg = EmailMessage()
    msg["From"] = "obs@example.org"
    msg["To"] = "ingest@example.net"
    msg["Subject"] = "observations"
    msg["Message-ID"] = "<obs-1@example.org>"
    msg.set_content("station,temp\nCYUL,-3.5\n")
    return msg.as_bytes()


def emls(directory: Path) -> list:
    return sorted(directory.rglob("*.eml")) if directory.is_dir() else []


def run(*command: str) -> bool:
    return subprocess.run(command, capture_output=True, check=False, timeout=30).returncode == 0


@contextlib.contextmanager
def read_only(directory: Path):
    """*directory* cannot be written, even by root, until ``make_writable()`` (yielded) runs."""
    directory.mkdir(parents=True, exist_ok=True)
    if run("mount", "-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs", str(directory)):
        if not run("mount", "-o", "remount,ro", str(directory)):
            run("umount", "-l", str(directory))
            pytest.fail(f"could not remount the tmpfs on {directory} read-only")
        try:
            yield lambda: run("mount", "-o", "remount,rw", str(directory))
        finally:
            run("umount", "-l", str(directory))
    elif run("chattr", "+i", str(directory)):
        try:
            yield lambda: run("chattr", "-i", str(directory))
        finally:
            run("chattr", "-i", str(directory))
    else:
        pytest.fail("neither a tmpfs mount nor chattr +i is allowed here: cannot make a directory "
                    "read-only for root")


def start_flow(tmp_path, rabbitmq, mail_account, mail_dir: Path):
    mail_account.deliver(message())
    home = make_home(tmp_path, rabbitmq, mail_account)
    home.declarations["MAIL_DIR"] = str(mail_dir)
    home.add_example("examples/poll/mail.conf")
    home.add_example("examples/subscribe/downloademail.conf")
    NoticeCollector(rabbitmq.url, "xs_mail").close()  # sr3 declare binds only to an existing exchange
    assert home.run("declare", "subscribe/downloademail").returncode == 0
    return home


def check_outage_and_recovery(subscriber, mail_account, mail_dir: Path, make_writable) -> None:
    log = subscriber.wait_for_log("cannot write to", timeout=90)
    first_error = next(line for line in log.splitlines() if "cannot write to" in line)
    assert "imaps://" in first_error and mail_account.user in first_error   # the account
    assert ".eml" in first_error                                                  # the message
    assert str(mail_dir) in first_error and "[Errno " in first_error                # directory, OS error
    started = time.monotonic()
    while time.monotonic() - started < OUTAGE:  # an outage of OUTAGE seconds, watched as it goes
        assert emls(mail_dir) == []
        assert all(b"\\Seen" not in flags for flags in imap_flags(mail_account).values())
        time.sleep(1)
    during = subscriber.log_text()
    assert make_writable()
    fixed = time.monotonic()
    wait_until(lambda: len(emls(mail_dir)) == 1, timeout=60, what="the .eml after the fix")
    assert time.monotonic() - fixed < 60
    wait_until(lambda: all(b"\\Seen" in f for f in imap_flags(mail_account).values()), timeout=30,
               what="\\Seen after the file exists")
    subscriber.wait_for_log("can be written again", timeout=10)
    errors = ERROR_LINE.findall(during)
    assert 1 <= len(errors) <= 3, during[-3000:]
    assert "Traceback" not in subscriber.log_text()
    assert "gave up downloading" not in subscriber.log_text()
    assert len(emls(mail_dir)) == 1  # nothing doubled


def test_a_read_only_download_directory_is_waited_out_and_the_download_recovers(tmp_path, rabbitmq,
                                                                                  mail_account):
    mail_dir = tmp_path / "mail"
    with read_only(mail_dir) as make_writable:
        home = start_flow(tmp_path, rabbitmq, mail_account, mail_dir)
        with home.foreground("subscribe/downloademail") as subscriber, home.foreground("poll/mail"):
            check_outage_and_recovery(subscriber, mail_account, mail_dir, make_writable)


def test_a_download_directory_that_cannot_be_created_is_waited_out_not_dropped(tmp_path, rabbitmq,
                                                                                mail_account):
    blocker = tmp_path / "spool"
    blocker.write_text("a regular file where the spool directory should be\n")
    mail_dir = blocker / "mail"

    def make_writable() -> bool:
        blocker.unlink()
        blocker.mkdir()
        return True

    home = start_flow(tmp_path, rabbitmq, mail_account, mail_dir)
    with home.foreground("subscribe/downloademail") as subscriber, home.foreground("poll/mail"):
        check_outage_and_recovery(subscriber, mail_account, mail_dir, make_writable)


def test_a_full_disk_fails_the_probe_until_space_is_freed(tmp_path):
    disk = tmp_path / "small"
    disk.mkdir()
    if not run("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)):
        pytest.fail("mounting a tmpfs is not allowed here")
    try:
        filler = disk / "filler"
        with contextlib.suppress(OSError), open(filler, "wb", buffering=0) as fh:
            while True:
                fh.write(b"\0" * 4096)
        with pytest.raises(OSError) as full:
            probe_writable(str(disk))
        assert full.value.errno == 28  # ENOSPC
        assert [p.name for p in disk.iterdir()] == ["filler"]
        filler.unlink()
        probe_writable(str(disk))
    finally:
        run("umount", "-l", str(disk))


def announced_notice(tmp_path, mail_account):
    mail_account.deliver(message())
    poll = callback("poll", tmp_path, mail_account, "imaps", pollUrl=url_of(mail_account, "imaps"))
    try:
        [announced] = poll.poll()
    finally:
        poll.on_stop()
    return announced


def test_a_write_that_fails_although_the_directory_passes_the_probe_goes_to_sr3s_retry_queue(
        tmp_path, mail_account, monkeypatch, caplog):
    directory = tmp_path / "mail"
    directory.mkdir()
    download = callback("download", tmp_path, mail_account, "imaps", directory=str(directory))
    monkeypatch.setattr("mailingest.fetcher.diskwait.PROBES", Backoff(first=0.01, maximum=0.01))
    refused = OSError(36, "File name too long")
    monkeypatch.setattr(mailingest.download, "write_temp",
                        lambda *_args, **_kwargs: (_ for _ in ()).throw(refused))
    msg = download_notice(announced_notice(tmp_path, mail_account), directory)
    try:
        assert download.download(msg) is False
    finally:
        download.on_stop()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= 40 and r.name.startswith(("mailingest.download", "mailingest.fetcher"))]
    assert len(errors) == 2 and "keeps failing although the directory can be written" in errors[-1]
    assert "Traceback" not in caplog.text and emls(directory) == []
    assert all(b"\\Seen" not in flags for flags in imap_flags(mail_account).values())


def test_a_stop_request_ends_the_wait_and_leaves_the_notice_to_sr3(tmp_path, mail_account):
    directory = tmp_path / "mail"
    with read_only(directory):
        download = callback("download", tmp_path, mail_account, "imaps", directory=str(directory))
        msg = download_notice(announced_notice(tmp_path, mail_account), directory)
        download.please_stop()
        started = time.monotonic()
        try:
            assert download.download(msg) is False
        finally:
            download.on_stop()
        assert time.monotonic() - started < 5
    assert all(b"\\Seen" not in flags for flags in imap_flags(mail_account).values())
