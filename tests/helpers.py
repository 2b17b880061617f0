"""Shared helpers for the end-to-end specs: sr3 homes wired to the test servers, and an
independent view of the mailbox (imapclient, not mailingest) to check what changed."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

import imapclient

from mailingest.atomic import process_running
from tests.sr3env import QUICK_IDLE_SLEEP, Sr3Home


def imap_client(account) -> imapclient.IMAPClient:
    server = account.server
    client = imapclient.IMAPClient(server.host, port=server.imap_port, ssl=False)
    client.login(account.user, account.password)
    return client


def imap_flags(account, folder: str = "INBOX") -> dict[int, tuple[bytes, ...]]:
    """UID → flags (\\Recent is per-session, so left out)."""
    with imap_client(account) as client:
        client.select_folder(folder, readonly=True)
        uids = client.search("ALL")
        if not uids:
            return {}
        return {uid: tuple(sorted(f for f in data[b"FLAGS"] if f != b"\\Recent"))
                for uid, data in client.fetch(uids, ["FLAGS"]).items()}


def imap_raw(account, folder: str = "INBOX") -> dict[int, bytes]:
    """UID → the server's raw message (BODY.PEEK[])."""
    with imap_client(account) as client:
        client.select_folder(folder, readonly=True)
        uids = client.search("ALL")
        if not uids:
            return {}
        return {uid: data[b"BODY[]"] for uid, data in client.fetch(uids, ["BODY.PEEK[]"]).items()}


def make_home(tmp_path: Path, rabbitmq, account, *, password: str | None = None,
              schemes: Iterable[str] = ("imaps",)) -> Sr3Home:
    """A private sr3 home: default.conf declares the examples' variables, credentials.conf holds
    the broker and the mail account for each scheme on its test port."""
    server = account.server
    home = Sr3Home(tmp_path / "sr3", rabbitmq.url, f"{rabbitmq.host}:{rabbitmq.port}")
    home.declarations.update(
        AMQP_USER=rabbitmq.user,
        MAIL_USER=account.user,
        MAIL_HOST=f"{server.host}:{server.imaps_port}",
        MAIL_DIR=str(tmp_path / "mail"),
    )
    home.defaults.append(f"mailCaFile {server.ca_pem}")
    home.defaults.append(QUICK_IDLE_SLEEP)
    for scheme in schemes:
        home.credentials.append(f"{scheme}://{account.user}:{password or account.password}@"
                                f"{server.host}:{scheme_port(server, scheme)}/")
    home.write()
    return home


def scheme_port(server, scheme: str) -> int:
    return {"imap": server.imap_port, "imaps": server.imaps_port,
            "pop": server.pop3_port, "pops": server.pop3s_port}[scheme]


def poll_config(rabbitmq, account, *, scheme: str = "imaps", exchange: str = "xs_mail",
                extra: str = "", interval: float = 1) -> str:
    """A poll config like examples/poll/mail.conf, for a given scheme and extra options."""
    server = account.server
    return (f"post_broker amqp://{rabbitmq.user}@{rabbitmq.host}:{rabbitmq.port}/\n"
            f"post_exchange {exchange}\n"
            f"pollUrl {scheme}://{account.user}@{server.host}:{scheme_port(server, scheme)}/\n"
            f"callback mailingest.poll\n"
            f"scheduled_interval {interval}\n{QUICK_IDLE_SLEEP}\n"
            f"nodupe_ttl 0\nfileAgeMax 0\n{extra}\n")


def subscribe_config(rabbitmq, directory: Path, *, exchange: str = "xs_mail", extra: str = "",
                     queue: str | None = None) -> str:
    """A subscriber like examples/subscribe/downloademail.conf."""
    return (f"broker amqp://{rabbitmq.user}@{rabbitmq.host}:{rabbitmq.port}/\n"
            f"exchange {exchange}\n"
            + (f"queueName {queue}\n" if queue else "")
            + f"prefetch 5\nsubtopic #\ndirectory {directory}\ncallback mailingest.download\n"
            + f"{QUICK_IDLE_SLEEP}\n{extra}\n")


def wait_until(predicate, timeout: float = 60, interval: float = 0.2, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def child_pids(pid: int) -> list:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def kill_minus_nine(worker) -> None:
    """SIGKILL an ``sr3 foreground`` worker and its children, and wait until each has exited: the
    instance may be an orphan then, even a zombie nobody reaps (``atomic.process_running``)."""
    victims = [worker.popen.pid, *child_pids(worker.popen.pid)]
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    worker.kill()
    wait_until(lambda: not any(process_running(pid) for pid in victims), timeout=30,
               what="the killed worker to exit")


def peak_rss_kib(pid: int) -> int:
    """VmHWM of ``pid`` and its children (the sr3 instance runs as a child of `sr3 foreground`)."""
    peak = 0
    for candidate in [pid, *child_pids(pid)]:
        try:
            for line in Path(f"/proc/{candidate}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            continue
    return peak


def eml_files(directory: Path) -> list:
    """The downloaded messages under ``directory``, wherever the relPath layout puts them
    (``<host>/<user>/<folder>/...``); messages attached inside a decoded ``x.parts/`` are not counted."""
    if not directory.exists():
        return []
    return sorted(p for p in directory.rglob("*.eml") if p.is_file() and not _in_parts(directory, p))


def downloaded_files(directory: Path) -> list:
    """Every file under ``directory`` outside decoded ``x.parts/`` directories (temp files included)."""
    if not directory.exists():
        return []
    return sorted(p for p in directory.rglob("*") if p.is_file() and not _in_parts(directory, p))


def no_partial_files(directory: Path) -> bool:
    return not [p for p in downloaded_files(directory) if not p.name.endswith(".eml")]


def _in_parts(directory: Path, path: Path) -> bool:
    return any(part.endswith(".parts") for part in path.relative_to(directory).parts[:-1])
