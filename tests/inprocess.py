"""mailingest's sr3 callbacks loaded in the test process, as sr3 would load them, against a real
server: for tests that must act at a precise moment inside a poll cycle or a download (kick the
session, count protocol calls), which a separate ``sr3 foreground`` process cannot offer."""

from __future__ import annotations

import logging
import types
from pathlib import Path

import sarracenia
import sarracenia.config
import sarracenia.flowcb
from sarracenia.config.credentials import CredentialDB

from mailingest.mailbox.account import parse_mail_url
from mailingest.mailbox.refs import parse_notice_fields
from tests.helpers import scheme_port


def url_of(account, scheme: str, with_password: bool = False) -> str:
    secret = f":{account.password}" if with_password else ""
    return f"{scheme}://{account.user}{secret}@{account.server.host}:{scheme_port(account.server, scheme)}/"


def callback(plugin: str, tmp_path: Path, account, scheme: str, **options) -> sarracenia.flowcb.FlowCB:
    """``callback mailingest.<plugin>`` in a poll (plugin ``poll``) or a subscribe, with ``options``
    (sr3 option names) and the account's password in a credentials database.

    There is no broker, so the poll's notices lack what sr3's publisher adds (``relPath``);
    :func:`rel_path` gives it from the notice's ``mail`` field."""
    component = "poll" if plugin == "poll" else "subscribe"
    o = sarracenia.config.no_file_config()
    o.component, o.config, o.action, o.no = component, "inprocess", "foreground", 0
    o.mailCaFile = str(account.server.ca_pem)
    for name, value in options.items():
        setattr(o, name, value)
    o.finalize(component, "inprocess")
    o.credentials = CredentialDB()
    o.credentials._parse(url_of(account, scheme, with_password=True))
    o.cfg_run_dir = str(tmp_path / "run")
    (tmp_path / "run").mkdir(exist_ok=True)
    return sarracenia.flowcb.load_library(f"mailingest.{plugin}", o)


def rel_path(notice: sarracenia.Message) -> str:
    """The relPath sr3 would publish for a poll notice (``<host>+<port>/<user>/INBOX/<UIDVALIDITY>.<UID>.eml``)."""
    return parse_notice_fields(notice["mail"]).rel_path_in(parse_mail_url(notice["baseUrl"]).path_dir)


def download_notice(announced: sarracenia.Message, directory: Path) -> sarracenia.Message:
    """What a subscriber hands the download callback for the poll's notice (placed under its
    relPath, as the download's after_accept does)."""
    ref = parse_notice_fields(announced["mail"])
    path = rel_path(announced)
    msg = sarracenia.Message()
    msg.update({"baseUrl": announced["baseUrl"], "relPath": path, "mail": announced["mail"],
                "new_dir": str(directory / path.rsplit("/", 1)[0]), "new_file": path.rsplit("/", 1)[1],
                "identity": {"method": "cod", "value": "sha512"}, "size": ref.size})
    msg["_deleteOnPost"] = set()
    return msg


def poll_pass(poll: sarracenia.flowcb.FlowCB) -> list[sarracenia.Message]:
    """One sr3 pass of a poll: poll(), then after_post() with what it returned (sr3 calls
    after_post every pass; only then does the poll remember what it announced)."""
    notices = poll.poll()
    poll.after_post(types.SimpleNamespace(ok=notices, incoming=[], rejected=[], failed=[], directories_ok=[]))
    return notices


def download_batch(download: sarracenia.flowcb.FlowCB, msgs: list[sarracenia.Message]) -> types.SimpleNamespace:
    """download() each notice, then after_work() as sr3 does at the end of a batch; the worklist."""
    ok = [msg for msg in msgs if download.download(msg)]
    worklist = types.SimpleNamespace(ok=ok, rejected=[], failed=[m for m in msgs if m not in ok],
                                     incoming=[], directories_ok=[])
    download.after_work(worklist)
    return worklist


def mailingest_problems(records) -> list:
    """mailingest's warnings and errors (sr3's complaints about a bare in-process config aside)."""
    return [r.getMessage() for r in records if r.levelno >= logging.WARNING and r.name.startswith("mailingest")]
