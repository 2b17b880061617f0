"""Specification of how mailingest reads sr3 options: one value per option, the last line wins.

sr3 3.3.1 stores an option it does not know while reading the files (every mail* option, and
scheduled_interval) as a string, and as a list of strings when it appears twice (default.conf
and the config).  These tests feed the readers exactly those shapes.
"""

import logging
import types
import warnings

import pytest
import sarracenia.config
import sarracenia.flowcb

from mailingest import options as opt
from mailingest import settings
from mailingest.errors import ConfigError
from mailingest.options import Option


def o(**values) -> types.SimpleNamespace:
    return types.SimpleNamespace(**values)


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(opt, "_warned_repeats", set())


@pytest.mark.parametrize("raw, seconds", [("30", 30.0), ("1.5", 1.5), ("30s", 30.0), ("5m", 300.0),
                                          ("1h", 3600.0), ("2d", 172800.0), ("1w", 604800.0), (7, 7.0),
                                          (2.5, 2.5), (["30", "5"], 5.0), (None, 20.0)])
def test_a_duration_is_seconds_with_an_optional_unit_and_the_last_line_wins(raw, seconds):
    assert opt.duration(o(mailIdleMax=raw), "mailIdleMax", 20.0) == seconds


@pytest.mark.parametrize("raw", ["soon", "5 minutes", "-3", "1y2"])
def test_a_duration_that_is_not_one_names_the_option_and_the_forms(raw):
    with pytest.raises(ConfigError, match=r"mailIdleMax .*30s, 5m, 1h"):
        opt.duration(o(mailIdleMax=raw), "mailIdleMax", 20.0)


@pytest.mark.parametrize("raw, number", [("2000", 2000), ("25m", 25_000_000), ("100mb", 100 * 2**20),
                                         ("100Mi", 100 * 2**20), (12, 12), (["10", "3"], 3), (None, 10_000)])
def test_a_count_is_a_whole_number_with_sr3_suffixes_and_the_last_line_wins(raw, number):
    assert opt.count(o(mailAnnounceMax=raw), "mailAnnounceMax", 10_000) == number


@pytest.mark.parametrize("raw", ["lots", "-1", 1.5, True, ["5", "many"]])
def test_a_count_that_is_not_a_whole_number_of_at_least_the_minimum_is_refused(raw):
    with pytest.raises(ConfigError, match="mailAnnounceMax .*whole number of 0 or more"):
        opt.count(o(mailAnnounceMax=raw), "mailAnnounceMax", 10_000)


@pytest.mark.parametrize("raw, value", [("on", True), ("off", False), ("yes", True), ("False", False),
                                        (True, True), (["on", "off"], False), (None, True)])
def test_a_flag_is_on_or_off_and_the_last_line_wins(raw, value):
    assert opt.flag(o(mailDecodeHtml=raw), "mailDecodeHtml", True) is value


def test_a_flag_that_is_not_on_or_off_is_refused():
    with pytest.raises(ConfigError, match="mailIdle 'maybe': use on or off"):
        opt.flag(o(mailIdle="maybe"), "mailIdle")


def test_a_str_option_keeps_its_last_line_and_falls_back_to_the_default():
    assert opt.text(o(mailSearch=["ALL", "UNSEEN FROM a@b"]), "mailSearch", "UNSEEN") == "UNSEEN FROM a@b"
    assert opt.text(o(mailSearch="  ALL "), "mailSearch", "UNSEEN") == "ALL"
    assert opt.text(o(), "mailSearch", "UNSEEN") == "UNSEEN"
    assert opt.text(o(mailSearch=""), "mailSearch", "UNSEEN") == "UNSEEN"


def test_a_list_option_takes_the_comma_separated_items_of_its_last_line():
    assert opt.values(o(mailFolder="INBOX, Reports/2026"), "mailFolder") == ["INBOX", "Reports/2026"]
    assert opt.values(o(mailFolder=["Site", "Own,Other"]), "mailFolder") == ["Own", "Other"]
    assert opt.values(o(mailFolder=[]), "mailFolder") == []
    assert opt.values(o(), "mailFolder") == []


def test_a_repeated_option_is_reported_once_with_every_value_and_the_one_used(caplog):
    caplog.set_level(logging.WARNING, logger="mailingest.options")
    options = o(mailFolder=["Site", "Own"])
    assert opt.values(options, "mailFolder") == ["Own"]
    assert opt.values(o(mailFolder=["Site", "Own"]), "mailFolder") == ["Own"]
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [("mailFolder is set 2 times (Site | Own): the last one is used, Own; "
                         "to give several values, write them on one line separated by commas")]


def test_the_value_used_is_written_back_onto_the_options_read():
    options = o(mailIdleMax=["40", "7"], mailFolder=["Site", "Own"], mailAnnounceMax="2k")
    opt.duration(options, "mailIdleMax", 20.0)
    opt.values(options, "mailFolder")
    opt.count(options, "mailAnnounceMax", 10_000)
    assert (options.mailIdleMax, options.mailFolder, options.mailAnnounceMax) == (7.0, ["Own"], 2000)


def test_a_list_option_read_again_gives_the_same_items_and_no_warning(caplog):
    caplog.set_level(logging.WARNING, logger="mailingest.options")
    for raw in ("INBOX,Archive", ["INBOX,Archive"], ["Site", "INBOX, Archive"]):
        options = o(mailFolder=raw)
        first = opt.values(options, "mailFolder")
        assert opt.values(options, "mailFolder") == first == ["INBOX", "Archive"]
        assert opt.read(options, Option("mailFolder", "list", [])) == first
    assert [r.getMessage() for r in caplog.records] == [
        "mailFolder is set 2 times (Site | INBOX, Archive): the last one is used, INBOX, Archive; "
        "to give several values, write them on one line separated by commas"]


def raw_config(tmp_path, **lines_by_file) -> sarracenia.config.Config:
    """A Config whose files were parsed the way sr3 parses default.conf and then the config."""
    config = sarracenia.config.no_file_config()
    for name, text in lines_by_file.items():
        path = tmp_path / f"{name}.conf"
        path.write_text(text)
        with warnings.catch_warnings():  # sr3 3.3.1's parse_file never closes the file (config/__init__.py:1545)
            warnings.simplefilter("ignore", ResourceWarning)
            config.parse_file(str(path))
    return config


def test_declare_hands_sr3_one_value_so_a_repeated_str_does_not_stay_a_list(tmp_path):
    name = "mailSpecRepeatedText"  # declared nowhere else, so sr3 does not know it while parsing
    config = raw_config(tmp_path, default=f"{name} ALL\n", poll=f"{name} UNSEEN\n")
    assert getattr(config, name) == ["ALL", "UNSEEN"]  # what sr3 3.3.1 makes of it
    opt.declare(config, Option(name, "str", "UNSEEN"))
    assert getattr(config, name) == "UNSEEN"


def test_sr3s_post_load_check_shows_the_values_the_callback_uses(tmp_path):
    """sr3 show prints the flow's options after check_undeclared_options; a callback only sees a copy."""
    config = raw_config(tmp_path, default="scheduled_interval 30\nmailIdleMax 40\nmailFolder Site\n"
                                          "mailAnnounceMax 50\n",
                        poll="scheduled_interval 5\nmailIdleMax 7\nmailFolder Own,Other\nmailAnnounceMax 9\n")
    callback_copy = sarracenia.config.Config.__deepcopy__(config, {})
    settings.declare(callback_copy, Option("scheduled_interval", "duration", 0.0), Option("mailIdleMax", "duration", 20.0),
                Option("mailFolder", "list", []), Option("mailAnnounceMax", "count", 10_000))
    config.check_undeclared_options()
    assert (config.scheduled_interval, config.mailIdleMax, config.mailFolder, config.mailAnnounceMax) == \
        (5.0, 7.0, ["Own", "Other"], 9)


def test_the_poll_loads_with_options_repeated_in_default_conf_and_the_config(tmp_path):
    config = raw_config(tmp_path, default="scheduled_interval 30\nmailIdleMax 40\nmailAnnounceMax 50\n"
                                          "mailFolder Site\nmailIdle off\n",
                        poll="scheduled_interval 5\nmailIdleMax 7\nmailAnnounceMax 9\nmailFolder Own\nmailIdle on\n")
    config.pollUrl = "imaps://alice@mail.example.com:55791/"
    config.cfg_run_dir = str(tmp_path)
    poll = sarracenia.flowcb.load_library("mailingest.poll", config)
    settings = poll.settings
    assert (settings.idle, settings.idle_max, settings.announce_max, settings.folders) == (True, 7.0, 9, ("Own",))
