"""Specification of message identity: relPaths are stable, unique and safe as file names."""

from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailingest.atomic import write_atomically
from mailingest.mailbox.account import parse_mail_url
from mailingest.mailbox.refs import TOKEN_MAX, MessageRef, parse_notice_fields, safe_token, summary_headers


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


@given(st.text(alphabet=st.sampled_from("aZ09_+@-.=~/ é\udcff"), max_size=40), st.booleans())
def test_a_token_spells_every_byte_of_its_name_plainly_or_escaped_whatever_the_name(name, keep_dots):
    raw = name.encode("utf-8", "surrogateescape")
    plain = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+@-"
    spelled = "".join(
        chr(byte) if byte in plain or (keep_dots and byte == ord(".") and 0 < i < len(raw) - 1) else f"={byte:02X}"
        for i, byte in enumerate(raw)) or "=00"
    assert safe_token(name, keep_dots=keep_dots) == spelled


def test_distinct_names_never_share_a_token():
    names = ["a/b", "a=2Fb", "a_b", "a b", "a.b", "a..b", "A/B"]
    assert len({safe_token(n) for n in names}) == len(names)


def test_imap_rel_path_is_host_user_folder_uidvalidity_uid():
    ref = MessageRef(folder="Archive/2024", uid=101, uidvalidity=1700000000)
    account = parse_mail_url("imaps://alice@mail.example.org/").path_dir
    assert ref.rel_path_in(account) == "mail.example.org/alice/Archive=2F2024/1700000000.101.eml"


def test_pop3_rel_path_uses_the_uidl_with_every_dot_escaped():
    account = parse_mail_url("pops://alice@mail.example.org/").path_dir
    ref = MessageRef(folder="INBOX", uidl="0000001a/x..y")
    assert ref.rel_path_in(account) == "mail.example.org/alice/INBOX/0000001a=2Fx=2E=2Ey.eml"


def test_a_pop3_name_never_looks_like_an_imap_name():
    imap = MessageRef(folder="INBOX", uid=42, uidvalidity=1700000000).rel_path_in("h/u")
    pop3 = MessageRef(folder="INBOX", uidl="1700000000.42").rel_path_in("h/u")
    assert imap != pop3


@pytest.mark.parametrize("url, account_dir", [
    ("imaps://alice@Mail.Example.org/", "mail.example.org/alice"),
    ("imaps://alice@mail.example.org:993/", "mail.example.org/alice"),
    ("imap://alice@mail.example.org:143/", "mail.example.org/alice"),
    ("imaps://alice@mail.example.org:1993/", "mail.example.org+1993/alice"),
    ("imap://alice@mail.example.org:993/", "mail.example.org+993/alice"),
    ("pops://alice%40example.org@mail.example.org/", "mail.example.org/alice@example.org"),
    ("pop://..@[::1]:1110/", "=3A=3A1+1110/=2E=2E"),
    ("imaps://a%2Fb@mail.example.org/", "mail.example.org/a=2Fb"),
])
def test_the_account_part_names_host_non_default_port_and_user_safely(url, account_dir):
    assert parse_mail_url(url).path_dir == account_dir


def test_two_accounts_with_the_same_uidvalidity_and_uid_get_different_names():
    ref = MessageRef(folder="INBOX", uid=1, uidvalidity=1700000000)
    names = {ref.rel_path_in(parse_mail_url(u).path_dir) for u in
             ("imaps://alice@mail.example.org/", "imaps://bob@mail.example.org/",
              "imaps://alice@mail.example.net/", "imaps://alice@mail.example.org:1993/")}
    assert len(names) == 4


def test_no_secret_reaches_the_account_part():
    url = parse_mail_url("imaps://alice:s3cret@mail.example.org/")
    assert "s3cret" not in url.path_dir


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


_FIELD_LINES = st.sampled_from([b"Subject: a\r\n", b"subject:  b \r\n", b"From:\tx <x@y>\n", b"Date: Sat, 21 Nov 2026\r\n",
                                b"Message-ID: <m@x>\r\n", b" folded\r\n", b"\tfolded\n", b"X-Other: y\r\n", b" \r\n",
                                b"Subject: =?utf-8?q?J=C3=BCrgen?=\r\n", b"Subject: \xff\xfe\r\n", b"Date:\r\n"])
_SPECIAL_LINES = st.sampled_from([b"\r\n", b"From nobody\r\n", b": empty name\r\n", b"No colon\r\n", b"Bad Name: z\r\n",
                                  b"lone\rCR: q\r\n"])
#: header blocks: mostly lines a server sends, some that the email parser treats specially, some noise
_HEADER_LINES = st.lists(st.one_of(_FIELD_LINES, _FIELD_LINES, _FIELD_LINES, _FIELD_LINES, _SPECIAL_LINES,
                                   st.binary(max_size=12)), max_size=8).map(b"".join)
_HEADER_BLOCKS = st.one_of(_HEADER_LINES, st.tuples(_FIELD_LINES.filter(lambda line: line[:1] not in b" \t"),
                                                    _HEADER_LINES).map(b"".join))


@settings(max_examples=300)
@given(_HEADER_BLOCKS)
def test_the_fields_of_a_header_block_are_those_the_email_parser_reads(block):
    from email import policy
    from email.parser import BytesHeaderParser

    from mailingest.mailbox.refs import _plain_fields

    fields = _plain_fields(block.decode("ascii", "surrogateescape"))
    if fields is not None:  # None: left to the parser itself
        assert fields == list(BytesHeaderParser(policy=policy.compat32).parsebytes(block).raw_items())


def test_summary_headers_survive_garbage():
    assert summary_headers(b"Subject: \xff\xfe broken\r\nDate: not a date\r\n\r\n")["date"] == "not a date"


def test_summary_headers_take_raw_utf8_subjects_as_they_are():
    assert summary_headers("Subject: Grüße, 日本\r\n\r\n".encode())["subject"] == "Grüße, 日本"


LONG_NAMES = [
    "Проекты/2024/Отчёты по наблюдениям за погодой/Ежедневные сводки",
    "Проекты/2024/Отчёты по наблюдениям за погодой/Ежемесячные сводки",
    "a" * 300,
    "a" * 301,
    "x" * 101 + "é" * 40,
]


@pytest.mark.parametrize("name", LONG_NAMES)
def test_a_long_name_is_shortened_to_a_bounded_stable_token_never_cut_inside_an_escape(name):
    token = safe_token(name)
    assert len(token.encode()) <= TOKEN_MAX and token == safe_token(name)
    prefix, tilde, digest = token.rpartition("~")
    assert tilde and len(digest) == 16 and "~" not in prefix
    assert "=" not in prefix[-2:], "a whole =XX escape or none"
    assert safe_token(name + ".") != token, "the digest is of the whole name"


def test_long_names_sharing_their_first_bytes_get_different_tokens_and_never_a_plain_ones():
    tokens = {safe_token(n) for n in LONG_NAMES}
    assert len(tokens) == len(LONG_NAMES)
    assert safe_token("a~b") == "a=7Eb", "only a shortened token holds a ~"


def test_the_longest_relpath_fits_the_file_system_with_the_download_temp_name(tmp_path):
    """255 bytes per name on ext4 and most others: every directory, the .eml and its temp file."""
    account = parse_mail_url(f"pops://{'ü' * 100}@mail.example.org/").path_dir
    ref = MessageRef(folder="INBOX", uidl="." * 70)  # RFC 1939: up to 70 characters, each escaped
    rel_path = ref.rel_path_in(account)
    final = tmp_path / rel_path
    final.parent.mkdir(parents=True)
    assert all(len(part.encode()) <= 255 for part in final.relative_to(tmp_path).parts)
    write_atomically(str(final), [b"x"])
    assert final.read_bytes() == b"x"
    imap = MessageRef(folder="Ж" * 200, uid=2**32 - 1, uidvalidity=2**32 - 1).rel_path_in(account)
    (tmp_path / imap).parent.mkdir(parents=True)
    write_atomically(str(tmp_path / imap), [b"y"])
