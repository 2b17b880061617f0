"""Specification of the session-wide secret scan (tests/secret_scan.py) on a private directory."""

from __future__ import annotations

import tempfile
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
        (root / "passwd.d").mkdir()
        (root / "passwd.d" / "bob").write_text("bob:{PLAIN}dovecot-pass-123::::::\n")
        (root / "mail").mkdir()
        (root / "mail" / "dovecot-pass-123.eml").write_text("x")
        leaks = find_leaks(root)
    assert len(leaks) == 2
    assert any("poll.log: contains a secret (sca..." in leak for leak in leaks)
    assert any("dovecot-pass-123.eml: file name contains a secret" in leak for leak in leaks)
