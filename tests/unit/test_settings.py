"""Specification of mailingest.settings: every option read in one place, each default stated once."""

import types

import pytest

from mailingest import options as opt
from mailingest.mailbox.connection import ConnectionSettings
from mailingest.mime.layout import DecodeSettings
from mailingest.settings import (
    ALL_OPTIONS,
    DEFAULT_INTERVAL,
    DecodeFlowSettings,
    DownloadSettings,
    PollSettings,
    connection_settings,
    default_of,
)


def no_options(**values) -> types.SimpleNamespace:
    return types.SimpleNamespace(**values)


@pytest.mark.parametrize("name", sorted(ALL_OPTIONS))
def test_an_option_not_set_reads_as_its_one_declared_default(name):
    spec = ALL_OPTIONS[name]
    assert opt.read(no_options(), spec) == (list(spec.default) if spec.kind == "list" else spec.default)


def test_the_decoders_settings_without_options_are_the_decoders_own_defaults():
    flow = DecodeFlowSettings.from_options(no_options())
    assert flow.decode == DecodeSettings()
    assert {"body-text", "part", "metadata"} <= flow.announce


def test_the_connection_settings_without_options_are_the_connection_defaults():
    settings = connection_settings(no_options())
    default = ConnectionSettings(ssl_context=settings.ssl_context)
    assert (settings.timeout, settings.tls_rigour, settings.ca_file, settings.allow_plaintext, settings.oauth2) == \
        (default.timeout, default.tls_rigour, default.ca_file, default.allow_plaintext, default.oauth2)


def test_sr3s_zero_for_an_unset_timeout_interval_or_idle_max_means_the_default():
    assert connection_settings(no_options(timeout=0)).timeout == default_of(ConnectionSettings, "timeout")
    poll = PollSettings.from_options(no_options(pollUrl="imaps://alice@mail.example.com/", scheduled_interval=0,
                                                mailIdleMax=0))
    assert poll.interval == DEFAULT_INTERVAL and poll.idle_max == ALL_OPTIONS["mailIdleMax"].default


def test_the_download_marks_a_message_seen_unless_told_otherwise():
    settings = DownloadSettings.from_options(no_options())
    assert str(settings.after_download) == "seen"


def test_the_values_used_are_written_back_for_sr3_show():
    options = no_options(pollUrl="imaps://alice@mail.example.com/", mailIdleMax=["40", "7"])
    PollSettings.from_options(options)
    assert options.mailIdleMax == 7.0 and options.mailSearch == "UNSEEN"
