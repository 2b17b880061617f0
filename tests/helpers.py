"""Shared helpers for the end-to-end specs: sr3 homes wired to the test servers, and an
independent view of the mailbox (imapclient, not mailingest) to check what changed."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Dict, Iterable, Optional, Tuple

import imapclient

from tests.sr3env import QUICK_IDLE_SLEEP, Sr3Home


def imap_client(account) -> imapclient.IMAPClient:
    server = account.server
    client = imapclient.IMAPClient(server.host, port=server.imap_port, ssl=False)
    client.login(account.user, account.password)
    return client


def imap_flags(account, folder: str = "INBOX") -> Dict[int, Tuple[bytes, ...]]:
    """UID → flags (\\Recent is per-session, so left out)."""
    with imap_client(account) as client:
        client.select_folder(folder, readonly=True)
        uids = client.search("ALL")
        if not uids:
            return {}
        return {uid: tuple(sorted(f for f in data[b"FLAGS"] if f != b"\\Recent"))
                for uid, data in client.fetch(uids, ["FLAGS"]).items()}


def imap_raw(account, folder: str = "INBOX") -> Dict[int, bytes]:
    """UID → the server's raw message (BODY.PEEK[])."""
    with imap_client(account) as client:
        client.select_folder(folder, readonly=True)
        uids = client.search("ALL")
        if not uids:
            return {}
        return {uid: data[b"BODY[]"] for uid, data in client.fetch(uids, ["BODY.PEEK[]"]).items()}


def make_home(tmp_path: Path, rabbitmq, account, *, password: Optional[str] = None,
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
                     queue: Optional[str] = None) -> str:
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
    """The downloaded raw messages under *directory*, at any depth (the relPath layout may add
    directories), leaving out hidden staging entries and decoded ``*.parts`` directories."""
    if not directory.exists():
        return []
    return sorted(p for p in directory.rglob("*.eml")
                  if not any(part.startswith(".") or part.endswith(".parts")
                             for part in p.relative_to(directory).parts))


def no_partial_files(directory: Path) -> bool:
    return not [n for n in os.listdir(directory) if not n.endswith(".eml")] if directory.exists() else True
