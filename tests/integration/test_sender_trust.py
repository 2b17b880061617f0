"""Sender trust and machine mail, against a real Dovecot and a real DNS server (dnsmasq on loopback)
serving DKIM keys generated for the test and DMARC records (docs/trust.md).

Messages are signed here with dkimpy; the poll runs in-process (:mod:`tests.inprocess`) with
``mailDnsServers`` pointing at the private dnsmasq.
"""

from __future__ import annotations

import base64
import json
import logging
from email.utils import formatdate, make_msgid
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailingest.mime.layout import decode_file
from tests.helpers import eml_files, imap_raw, make_home, poll_config, wait_until
from tests.inprocess import callback, download_batch, download_notice, poll_pass, url_of
from tests.servers.dnsmasq import DnsmasqServer
from tests.sr3env import NoticeCollector

pytestmark = pytest.mark.integration

SELECTOR = b"sel1"


@pytest.fixture(scope="module")
def signing_key() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


@pytest.fixture(scope="module")
def dns_server(tmp_path_factory, signing_key):
    """dnsmasq publishing the test key at sel1._domainkey of met.test, lists.test and evil.test,
    and DMARC records for met.test (p=reject) and lists.test."""
    private = serialization.load_pem_private_key(signing_key, password=None)
    public = private.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    key_record = "v=DKIM1; k=rsa; p=" + base64.b64encode(public).decode("ascii")
    records = {f"{SELECTOR.decode()}._domainkey.{domain}": key_record
               for domain in ("met.test", "lists.test", "evil.test")}
    records["_dmarc.met.test"] = "v=DMARC1; p=reject"
    records["_dmarc.lists.test"] = "v=DMARC1; p=none"
    with DnsmasqServer(tmp_path_factory.mktemp("dnsmasq"), records, zones=["test"]) as server:
        yield server


def message(sender: str = "obs@met.test", subject: str = "METAR", body: str = "CYUL 291200Z 27010KT\r\n",
            headers: tuple = ()) -> bytes:
    lines = [f"From: {sender}", "To: pump@example.org", f"Subject: {subject}",
             f"Date: {formatdate(localtime=False)}", f"Message-ID: {make_msgid(domain='met.test')}",
             *headers, "MIME-Version: 1.0", "Content-Type: text/plain; charset=us-ascii"]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode("ascii")


def signed(raw: bytes, key: bytes, domain: str = "met.test", selector: bytes = SELECTOR) -> bytes:
    signature = dkim.sign(raw, selector, domain.encode(), key, canonicalize=(b"relaxed", b"relaxed"),
                          include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    return signature + raw


def poll_for(tmp_path, account, dns_server, **options):
    options.setdefault("mailTrustCheck", "on")
    return callback("poll", tmp_path, account, "imaps", pollUrl=url_of(account, "imaps"),
                    mailDnsServers=dns_server.address, mailDnsTimeout="2", **options)


def by_subject(notices) -> dict:
    return {n["mail"]["subject"]: n["mail"] for n in notices}


def one_pass(poll):
    try:
        return poll_pass(poll)
    finally:
        poll.on_stop()


def test_dkim_signed_mail_passes_an_altered_body_fails_an_unknown_selector_is_a_permerror(
        tmp_path, mail_account, dns_server, signing_key):
    mail_account.deliver(signed(message(subject="good"), signing_key))
    altered = signed(message(subject="altered"), signing_key).replace(b"27010KT", b"27099KT")
    mail_account.deliver(altered)
    mail_account.deliver(signed(message(subject="unknown selector"), signing_key, selector=b"nosuch"))
    mail_account.deliver(message(subject="unsigned"))
    mail_account.deliver(signed(message(subject="signed by another domain"), signing_key, domain="evil.test"))
    notices = by_subject(one_pass(poll_for(tmp_path, mail_account, dns_server)))
    assert notices["good"]["sender"]["result"] == "pass"
    assert notices["good"]["sender"]["domain"] == "met.test"
    assert notices["good"]["sender"]["method"] == "dkim"
    assert notices["good"]["sender"]["dmarcPolicy"] == "reject"
    assert notices["good"]["trusted"] is True
    assert notices["altered"]["sender"]["result"] == "fail"
    assert "body hash mismatch" in " ".join(notices["altered"]["sender"]["evidence"])
    assert notices["unknown selector"]["sender"]["result"] == "permerror"
    assert notices["unsigned"]["sender"]["result"] == "none"
    assert notices["signed by another domain"]["sender"]["result"] == "fail"
    assert "not aligned" in " ".join(notices["signed by another domain"]["sender"]["evidence"])
    assert all(n["class"] == "person" for n in notices.values())


@pytest.mark.parametrize("untrusted", ["announce", "quarantine Suspect"])
def test_a_dns_outage_is_a_temperror_held_and_retried_never_a_fail(tmp_path, mail_account, dns_server,
                                                                    signing_key, caplog, untrusted):
    caplog.set_level(logging.INFO, logger="mailingest")
    for i in range(3):
        mail_account.deliver(signed(message(subject=f"during the outage {i}"), signing_key))
    poll = poll_for(tmp_path, mail_account, dns_server, mailUntrusted=untrusted)
    try:
        dns_server.stop()
        try:
            assert poll_pass(poll) == []
            assert poll_pass(poll) == [], "still held while DNS is down"
        finally:
            dns_server.start()
        assert poll.metrics["senderFail"] == 0 and poll.metrics["trustQuarantined"] == 0
        assert poll.metrics["trustHeld"] == 6, "three messages held at each of two cycles"
        held_lines = [r.getMessage() for r in caplog.records if "held, not announced" in r.getMessage()]
        assert len(held_lines) == 3, "a held message is logged once"
        assert all("temperror" in line for line in held_lines)
        assert len(imap_raw(mail_account)) == 3, "left in INBOX, not quarantined"
        notices = poll_pass(poll)
    finally:
        poll.on_stop()
    assert [n["mail"]["sender"]["result"] for n in notices] == ["pass"] * 3
    assert poll.metrics["trustAnnounced"] == 3 and poll.metrics["senderPass"] == 3


def test_authentication_results_count_only_from_the_trusted_authserv_id(tmp_path, mail_account, dns_server):
    forged = "Authentication-Results: mx.evil.test; dkim=pass header.d=met.test; dmarc=pass header.from=met.test"
    trusted = "Authentication-Results: mx.trusted.test; dkim=pass (good signature) header.d=met.test"
    mail_account.deliver(message(subject="forged header", headers=(forged,)))
    mail_account.deliver(message(subject="trusted header", headers=(trusted,)))
    notices = by_subject(one_pass(poll_for(tmp_path, mail_account, dns_server, mailTrustedAuthserv="mx.trusted.test",
                                           mailDkimVerify="off")))
    assert notices["forged header"]["sender"]["result"] == "none"
    assert any("untrusted authserv-id mx.evil.test" in e for e in notices["forged header"]["sender"]["evidence"])
    assert notices["trusted header"]["sender"]["result"] == "pass"
    assert notices["trusted header"]["sender"]["method"] == "authres mx.trusted.test"


def test_with_an_allow_list_a_forged_sender_is_quarantined_and_the_real_one_announced_and_downloaded(
        tmp_path, mail_account, dns_server, signing_key, caplog):
    caplog.set_level(logging.INFO, logger="mailingest")
    real = signed(message(subject="real"), signing_key)
    mail_account.deliver(real)
    mail_account.deliver(message(subject="forged"))
    mail_account.deliver(signed(message(sender="someone@lists.test", subject="not on the list"), signing_key,
                                domain="lists.test"))
    poll = poll_for(tmp_path, mail_account, dns_server, mailAcceptFrom="obs@met.test,*.noaa.test",
                    mailUntrusted="quarantine Suspect")
    notices = one_pass(poll)
    assert [n["mail"]["subject"] for n in notices] == ["real"]
    assert poll.metrics["trustAnnounced"] == 1 and poll.metrics["trustQuarantined"] == 2
    suspect = sorted(imap_raw(mail_account, "Suspect").values())
    assert len(suspect) == 2 and any(b"Subject: forged" in raw for raw in suspect)
    assert sum("quarantined, moved to 'Suspect'" in r.getMessage() for r in caplog.records) == 2
    directory = tmp_path / "mail"
    directory.mkdir()
    download = callback("download", tmp_path, mail_account, "imaps", directory=str(directory))
    try:
        worklist = download_batch(download, [download_notice(n, directory) for n in notices])
    finally:
        download.on_stop()
    assert len(worklist.ok) == 1
    [eml] = eml_files(directory)
    assert eml.read_bytes() == imap_raw(mail_account, "INBOX")[min(imap_raw(mail_account, "INBOX"))]
    result = decode_file(str(eml), mail=notices[0]["mail"])
    [metadata_file] = [f.path for f in result.files if f.kind == "metadata"]
    metadata = json.loads(Path(metadata_file).read_text(encoding="utf-8"))
    assert metadata["sender"]["result"] == "pass" and metadata["class"] == "person"


DSN = """From: MAILER-DAEMON@mx.example.org\r
Return-Path: <>\r
To: pump@example.org\r
Subject: Undelivered Mail Returned to Sender\r
MIME-Version: 1.0\r
Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r
\r
--b1\r
Content-Type: text/plain\r
\r
This is the mail system.\r
--b1\r
Content-Type: message/delivery-status\r
\r
Reporting-MTA: dns; mx.example.org\r
\r
Final-Recipient: rfc822; gone@example.org\r
Action: failed\r
Status: 5.1.1\r
--b1--\r
"""

ARF = """From: abuse@isp.example\r
To: pump@example.org\r
Subject: FW: complaint\r
MIME-Version: 1.0\r
Content-Type: multipart/report; report-type="feedback-report"; boundary="b2"\r
\r
--b2\r
Content-Type: text/plain\r
\r
An abuse report.\r
--b2\r
Content-Type: message/feedback-report\r
\r
Feedback-Type: abuse\r
User-Agent: test/1.0\r
Version: 1\r
--b2--\r
"""


def test_bounces_auto_replies_and_feedback_reports_are_classified_and_list_mail_is_a_persons(
        tmp_path, mail_account, dns_server):
    mail_account.deliver(DSN.encode())
    mail_account.deliver(ARF.encode())
    mail_account.deliver(message(sender="boss@met.test", subject="Out of office",
                                 headers=("Auto-Submitted: auto-replied",)))
    mail_account.deliver(message(sender="clerk@met.test", subject="Away", headers=("X-Autoreply: yes",)))
    mail_account.deliver(message(sender="alice@lists.test", subject="[wx-list] radar outage",
                                 headers=("Precedence: list", "List-Id: <wx.lists.test>")))
    mail_account.deliver(message(sender="bob@met.test", subject="plain mail"))
    mail_account.deliver(message(sender="pump@ingest.test", subject="our own notice"))
    notices = by_subject(one_pass(poll_for(tmp_path, mail_account, dns_server, mailLoopAddresses="pump@ingest.test",
                                           mailMachineMail="tag")))
    classes = {subject: mail["class"] for subject, mail in notices.items()}
    assert classes == {"Undelivered Mail Returned to Sender": "bounce", "FW: complaint": "feedback",
                       "Out of office": "autoreply", "Away": "autoreply", "[wx-list] radar outage": "person",
                       "plain mail": "person", "our own notice": "loop"}
    assert notices["FW: complaint"]["tags"] == ["machine"]
    assert "tags" not in notices["plain mail"]


@pytest.fixture
def collector(rabbitmq, request):
    consumer = NoticeCollector(rabbitmq.url, f"xs_{request.node.name[:40]}")
    yield consumer
    consumer.close()


def test_under_sr3_a_forged_sender_is_quarantined_and_never_published_while_the_real_one_is(
        tmp_path, rabbitmq, mail_account, dns_server, signing_key, collector):
    mail_account.deliver(signed(message(subject="real"), signing_key))
    mail_account.deliver(message(subject="forged"))
    mail_account.deliver(message(sender="MAILER-DAEMON@mx.example.org", subject="bounce",
                                 headers=("Return-Path: <>",)))
    home = make_home(tmp_path, rabbitmq, mail_account)
    extra = (f"mailDnsServers {dns_server.address}\nmailDnsTimeout 2\nmailAcceptFrom obs@met.test,*.noaa.test\n"
             "mailUntrusted quarantine Suspect\n")
    home.write_config("poll", "trust", poll_config(rabbitmq, mail_account, scheme="imaps",
                                                   exchange=collector.exchange, extra=extra))

    def metrics() -> dict:
        for path in (home.cache_dir / "metrics").glob("poll_trust_*.json"):
            try:
                return json.loads(path.read_text())["mailingest.poll"]
            except (ValueError, KeyError):
                continue  # being written, or written before the poll callback reported
        return {}

    def counted() -> bool:
        """sr3's metrics file with the cycle's trust counts"""
        return metrics().get("trustQuarantined") == 2

    with home.foreground("poll/trust") as poll:
        collector.wait_for(1, timeout=90)
        poll.wait_for_log("0 new message(s) to announce", timeout=60)
        wait_until(counted, timeout=60, what="the trust metrics in sr3's metrics file")
        log = poll.log_text()
    assert metrics()["trustAnnounced"] == 1 and metrics()["senderPass"] == 1 and metrics()["machineMail"] == 1
    notices = collector.drain()
    assert [n["mail"]["subject"] for n in notices] == ["real"]
    assert notices[0]["mail"]["sender"]["result"] == "pass" and notices[0]["mail"]["trusted"] is True
    assert sorted(raw.split(b"Subject: ")[1].split(b"\r\n")[0] for raw in imap_raw(mail_account, "Suspect").values()) \
        == [b"bounce", b"forged"]
    assert log.count("quarantined, moved to 'Suspect'") == 2
    assert "class bounce" in log


def test_pop3_skips_an_untrusted_message_once_and_never_announces_it(tmp_path, mail_account, dns_server,
                                                                     signing_key, caplog):
    caplog.set_level(logging.INFO, logger="mailingest")
    mail_account.deliver(signed(message(subject="real"), signing_key))
    mail_account.deliver(message(subject="forged"))
    poll = callback("poll", tmp_path, mail_account, "pops", pollUrl=url_of(mail_account, "pops"),
                    mailDnsServers=dns_server.address, mailDnsTimeout="2", mailAcceptFrom="met.test",
                    mailUntrusted="skip")
    try:
        first = poll_pass(poll)
        second = poll_pass(poll)
    finally:
        poll.on_stop()
    assert [n["mail"]["subject"] for n in first] == ["real"] and second == []
    assert sum("skipped, left on the server" in r.getMessage() for r in caplog.records) == 1
    assert poll.metrics["trustSkipped"] == 1 and poll.metrics["senderNone"] == 1


@pytest.mark.parametrize("scheme", ["imaps", "pops"])
def test_with_dkim_verification_off_only_the_header_is_read_and_trusted_headers_decide(
        tmp_path, mail_account, dns_server, signing_key, scheme):
    trusted = "Authentication-Results: mx.trusted.test; dmarc=pass header.from=met.test"
    mail_account.deliver(message(subject="vouched for", headers=(trusted,)))
    mail_account.deliver(signed(message(subject="signed only"), signing_key))
    poll = callback("poll", tmp_path, mail_account, scheme, pollUrl=url_of(mail_account, scheme),
                    mailDnsServers=dns_server.address, mailTrustedAuthserv="mx.trusted.test", mailDkimVerify="off")
    fetched = []
    original = poll._connected

    def spying(account):
        mailbox = original(account)
        if not hasattr(mailbox, "_spied"):
            for name in ("fetch_stream", "fetch_header"):
                method = getattr(mailbox, name)
                setattr(mailbox, name, lambda ref, _m=method, _n=name: fetched.append(_n) or _m(ref))
            mailbox._spied = True
        return mailbox

    poll._connected = spying
    notices = by_subject(one_pass(poll))
    assert notices["vouched for"]["sender"]["result"] == "pass"
    assert notices["signed only"]["sender"]["result"] == "none"
    assert fetched == ["fetch_header", "fetch_header"], "no message read whole"
