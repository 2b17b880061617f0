"""Decode end to end (issue 5): poll → download → decode with real servers, and the attachments
announced with correct names and checksums (checked with an independent pika consumer)."""

from __future__ import annotations

import base64
import hashlib
from email.message import EmailMessage
from email.policy import SMTP

import pytest

from tests.helpers import eml_files, make_home, wait_until
from tests.sr3env import NoticeCollector

pytestmark = pytest.mark.integration

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"
CSV = b"station,temp\nCYUL,-3.5\nCYYZ,1.0\n"
JAPANESE_NAME = "観測データ_東京.txt"
JAPANESE = "気温: 12.3度\n".encode()


def message_with_three_attachments() -> bytes:
    msg = EmailMessage()
    msg["From"] = "観測所 <obs@example.jp>"
    msg["To"] = "ingest@example.net"
    msg["Subject"] = "本日の観測 (daily report)"
    msg["Date"] = "Sat, 21 Nov 2026 09:00:00 +0900"
    msg["Message-ID"] = "<daily-1@example.jp>"
    msg.set_content("Attached: chart, table and the Tokyo notes.\n")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="chart.pdf")
    msg.add_attachment(CSV, maintype="text", subtype="csv", filename="obs.csv")
    # RFC 2231 encoded (UTF-8) name, as modern mailers send it
    msg.add_attachment(JAPANESE, maintype="text", subtype="plain", filename=("utf-8", "", JAPANESE_NAME))
    return msg.as_bytes(policy=SMTP)


def test_poll_download_decode_announces_each_attachment(tmp_path, rabbitmq, mail_account):
    mail_account.deliver(message_with_three_attachments())
    home = make_home(tmp_path, rabbitmq, mail_account)
    home.add_example("examples/poll/mail.conf")
    home.add_example("examples/subscribe/decodeemail.conf")
    parts = NoticeCollector(rabbitmq.url, "xs_mail_parts")
    NoticeCollector(rabbitmq.url, "xs_mail").close()
    declared = home.run("declare", "subscribe/decodeemail")
    assert declared.returncode == 0
    mail_dir = tmp_path / "mail"
    try:
        with home.foreground("subscribe/decodeemail") as subscriber:
            with home.foreground("poll/mail"):
                wait_until(lambda: len(eml_files(mail_dir)) == 1, timeout=60, what="the .eml")
            parts.wait_for(5, timeout=60)  # .eml + body.txt + 3 attachments (+ metadata.json)
        notices = parts.drain()  # everything the subscriber published, now that it has stopped
        log = subscriber.log_text()
    finally:
        parts.close()
    by_name = {n["relPath"].rsplit("/", 1)[-1]: n for n in notices}
    expected = {"chart.pdf": PDF, "obs.csv": CSV, JAPANESE_NAME: JAPANESE}
    for name, content in expected.items():
        assert name in by_name, f"{name} not announced; got {sorted(by_name)}"
        notice = by_name[name]
        assert notice["size"] == len(content)
        assert notice["identity"]["method"] == "sha512"
        assert notice["identity"]["value"] == base64.b64encode(hashlib.sha512(content).digest()).decode()
        assert notice["mailParent"]["mail"]["messageId"] == "<daily-1@example.jp>"
        assert notice["mailPart"]["originalName"] == name
        assert notice["baseUrl"].startswith("file:")
        assert (mail_dir / notice["relPath"]).read_bytes() == content  # relPath is under post_baseDir
    eml_notice = next(n for n in notices if n["relPath"].endswith(".eml"))
    assert eml_notice["mailDecode"]["status"] == "decoded"
    assert eml_notice["mail"]["subject"] == "本日の観測 (daily report)"
    assert mail_account.password not in log
