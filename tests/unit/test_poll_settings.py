"""Specification of the poll's options as PollSettings reads them (no server needed)."""

import types
from datetime import datetime, timedelta, timezone

import pytest

from mailingest.errors import ConfigError
from mailingest.settings import DEFAULT_ANNOUNCE_MAX, PollSettings


def settings(**options) -> PollSettings:
    options.setdefault("pollUrl", "imaps://alice@mail.example.com/")
    return PollSettings.from_options(types.SimpleNamespace(**options))


def test_defaults_poll_unseen_mail_of_the_inbox_with_a_bounded_cycle():
    s = settings()
    assert s.folders == ("INBOX",) and s.search == "UNSEEN" and s.since is None
    assert s.max_size == 0 and s.uidvalidity_change == "reannounce" and not s.idle
    assert s.announce_max == DEFAULT_ANNOUNCE_MAX == 10_000


def test_mail_announce_max_zero_means_no_limit_and_negatives_are_refused():
    assert settings(mailAnnounceMax=0).announce_max == 0
    assert settings(mailAnnounceMax="2000").announce_max == 2000
    with pytest.raises(ConfigError, match="mailAnnounceMax -1"):
        settings(mailAnnounceMax=-1)
    with pytest.raises(ConfigError, match="whole number"):
        settings(mailAnnounceMax="lots")


def test_the_url_path_names_the_folder_unless_mail_folder_is_given():
    assert settings(pollUrl="imaps://alice@mail.example.com/Reports").folders == ("Reports",)
    assert settings(mailFolder="INBOX,Archive/2024").folders == ("INBOX", "Archive/2024")


def test_mail_since_takes_an_age_or_a_date():
    now = datetime(2026, 11, 21, tzinfo=timezone.utc)
    assert settings(mailSince="30d").since.moment(now) == now - timedelta(days=30)
    assert settings(mailSince="2026-01-31").since.moment(now) == datetime(2026, 1, 31, tzinfo=timezone.utc)
    with pytest.raises(ConfigError, match="neither an age"):
        settings(mailSince="last tuesday-ish")


def test_pop3_has_one_folder_and_no_quarantine():
    with pytest.raises(ConfigError, match="POP3 has only one folder"):
        settings(pollUrl="pops://alice@mail.example.com/", mailFolder=["Archive"])
    with pytest.raises(ConfigError, match="mailQuarantineFolder needs IMAP"):
        settings(pollUrl="pops://alice@mail.example.com/", mailQuarantineFolder="Oversize")
    assert not settings(pollUrl="pops://alice@mail.example.com/", mailIdle=True).idle


def test_an_unknown_uidvalidity_policy_is_refused():
    with pytest.raises(ConfigError, match="use reannounce or skip"):
        settings(mailUidValidityChange="ignore")


def test_mail_reannounce_after_is_an_hour_for_imap_and_off_for_pop3_unless_set():
    assert settings().reannounce.after == 3600.0
    assert settings(pollUrl="pops://alice@mail.example.com/").reannounce is None
    assert settings(pollUrl="pops://alice@mail.example.com/", mailReannounceAfter="30m").reannounce.after == 1800.0
    assert settings(mailReannounceAfter="10").reannounce.after == 10.0
    assert settings(mailReannounceAfter="0").reannounce is None
    assert settings(mailReannounceAfter="off").reannounce is None
    with pytest.raises(ConfigError, match="mailReannounceAfter 'soon'"):
        settings(mailReannounceAfter="soon")
