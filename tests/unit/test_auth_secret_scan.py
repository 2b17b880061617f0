"""Specification of the session-wide secret scan (tests/secret_scan.py) on a private directory."""

from __future__ import annotations

import secrets
import tempfile
import time
import urllib.parse
from pathlib import Path

from tests.secret_scan import find_leaks, register_secret

SECRET = "scan-test-s3cr#t/value"


def test_contents_names_and_percent_encoded_forms_are_found_and_by_design_files_skipped():
    register_secret(SECRET)
    register_secret("short")  # too short to search for: would match by chance
    with tempfile.TemporaryDirectory() as directory:  # outside basetemp: the session scan never sees it
        root = Path(directory)
        (root / "sr3" / "logs").mkdir(parents=True)
        (root / "sr3" / "logs" / "poll.log").write_text(f"login with {urllib.parse.quote(SECRET, safe='')}\n")
        (root / "clean.log").write_text("short and nothing else\n")
        (root / "credentials.conf").write_text(f"imaps://a:{SECRET}@h/\n")
        (root / "test.keyring.json").write_text(SECRET)
        (root / "entra-app.secret.pem").write_text(SECRET)  # a private key written on purpose, 0600
        (root / "passwd.d").mkdir()
        (root / "passwd.d" / "bob").write_text("bob:{PLAIN}dovecot-pass-123::::::\n")
        (root / "mail").mkdir()
        (root / "mail" / "dovecot-pass-123.eml").write_text("x")
        leaks = find_leaks(root)
    assert len(leaks) == 2
    assert any("poll.log: contains a secret (sca..." in leak for leak in leaks)
    assert any("dovecot-pass-123.eml: file name contains a secret" in leak for leak in leaks)


def test_a_leak_among_ten_thousand_secrets_is_found_quickly_even_inside_a_longer_word():
    tokens = ["at-" + secrets.token_urlsafe(24) for _ in range(10_000)]
    tokens += [secrets.token_urlsafe(12) for _ in range(10_000)]
    for token in tokens:
        register_secret(token)
    leaked = tokens[7_777]
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        noise = "".join(f"{i} INFO cycle {i}: 3 new message(s) to announce, listed in 0.01 s\n" for i in range(20_000))
        (root / "clean.log").write_text(noise)
        (root / "leaky.log").write_text(noise + f"Authorization: Bearer x{leaked}y\n" + noise)
        started = time.monotonic()
        leaks = find_leaks(root)  # every registered secret
        elapsed = time.monotonic() - started
    assert len(leaks) == 1 and "leaky.log: contains a secret (at-..." in leaks[0]
    assert elapsed < 5, f"scanning 2 MB for 20,000 secrets took {elapsed:.1f} s"


def test_every_secret_of_many_lengths_is_found_in_file_names_and_contents():
    tokens = [secrets.token_urlsafe(n) for n in range(6, 40)] + ["pass word:with/odd#chars%"]
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        for i, token in enumerate(tokens):
            (root / f"{i}.log").write_text(f"before{token}after")
            (root / f"{i}-{urllib.parse.quote(token, safe='')}.name").write_text("clean")
        leaks = find_leaks(root, tokens)
    assert len(leaks) == 2 * len(tokens)
