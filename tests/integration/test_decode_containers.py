"""TNEF and S/MIME end to end (issue 15): poll → download → decode with real servers and real sr3;
the files inside winmail.dat and inside a signed-then-encrypted message are announced, and the
.eml notice carries the S/MIME verdicts (checked with an independent pika consumer)."""

from __future__ import annotations

import base64
import hashlib
import shutil

import pytest

from tests import smime_pki
from tests.fuzz.generators import tnef_file, tnef_stream, winmail
from tests.helpers import eml_files, make_home, wait_until
from tests.sr3env import NoticeCollector

pytestmark = pytest.mark.integration

REPORT = b"%PDF-1.4 quarterly\n" + bytes(range(256)) * 8


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command (signature checks) is not installed")
def test_files_inside_winmail_dat_and_smime_are_announced_with_the_verdicts(tmp_path, rabbitmq, mail_account):
    pki = smime_pki.make_pki()
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "key.pem").write_bytes(pki.recipient.pem())
    (secrets / "key.pem").chmod(0o600)
    (secrets / "ca.pem").write_bytes(pki.ca.cert_pem())
    mail_account.deliver(winmail(tnef_stream(tnef_file("Quarterly report (final).pdf", REPORT))))
    mail_account.deliver(smime_pki.signed_then_encrypted(pki.signer, pki.recipient))

    home = make_home(tmp_path, rabbitmq, mail_account)
    home.add_example("examples/poll/mail.conf")
    config = home.add_example("examples/subscribe/decodeemail.conf")
    config.write_text(config.read_text() + "\nmailSmimeKeyFile %s\nmailSmimeTrustFile %s\n"
                      % (secrets / "key.pem", secrets / "ca.pem"))
    parts = NoticeCollector(rabbitmq.url, "xs_mail_parts")
    NoticeCollector(rabbitmq.url, "xs_mail").close()
    assert home.run("declare", "subscribe/decodeemail").returncode == 0
    mail_dir = tmp_path / "mail"
    try:
        with home.foreground("subscribe/decodeemail") as subscriber:
            with home.foreground("poll/mail"):
                wait_until(lambda: len(eml_files(mail_dir)) == 2, timeout=60, what="the two .eml")

            def both_decoded() -> bool:
                return sum(1 for n in parts.notices if n["relPath"].endswith(".eml")) == 2

            parts.wait_for(2, timeout=90, predicate=both_decoded)
        notices = parts.drain()
        log = subscriber.log_text()
    finally:
        parts.close()
    by_name = {n["relPath"].rsplit("/", 1)[-1]: n for n in notices}
    report = by_name["Quarterly report (final).pdf"]
    assert report["identity"]["value"] == base64.b64encode(hashlib.sha512(REPORT).digest()).decode()
    assert report["mailPart"]["originalName"] == "Quarterly report (final).pdf"
    assert "winmail.dat" not in by_name
    assert (mail_dir / by_name["report.pdf"]["relPath"]).read_bytes() == smime_pki.PDF
    assert (mail_dir / by_name["obs.csv"]["relPath"]).read_bytes() == smime_pki.CSV
    verdicts = [n["mailDecode"].get("smime") for n in notices if n["relPath"].endswith(".eml")]
    assert [[v["verdict"] for v in found] for found in verdicts if found] == [["decrypted", "good"]]
    key_line = pki.recipient.pem().decode().splitlines()[1]
    assert key_line not in log
