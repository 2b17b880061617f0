"""Specification of credentials.conf as mailingest reads it: a bad line is one clear line naming its
number (never its content), the other accounts keep working, and a change is picked up without a restart."""

from __future__ import annotations

import logging
import os
import re
import urllib.parse

import pytest
from sarracenia.config.credentials import CredentialDB

from mailingest.errors import ConfigError
from mailingest.mailbox.account import resolve_account
from mailingest.mailbox.credentials_file import CredentialsFile, line_problem, sr3_logs_it_in_full
from mailingest.security import keystore
from tests.secret_scan import register_secret

#: a password with every character that breaks an unencoded URL
SPECIAL = "Qxr9@7Tuv:yHk2#pLm4/zWe5?wNb6%kSq"
GOOD = "plain-Good-pass-61"
WRONG = "wrong-Pass-before-fix-3"
for _secret in (SPECIAL, GOOD, WRONG):
    register_secret(_secret)


@pytest.fixture(autouse=True)
def no_keyring(monkeypatch):
    monkeypatch.setattr(keystore, "get_secret", lambda service, user: None)


def pieces_of(secret: str) -> list:
    """Every fragment of *secret* of 3 characters or more, split where URL parsing splits it."""
    return [piece for piece in re.split(r"[@:#/?%]", secret) if len(piece) >= 3] + [secret]


@pytest.mark.parametrize("line", [
    "", "   ", "# a comment", "amqp://bunny:pw@localhost/",
    f"imaps://carol:{urllib.parse.quote(SPECIAL, safe='')}@mail.example.com:55791/",
    "imaps://carol@example.com:pw@mail.example.com/",  # an unencoded @ in the user name still reads right
    "imap://bob:pw@mail.example.com/ tls",
])
def test_lines_that_read_as_one_url_are_fine(line):
    assert line_problem(line) is None


@pytest.mark.parametrize("password", [SPECIAL, "pa#ss", "pa/ss", "pa?ss", "x@y:z#w"])
def test_a_password_with_an_unencoded_hash_slash_or_question_mark_is_a_problem(password):
    assert line_problem(f"imaps://carol:{password}@mail.example.com:993/") is not None


@pytest.mark.parametrize(("password", "quoted_by_sr3"), [
    ("Hd7@Md7:Pt7#Fr7/Tl7", False), ("Al8@Bt8:Gm8#Dl8", False),  # taken silently
    ("Ps9#Wd9", False),  # redacted by sr3
    ("Ps9#Wd9@Tl9", True),  # redacted up to its first @ only
    ("Al1/Bt1?Gm1", True), ("Al2?Bt2@Gm2", True), ("Al3/Bt3", True), ("Tw4 Wd4", True),
])
def test_the_error_says_when_sr3_itself_logged_the_line_in_full(password, quoted_by_sr3, caplog):
    import logging

    from sarracenia.config.credentials import CredentialDB

    line = f"imaps://carol:{password}@mail.example.com:993/"
    caplog.set_level(logging.DEBUG, logger="sarracenia.config.credentials")
    CredentialDB()._parse(line)  # what sr3 logs when it reads the file
    pieces = re.split(r"[@:#/? ]", password)
    assert any(piece in caplog.text for piece in pieces) is quoted_by_sr3, caplog.text
    assert sr3_logs_it_in_full(line) is quoted_by_sr3


def write(path, *lines: str) -> None:
    path.write_text("\n".join(lines) + "\n")
    os.chmod(path, 0o600)


def test_a_bad_line_is_one_error_with_its_number_and_the_other_accounts_keep_working(tmp_path, caplog):
    conf = tmp_path / "credentials.conf"
    write(conf, "amqp://bunny:pw@localhost/",
          f"imaps://carol:{SPECIAL}@mail.example.com:993/",
          f"imaps://dave:{GOOD}@mail.example.com:993/")
    caplog.set_level(logging.DEBUG)
    database = CredentialsFile(str(conf)).database()
    account = resolve_account("imaps://dave@mail.example.com:993/", database)
    assert account.password == GOOD
    with pytest.raises(ConfigError, match="no password for imaps://carol@mail.example.com:993"):
        resolve_account("imaps://carol@mail.example.com:993/", database)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and f"{conf} line 2 (imaps://...) is ignored" in errors[0]
    assert "# as %23" in errors[0] and "% as %25" in errors[0]
    logged = caplog.text
    assert not any(piece in logged for piece in pieces_of(SPECIAL) if len(piece) >= 3)
    assert GOOD not in logged and "Traceback" not in logged


def test_sr3s_own_database_with_such_a_line_does_not_break_the_other_accounts():
    """sr3 accepts the line (user and password present), but its port is a piece of the password."""
    database = CredentialDB()
    database._parse(f"imaps://carol:{SPECIAL}@mail.example.com:993/")
    database._parse(f"imaps://dave:{GOOD}@mail.example.com:993/")
    assert resolve_account("imaps://dave@mail.example.com:993/", database).password == GOOD


def test_a_password_fixed_in_the_file_is_used_at_the_next_lookup_and_the_change_is_logged_once(tmp_path, caplog):
    conf = tmp_path / "credentials.conf"
    write(conf, f"imaps://erin:{WRONG}@mail.example.com/")
    credentials = CredentialsFile(str(conf))
    assert resolve_account("imaps://erin@mail.example.com/", credentials.database()).password == WRONG
    first = credentials.generation
    write(conf, f"imaps://erin:{GOOD}@mail.example.com/")
    caplog.set_level(logging.INFO, logger="mailingest.mailbox.credentials_file")
    assert resolve_account("imaps://erin@mail.example.com/", credentials.database()).password == GOOD
    assert resolve_account("imaps://erin@mail.example.com/", credentials.database()).password == GOOD
    assert credentials.generation == first + 1
    assert [r.getMessage() for r in caplog.records] == [
        f"{conf} changed: read again; the next login of each account uses it"]


def test_without_the_file_sr3s_database_is_used(tmp_path):
    fallback = CredentialDB()
    fallback._parse(f"imaps://frank:{GOOD}@mail.example.com/")
    database = CredentialsFile(str(tmp_path / "absent.conf"), fallback).database()
    assert resolve_account("imaps://frank@mail.example.com/", database).password == GOOD


@pytest.mark.parametrize("poll_url", ["imaps://carol@127.0.0.1:55791/", "imaps://carol@mail.example.com/",
                                      "pops://carol%40example.com@mail.example.com:995/INBOX",
                                      "imap://carol@[::1]:10143/"])
def test_the_no_password_hint_is_a_line_that_works_when_pasted(poll_url):
    with pytest.raises(ConfigError) as caught:
        resolve_account(poll_url, CredentialDB())
    line = re.search(r"add the line '([^']+)' to credentials.conf", str(caught.value)).group(1)
    database = CredentialDB()
    database._parse(line.replace("PASSWORD", urllib.parse.quote(SPECIAL, safe="")))
    assert resolve_account(poll_url, database).password == SPECIAL
