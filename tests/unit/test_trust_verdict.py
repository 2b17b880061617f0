"""Specification of the sender verdict and the policy (docs/trust.md): DKIM verified with dkimpy
through a stand-in resolver, trusted and untrusted Authentication-Results, the decision for each
mailUntrusted / mailMachineMail choice, and the options that configure them."""

from __future__ import annotations

import base64
import types

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from mailingest.errors import ConfigError
from mailingest.screensettings import screen_settings
from mailingest.trust.addresses import AllowList
from mailingest.trust.classify import MachineClass
from mailingest.trust.dmarc import LookupTempError
from mailingest.trust.policy import Action, TrustPolicy, decide
from mailingest.trust.verdict import SenderVerdict
from mailingest.verify.assess import VerifySettings, assess

KEY = rsa.generate_private_key(public_exponent=65537, key_size=1024)
PEM = KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                        serialization.NoEncryption())
PUBLIC = base64.b64encode(KEY.public_key().public_bytes(serialization.Encoding.DER,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo)).decode()


class StubResolver:
    """TXT answers from a dict; a LookupTempError value is raised (DNS down)."""

    timeout = 1.0

    def __init__(self, records):
        self.records = records
        self.asked = []

    def first(self, name, prefix):
        self.asked.append(name)
        value = self.records.get(name)
        if isinstance(value, Exception):
            raise value
        return value


RECORDS = {"sel._domainkey.met.example": f"v=DKIM1; k=rsa; p={PUBLIC}",
           "sel._domainkey.evil.example": f"v=DKIM1; k=rsa; p={PUBLIC}",
           "_dmarc.met.example": "v=DMARC1; p=reject"}


def mail(sender="obs@met.example", extra=b"", body=b"data\r\n"):
    return (f"From: {sender}\r\nTo: pump@example.org\r\nSubject: x\r\n".encode() + extra + b"\r\n" + body)


def sign(raw, domain=b"met.example", selector=b"sel"):
    return dkim.sign(raw, selector, domain, PEM, include_headers=[b"from", b"to", b"subject"]) + raw


def verdict_of(raw, records=RECORDS, **settings):
    return assess(raw, VerifySettings(**settings), StubResolver(records)).verdict


def test_a_good_signature_aligned_with_from_passes():
    verdict = verdict_of(sign(mail()))
    assert (verdict.result, verdict.domain, verdict.method, verdict.dmarc_policy) == \
        ("pass", "met.example", "dkim", "reject")


def test_an_altered_body_fails_and_says_why():
    verdict = verdict_of(sign(mail()).replace(b"data", b"DATA"))
    assert verdict.result == "fail" and "body hash mismatch" in " ".join(verdict.evidence)


def test_a_signature_covering_only_part_of_the_body_does_not_vouch_for_what_was_appended():
    raw = mail(body=b"data\r\n")
    signature = dkim.sign(raw, b"sel", b"met.example", PEM, include_headers=[b"from", b"to", b"subject"], length=True)
    assert verdict_of(signature + raw).result == "pass"
    verdict = verdict_of(signature + raw + b"run this attachment instead\r\n")
    assert verdict.result == "fail" and "added after signing" in " ".join(verdict.evidence)


def test_a_selector_without_a_key_is_a_permerror():
    verdict = verdict_of(sign(mail(), selector=b"nosuch"))
    assert verdict.result == "permerror" and "no key at nosuch._domainkey.met.example" in " ".join(verdict.evidence)


def test_a_dns_timeout_is_a_temperror_never_a_fail():
    records = dict(RECORDS, **{"sel._domainkey.met.example": LookupTempError("timed out")})
    assert verdict_of(sign(mail()), records).result == "temperror"


def test_a_valid_signature_of_another_domain_does_not_authenticate_the_from_address():
    verdict = verdict_of(sign(mail(), domain=b"evil.example"))
    assert verdict.result == "fail" and "not aligned with From: met.example" in " ".join(verdict.evidence)


def test_a_garbled_signature_is_a_permerror_and_unsigned_mail_is_none():
    garbled = b"DKIM-Signature: v=1; a=rsa-sha256; d=met.example; b=!!!\r\n" + mail()
    assert verdict_of(garbled).result == "permerror"
    assert verdict_of(mail()).result == "none"


def test_mail_without_one_author_cannot_be_authenticated():
    assert verdict_of(sign(mail(sender="a@met.example, b@met.example"))).result == "permerror"


FORGED = b"Authentication-Results: mx.evil.example; dkim=pass header.d=met.example\r\n"
TRUSTED = b"Authentication-Results: mx.example.org; dkim=pass header.d=met.example\r\n"
UNNAMED = b"Authentication-Results: spf=pass smtp.mailfrom=met.example; dmarc=pass header.from=met.example\r\n"


def test_authentication_results_count_only_when_their_authserv_id_is_trusted():
    trusted = {"trusted_authserv": frozenset({"mx.example.org"})}
    assert verdict_of(FORGED + mail(), **trusted).result == "none"
    verdict = verdict_of(TRUSTED + mail(), **trusted)
    assert (verdict.result, verdict.method) == ("pass", "authres mx.example.org")
    assert verdict_of(b"Authentication-Results: mx.example.org; dmarc=fail header.from=met.example\r\n" + mail(),
                      **trusted).result == "fail"


def test_exchange_onlines_header_without_authserv_id_counts_only_when_allowed_and_only_at_the_top():
    assert verdict_of(UNNAMED + mail()).result == "none"
    assert verdict_of(UNNAMED + mail(), trust_unnamed=True).result == "pass"
    assert verdict_of(FORGED + UNNAMED + mail(), trust_unnamed=True).result == "none", "a lower one is anyone's"


# -- policy -------------------------------------------------------------------------------------

PERSON = MachineClass("person")
BOUNCE = MachineClass("bounce", "multipart/report")


def passed(address="obs@met.example"):
    return SenderVerdict("pass", address, "met.example", "dkim")


def test_trusted_mail_is_announced_and_untrusted_mail_follows_mail_untrusted():
    policy = TrustPolicy(allow=AllowList.parse(["obs@met.example"]), untrusted=Action.parse("quarantine Suspect", "x"))
    assert decide(passed(), PERSON, policy).action == "announce"
    assert decide(passed(), PERSON, policy).trusted
    off_list = decide(passed("other@met.example"), PERSON, policy)
    assert (off_list.action, off_list.folder) == ("quarantine", "Suspect")
    assert "not on mailAcceptFrom" in off_list.reason
    assert decide(SenderVerdict("fail", "obs@met.example"), PERSON, policy).action == "quarantine"


@pytest.mark.parametrize("untrusted", ["announce", "tag", "skip", "quarantine Suspect"])
def test_a_temperror_is_held_whatever_the_policy(untrusted):
    policy = TrustPolicy(untrusted=Action.parse(untrusted, "mailUntrusted"))
    assert decide(SenderVerdict("temperror", "obs@met.example"), PERSON, policy).action == "hold"


@pytest.mark.parametrize("untrusted, action", [("announce", "announce"), ("tag", "announce"), ("skip", "hold"),
                                               ("quarantine Suspect", "hold")])
def test_held_past_mail_trust_hold_max_a_temperror_is_announced_only_where_untrusted_mail_is_anyway(untrusted,
                                                                                                  action):
    policy = TrustPolicy(untrusted=Action.parse(untrusted, "mailUntrusted"))
    decision = decide(SenderVerdict("temperror", "obs@met.example"), PERSON, policy, hold_over=True)
    assert decision.action == action and not decision.trusted


def test_tag_announces_with_a_tag_and_machine_mail_follows_mail_machine_mail():
    tagged = decide(SenderVerdict("none", "x@y.example"), PERSON, TrustPolicy(untrusted=Action("tag")))
    assert tagged.announced and tagged.tag_untrusted and not tagged.trusted
    machine = TrustPolicy(machine=Action("skip"))
    assert decide(passed(), BOUNCE, machine).action == "skip"
    assert decide(passed(), BOUNCE, TrustPolicy(machine=Action("skip"), machine_classes=frozenset({"autoreply"}))) \
        .action == "announce"
    assert decide(passed(), BOUNCE, TrustPolicy(machine=Action("tag"))).tag_machine


@pytest.mark.parametrize("text", ["quarantine", "drop", "tag Folder", "skip now"])
def test_a_policy_word_that_is_not_one_of_the_four_is_refused(text):
    with pytest.raises(ConfigError, match="announce, tag, quarantine <folder> or skip"):
        Action.parse(text, "mailUntrusted")


# -- options ------------------------------------------------------------------------------------


def options(**values):
    return types.SimpleNamespace(**values)


def test_the_check_is_off_until_a_trust_option_is_set():
    assert screen_settings(options(), pop3=False) is None
    assert screen_settings(options(mailTrustCheck="off", mailAcceptFrom="obs@met.example"), pop3=False) is None
    settings = screen_settings(options(mailAcceptFrom="obs@met.example,*.noaa.gov",
                                       mailTrustedAuthserv="MX.Example.org", mailUntrusted="quarantine Suspect",
                                       mailDnsServers="127.0.0.1:5353", mailDnsTimeout="2s"), pop3=False)
    assert settings is not None
    assert settings.verify.trusted_authserv == {"mx.example.org"}
    assert settings.policy.untrusted == Action("quarantine", "Suspect")
    assert settings.dns_servers == ("127.0.0.1:5353",) and settings.dns_timeout == 2.0
    assert screen_settings(options(mailTrustCheck="on"), pop3=False) is not None


@pytest.mark.parametrize("values, message", [
    ({"mailUntrusted": "quarantine Suspect"}, "quarantine needs IMAP"),
    ({"mailMachineClasses": "bounce,spam"}, "mailMachineClasses spam"),
    ({"mailDnsServers": "127.0.0.1:99999"}, "mailDnsServers"),
])
def test_bad_trust_options_are_refused_at_start(values, message):
    with pytest.raises(ConfigError, match=message):
        screen_settings(options(mailTrustCheck="on", **values), pop3="mailUntrusted" in values)


def test_after_a_dns_failure_lookups_fail_at_once_until_the_next_folder_or_cycle(monkeypatch):
    from mailingest.verify.dns import TxtResolver

    resolver = TxtResolver(["127.0.0.1:9"], timeout=0.5)
    asked = []

    def down(name):
        asked.append(name)
        raise LookupTempError("timed out")

    monkeypatch.setattr(resolver, "_ask", down)
    for name in ("a.example", "b.example", "c.example"):
        with pytest.raises(LookupTempError):
            resolver.txt(name)
    assert asked == ["a.example"], "one timeout, not one per lookup"
    resolver.retry()
    monkeypatch.setattr(resolver, "_ask", lambda name: (["v=DMARC1; p=none"], 60.0))
    assert resolver.txt("b.example") == ["v=DMARC1; p=none"]


class _FakeAuthresModule:
    """What dkimpy's ARC signer needs of the (not installed) ``authres`` package, from our own parser."""

    class core:
        SyntaxError = ValueError

    class AuthenticationResultsHeader:
        @staticmethod
        def parse(text):
            from mailingest.trust import authres as ours

            parsed = ours.parse(text.split(":", 1)[1])
            return types.SimpleNamespace(authserv_id=parsed.authserv_id,
                                         results=[_Described(r.method, r.result, r.describe()) for r in parsed.results])


class _Described:
    def __init__(self, method, result, text):
        self.method, self.result, self._text = method, result, text

    def __str__(self):
        return self._text


def arc_forwarded(monkeypatch):
    """obs@met.example's mail as a forwarder (relay.example.org, ARC-signed as evil.example) passes it on:
    the relay's own Authentication-Results removed, only its ARC set left."""
    monkeypatch.setattr(dkim, "authres", _FakeAuthresModule, raising=False)
    relay = b"Authentication-Results: relay.example.org; dmarc=pass header.from=met.example\r\n"
    raw = relay + mail()
    arc = b"".join(dkim.arc_sign(raw, b"sel", b"evil.example", PEM, b"relay.example.org",
                                 include_headers=[b"from", b"to", b"subject"]))
    return arc + mail()


def test_an_arc_authentication_results_counts_when_its_authserv_id_is_trusted_and_the_chain_verifies(monkeypatch):
    forwarded = arc_forwarded(monkeypatch)
    assert b"ARC-Authentication-Results: i=1; relay.example.org" in forwarded
    trusted = {"trusted_authserv": frozenset({"relay.example.org"})}
    verdict = verdict_of(forwarded, **trusted)
    assert (verdict.result, verdict.method) == ("pass", "arc relay.example.org")
    assert "arc=pass (success)" in verdict.evidence
    assert verdict_of(forwarded).result == "none", "an untrusted sealer vouches for nothing"
    broken = verdict_of(forwarded.replace(b"data", b"DATA"), **trusted)
    assert broken.result != "pass"
    assert any("ARC chain is not valid" in e for e in broken.evidence)


HEADER_NAMES = ["From", "DKIM-Signature", "ARC-Seal", "ARC-Message-Signature", "ARC-Authentication-Results",
                "Authentication-Results", "Content-Type", "Auto-Submitted", "Return-Path"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(HEADER_NAMES),
                          st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=120)), max_size=8),
       st.binary(max_size=200))
def test_no_hostile_message_makes_the_assessment_raise(headers, body):
    raw = b"".join(f"{name}: {value}".encode("utf-8", "replace").replace(b"\r", b" ").replace(b"\n", b" ") + b"\r\n"
                   for name, value in headers) + b"\r\n" + body
    assessment = assess(raw, VerifySettings(trusted_authserv=frozenset({"mx.example.org"})), StubResolver(RECORDS))
    assert assessment.verdict.result in ("pass", "temperror", "fail", "permerror", "none")
    assert assessment.fields()["class"]
