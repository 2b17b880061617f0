"""The session's secret scan (tests/secret_scan.py) finds every registered secret, whatever the
number and lengths of the secrets, as written or percent-encoded, in names and contents."""

from __future__ import annotations

from tests.secret_scan import SecretIndex, find_leaks


def test_a_secret_is_found_inside_longer_runs_and_among_secrets_sharing_a_prefix():
    index = SecretIndex(["abcdefgh12345", "abcdefghXY", "zzzzzzzzQQ"])
    assert index.first_in(b"..xx abcdefghXY yy") == "abcdefghXY"
    assert index.first_in(b"Zabcdefgh12345Z") == "abcdefgh12345"
    assert index.first_in(b"zzzzzzzzzQQ") == "zzzzzzzzQQ"  # the match starts one byte into the run
    assert index.first_in(b"abcdefgh1234 abcdefghX") is None


def test_a_percent_encoded_secret_is_found_too():
    assert SecretIndex(["pa ss/word+1"]).first_in(b"url=pa%20ss%2Fword%2B1&x") == "pa ss/word+1"


def test_file_names_and_contents_are_scanned_and_mail_content_only_by_name(tmp_path):
    secret = "s3cr3t-T0ken-value"
    (tmp_path / "log.txt").write_text(f"logged {secret} here")
    (tmp_path / f"{secret}.json").write_text("{}")
    (tmp_path / "x.eml").write_text(f"Subject: {secret}")  # test mail itself: by name only
    leaks = find_leaks(tmp_path, [secret])
    assert sorted(leak.split(":")[0].rsplit("/", 1)[-1] for leak in leaks) == ["log.txt", f"{secret}.json"]
