"""Specification of message identity: relPaths are stable, unique and safe as file names."""

from datetime import datetime, timezone

import pytest

from mailingest.refs import MessageRef, parse_notice_fields, safe_token, summary_headers


@pytest.mark.parametrize(
    "name, token",
    [
        ("INBOX", "INBOX"),
        ("Archive/2024", "Archive=2F2024"),
        ("..", "=2E=2E"),
        (".hidden", "=2Ehidden"),
        ("a.b", "a.b"),
        ("Entwürfe", "Entw=C3=BCrfe"),
        ("x y", "x=20y"),
        ("a=b", "a=3Db"),
        ("", "=00"),
    ],
)
def test_safe_token_keeps_plain_names_and_escapes_everything_else(name, token):
    assert safe_token(name) == token


def test_distinct_names_never_share_a_token():
    names = ["a/b", "a=2Fb", "a_b", "a b", "a.b", "a..b", "A/B"]
    assert len({safe_token(n) for n in names}) == len(names)


def test_imap_rel_path_is_folder_uidvalidity_uid():
    ref = MessageRef(folder="Archive/2024", uid=101, uidvalidity=1700000000)
    assert ref.rel_path == "Archive=2F2024/1700000000.101.eml"


def test_pop3_rel_path_uses_the_uidl():
    assert MessageRef(folder="INBOX", uidl="0000001a/x..y").rel_path == "INBOX/0000001a=2Fx..y.eml"


def test_notice_fields_round_trip_to_the_same_message():
    ref = MessageRef(folder="INBOX", uid=7, uidvalidity=42, size=1234,
                     internaldate=datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc),
                     headers={"subject": "hello"})
    fields = ref.notice_fields()
    assert fields == {"folder": "INBOX", "uidvalidity": 42, "uid": 7, "size": 1234,
                      "internalDate": "2026-11-21T12:00:00+00:00", "subject": "hello"}
    back = parse_notice_fields(fields)
    assert (back.folder, back.uidvalidity, back.uid) == ("INBOX", 42, 7)


def test_a_notice_without_mail_fields_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="published by mailingest.poll"):
        parse_notice_fields(None)


def test_summary_headers_are_decoded_and_dates_iso():
    block = (b"Subject: =?ISO-2022-JP?B?GyRCRnxLXDhsGyhC?=\r\n"
             b"From: =?UTF-8?Q?J=C3=BCrgen?= <j@example.com>\r\n"
             b"Date: Sat, 21 Nov 2026 12:00:00 +0100\r\n"
             b"Message-ID: <abc@example.com>\r\n\r\n")
    headers = summary_headers(block)
    assert headers == {"messageId": "<abc@example.com>", "subject": "日本語",
                       "from": "Jürgen <j@example.com>", "date": "2026-11-21T12:00:00+01:00"}


def test_summary_headers_survive_garbage():
    assert summary_headers(b"Subject: \xff\xfe broken\r\nDate: not a date\r\n\r\n")["date"] == "not a date"


def test_summary_headers_take_raw_utf8_subjects_as_they_are():
    assert summary_headers("Subject: Grüße, 日本\r\n\r\n".encode())["subject"] == "Grüße, 日本"
