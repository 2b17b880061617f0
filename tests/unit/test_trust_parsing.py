"""Specification of the sender-trust parsers (mailingest.trust, docs/trust.md): Authentication-Results
with the authserv-id check, From: addresses, allow-lists, DMARC records and alignment, machine-mail
classes; hostile values never raise and take bounded time."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailingest.errors import ConfigError
from mailingest.trust import authres
from mailingest.trust.addresses import AllowList, from_address
from mailingest.trust.classify import classify
from mailingest.trust.dmarc import Alignment, LookupTempError, organizational_domain, parse_record

# -- Authentication-Results ---------------------------------------------------------------------


def test_an_authentication_results_header_names_its_authserv_id_and_each_result_with_its_properties():
    parsed = authres.parse("mx.example.org 1; spf=pass (sender IP is 192.0.2.1) smtp.mailfrom=obs@met.example;\r\n"
                           " dkim=pass (2048-bit key) header.d=met.example header.s=sel1;\r\n dmarc=pass header.from=met.example")
    assert parsed is not None and parsed.authserv_id == "mx.example.org"
    assert [(r.method, r.result) for r in parsed.results] == [("spf", "pass"), ("dkim", "pass"), ("dmarc", "pass")]
    assert parsed.of("dkim")[0].properties == {"header.d": "met.example", "header.s": "sel1"}
    assert [authres.domain_of(r) for r in parsed.results] == ["met.example"] * 3


def test_comments_quoted_strings_and_case_do_not_confuse_the_parser():
    parsed = authres.parse('MX.Example.ORG; (a comment; with dkim=pass (nested)) DKIM=Fail reason="bad; sig" '
                           'header.d=met.example')
    assert parsed is not None and parsed.authserv_id == "mx.example.org"
    assert [(r.method, r.result, r.properties.get("reason")) for r in parsed.results] == [("dkim", "fail", "bad; sig")]


@pytest.mark.parametrize("text, domain", [("dkim=pass header.d=Met.Example.", "met.example"),
                                          ("dkim=pass header.i=obs@met.example", "met.example"),
                                          ("dkim=pass header.d=@met.example", "met.example"),
                                          ("spf=pass smtp.mailfrom=<bounce@met.example>", "met.example"),
                                          ("spf=pass smtp.helo=mx.met.example", "mx.met.example"),
                                          ("dmarc=pass header.from=met.example", "met.example"),
                                          ("dkim=pass", None), ("arc=pass header.d=met.example", None)])
def test_the_authenticated_domain_of_a_result_is_read_from_the_property_its_method_names(text, domain):
    parsed = authres.parse("mx.example.org; " + text)
    assert parsed is not None and authres.domain_of(parsed.results[0]) == domain


def test_none_means_no_result():
    parsed = authres.parse("mx.example.org; none")
    assert parsed is not None and parsed.results == ()


def test_an_exchange_online_header_has_no_authserv_id():
    parsed = authres.parse("spf=pass (sender IP is 40.107.1.1) smtp.mailfrom=met.example; dkim=pass (signature "
                           "was verified) header.d=met.example;dmarc=pass action=none header.from=met.example;"
                           "compauth=pass reason=100")
    assert parsed is not None and parsed.authserv_id is None
    assert [r.method for r in parsed.results] == ["spf", "dkim", "dmarc", "compauth"]


def test_an_arc_authentication_results_header_carries_its_instance_first():
    parsed = authres.parse("i=2; mx.google.com; dkim=pass header.i=@met.example", arc=True)
    assert parsed is not None and (parsed.instance, parsed.authserv_id) == (2, "mx.google.com")
    assert authres.domain_of(parsed.results[0]) == "met.example"
    assert authres.parse("mx.google.com; dkim=pass", arc=True) is None


@pytest.mark.parametrize("value", ["", ";;;", "(((((", '"unterminated', "x" * (authres.MAX_LENGTH + 1),
                                   "mx; " + "; ".join(["dkim=pass"] * 500), "\x00\x01; dkim=pass", "=; ="])
def test_unreadable_or_oversized_headers_give_nothing_to_trust(value):
    parsed = authres.parse(value)
    assert parsed is None or all(r.result != "pass" or parsed.authserv_id is None for r in parsed.results) \
        or parsed.authserv_id not in ("mx.example.org",)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list('abci1=;()"\\ .@\t\r\n-/') + ["dkim", "pass", "header.d", "i=1"]),
                max_size=200).map("".join), st.booleans())
def test_no_hostile_authentication_results_makes_the_parser_raise(value, arc):
    authres.parse(value, arc=arc)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.booleans())
def test_no_arbitrary_text_makes_the_parser_raise(value, arc):
    authres.parse(value, arc=arc)


@pytest.mark.parametrize("value", ["(" * 16000, "\\" * 16000, '"' * 16000, "a=" * 8000, "; " * 8000, "(\\" * 8000])
def test_a_hostile_header_at_the_length_limit_parses_in_bounded_time(value):
    started = time.process_time()
    authres.parse(value)
    authres.parse(value, arc=True)
    classify([("Content-Type", value), ("Auto-Submitted", value), ("Return-Path", value), ("From", value)])
    classify([("Precedence", "junk"), ("Subject", value), ("Auto-Submitted", "auto-generated")])
    classify([("Precedence", "junk"), ("Subject", "=?utf-8?q?" + value + "?=")])
    from_address([value])
    assert time.process_time() - started < 1.0


# -- From: and the allow-list -------------------------------------------------------------------


@pytest.mark.parametrize("values, expected", [
    (["Obs <OBS@Met.Example>"], ("obs@met.example", "met.example")),
    (["obs@met.example."], ("obs@met.example", "met.example")),
    (["a@x.example, b@y.example"], (None, None)),
    (["a@x.example", "b@y.example"], (None, None)),
    ([], (None, None)),
    (["undisclosed-recipients:;"], (None, None)),
    (["no at sign"], (None, None)),
    (["a@bad domain"], (None, None)),
])
def test_the_author_is_one_from_header_with_one_address(values, expected):
    assert from_address(values) == expected


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=200), max_size=3))
def test_no_hostile_from_header_makes_the_address_reader_raise(values):
    from_address(values)


def test_an_allow_list_holds_addresses_domains_and_subdomain_patterns():
    allow = AllowList.parse(["obs@met.example", " *.noaa.gov", "@wmo.example", "*@ecmwf.example"])
    assert allow.admits("obs@met.example")
    assert not allow.admits("other@met.example")
    assert allow.admits("x@nws.noaa.gov") and allow.admits("x@a.b.noaa.gov")
    assert not allow.admits("x@noaa.gov"), "*.noaa.gov names subdomains only"
    assert not allow.admits("x@evilnoaa.gov")
    assert allow.admits("anyone@wmo.example") and allow.admits("anyone@ecmwf.example")
    assert not allow.admits(None)
    assert not AllowList.parse([])


@pytest.mark.parametrize("item", ["obs@", "a b@met.example", "obs@*.met.example", "*", "met..example", "@"])
def test_an_allow_list_item_that_is_no_address_or_domain_is_refused_with_the_syntax(item):
    with pytest.raises(ConfigError, match="mailAcceptFrom"):
        AllowList.parse([item])


# -- DMARC --------------------------------------------------------------------------------------


def test_a_dmarc_record_is_read_and_anything_else_is_not():
    record = parse_record("v=DMARC1; p=reject; sp=none; adkim=s; rua=mailto:x@met.example")
    assert record is not None and (record.policy, record.subdomain_policy, record.adkim, record.aspf) == \
        ("reject", "none", "s", "r")
    assert parse_record("v=spf1 -all") is None
    assert parse_record("p=reject; v=DMARC1") is None
    assert parse_record(None) is None


def lookup_from(records):
    def lookup(name):
        value = records.get(name)
        if isinstance(value, Exception):
            raise value
        return value
    return lookup


def test_the_organizational_domain_is_found_by_walking_the_dns_tree():
    records = {"_dmarc.met.example": "v=DMARC1; p=none"}
    assert organizational_domain("a.b.met.example", lookup_from(records)) == "met.example"
    records["_dmarc.example"] = "v=DMARC1; p=none; psd=y"
    assert organizational_domain("a.b.met.example", lookup_from(records)) == "met.example"
    records["_dmarc.b.met.example"] = "v=DMARC1; p=none; psd=n"
    assert organizational_domain("a.b.met.example", lookup_from(records)) == "b.met.example"
    assert organizational_domain("x.other.example", lookup_from({})) is None


def test_relaxed_alignment_joins_one_organization_and_strict_alignment_needs_the_same_domain():
    relaxed = Alignment("met.example", lookup_from({"_dmarc.met.example": "v=DMARC1; p=reject"}))
    assert relaxed.aligned("met.example") and relaxed.aligned("mail.met.example")
    assert not relaxed.aligned("evil.example")
    strict = Alignment("met.example", lookup_from({"_dmarc.met.example": "v=DMARC1; p=reject; adkim=s"}))
    assert strict.aligned("met.example") and not strict.aligned("mail.met.example")
    without_records = Alignment("met.example", lookup_from({}))
    assert without_records.aligned("mail.met.example") and not without_records.aligned("example")
    assert not without_records.aligned("met.example.evil")


def test_a_dns_failure_during_alignment_is_a_temporary_error_not_a_no():
    alignment = Alignment("met.example", lookup_from({"_dmarc.met.example": LookupTempError("timeout")}))
    with pytest.raises(LookupTempError):
        alignment.aligned("mail.met.example")
    assert alignment.aligned("met.example"), "the same domain needs no DNS"


# -- machine mail -------------------------------------------------------------------------------


def headers_of(text: str):
    return [tuple(part.strip() for part in line.split(":", 1)) for line in text.strip().splitlines()]


@pytest.mark.parametrize("text, kind", [
    ("Content-Type: multipart/report; report-type=delivery-status; boundary=x", "bounce"),
    ('Content-Type: Multipart/Report; report-type="Feedback-Report"', "feedback"),
    ("Content-Type: multipart/report; report-type=disposition-notification", "receipt"),
    ("Content-Type: multipart/report; report-type=tlsrpt", "report"),
    ("From: MAILER-DAEMON@mx.example\nReturn-Path: <>", "bounce"),
    ("From: a@b.example\nX-Failed-Recipients: x@y.example", "bounce"),
    ("Auto-Submitted: auto-replied (vacation)", "autoreply"),
    ("Auto-Submitted: auto-generated", "automatic"),
    ("Auto-Submitted: auto-generated\nSubject: Automatic reply: METAR feed", "autoreply"),
    ("Auto-Submitted: no", "person"),
    ("X-Autoreply: yes", "autoreply"),
    ("X-Autorespond: vacation", "autoreply"),
    ("Precedence: junk\nSubject: Out of Office: back Monday", "autoreply"),
    ("Precedence: bulk\nSubject: Weekly newsletter", "person"),
    ("Precedence: junk\nSubject: =?UTF-8?Q?R=C3=A9ponse_automatique?= : absent", "autoreply"),
    ("Precedence: list\nList-Id: <wx.lists.example>\nSubject: Auto: radar", "person"),
    ("Precedence: list\nSubject: Re: outage", "person"),
    ("From: Alice <alice@example.org>\nSubject: hello", "person"),
    ("Return-Path: <>\nFrom: alice@example.org", "person"),
])
def test_machine_mail_is_told_from_peoples_mail_by_its_headers(text, kind):
    assert classify(headers_of(text)).kind == kind


def test_the_pumps_own_mail_is_a_loop_whatever_else_it_looks_like():
    own = frozenset({"pump@ingest.example"})
    assert classify(headers_of("From: Pump <PUMP@ingest.example>"), own).kind == "loop"
    assert classify(headers_of("From: a@b.example\nX-Loop: pump@ingest.example"), own).kind == "loop"
    assert classify(headers_of("From: pump@ingest.example")).kind == "person", "no loop guard configured"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["Content-Type", "Auto-Submitted", "Return-Path", "From", "Precedence",
                                           "X-Autoreply", "X-Loop", "Subject", "List-Id"]),
                          st.text(max_size=200)), max_size=8))
def test_no_hostile_header_makes_the_classifier_raise(headers):
    assert classify(headers, frozenset({"pump@ingest.example"})).kind
