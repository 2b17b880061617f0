"""What an operator reads in the subscriber log (issue 12): at info, one line per downloaded
message and one per decoded message, not one per decoded file; real servers, real
``sr3 foreground`` with the examples."""

from __future__ import annotations

import re
from email.message import EmailMessage

import pytest

from tests.helpers import eml_files, make_home, wait_until
from tests.sr3env import NoticeCollector

pytestmark = pytest.mark.integration

INFO = re.compile(r"^\S+ \S+ \[INFO\] \d+ (\S+) (\S+) (.*)$")


def message(number: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = "obs@example.org"
    msg["To"] = "ingest@example.net"
    msg["Subject"] = "report %d" % number
    msg["Message-ID"] = "<report-%d@example.org>" % number
    msg.set_content("see attached\n")
    msg.add_alternative("<p>see attached</p>\n", subtype="html")
    for name in ("a.csv", "b.csv", "c.pdf"):
        msg.add_attachment(b"1,2\n", maintype="application", subtype="octet-stream", filename=name)
    return msg.as_bytes()


def info_lines(log: str) -> list:
    return [m.groups() for m in map(INFO.match, log.splitlines()) if m]


def run_download_and_decode(tmp_path, rabbitmq, mail_account, *, sr3_default_log_events=False) -> str:
    """Two messages with three attachments each through the poll and decodeemail examples;
    returns the subscriber's log."""
    for number in (1, 2):
        mail_account.deliver(message(number))
    home = make_home(tmp_path, rabbitmq, mail_account)
    home.add_example("examples/poll/mail.conf")
    config = home.add_example("examples/subscribe/decodeemail.conf")
    if sr3_default_log_events:
        config.write_text("\n".join(line for line in config.read_text().splitlines()
                                    if not line.startswith("logEvents")) + "\n")
    parts = NoticeCollector(rabbitmq.url, "xs_mail_parts")
    NoticeCollector(rabbitmq.url, "xs_mail").close()
    assert home.run("declare", "subscribe/decodeemail").returncode == 0
    mail_dir = tmp_path / "mail"
    try:
        with home.foreground("subscribe/decodeemail") as subscriber:
            with home.foreground("poll/mail"):
                wait_until(lambda: len(eml_files(mail_dir)) == 2, timeout=90, what="two .eml files")
            # each message: the .eml, body.txt, body.html, 3 attachments and metadata.json
            parts.wait_for(14, timeout=60)
            subscriber.wait_for_log("decoded into", count=2)
            log = subscriber.log_text()
    finally:
        parts.close()
    return log


def test_the_example_subscriber_logs_one_info_line_per_download_and_one_per_decoded_message(
        tmp_path, rabbitmq, mail_account):
    log = run_download_and_decode(tmp_path, rabbitmq, mail_account)
    about_messages = [(logger, text) for logger, _fn, text in info_lines(log)
                      if ".eml" in text or ".parts" in text]
    downloaded = [text for logger, text in about_messages if text.startswith("downloaded ok:")]
    decoded = [text for logger, text in about_messages if logger == "mailingest.decode"]
    assert len(downloaded) == 2 and all(".eml size: " in text for text in downloaded), downloaded
    assert len(decoded) == 2 and all(": 6 files, 6 announced" in text for text in decoded), decoded
    assert len(about_messages) == 4, "\n".join(text for _logger, text in about_messages)


def test_with_sr3s_default_log_events_no_line_is_logged_per_decoded_file(tmp_path, rabbitmq, mail_account):
    log = run_download_and_decode(tmp_path, rabbitmq, mail_account, sr3_default_log_events=True)
    lines = info_lines(log)
    assert [text for _logger, _fn, text in lines if ".parts/" in text] == []
    assert len([text for _logger, _fn, text in lines if text.startswith("downloaded ok:")]) == 2
    assert len([text for _logger, _fn, text in lines if text.startswith("posted ")]) == 2  # the .eml notices
    decode_lines = [text for logger, _fn, text in lines if logger == "mailingest.decode"]
    assert len([text for text in decode_lines if ".eml" in text]) == 2
    # and one when the worker starts its decode process (mailDecodeProcess auto, instances 1)
    assert len(decode_lines) <= 3 and all(".eml" in text or "decode process" in text or "mailDecodeProcess" in text
                                          for text in decode_lines)
