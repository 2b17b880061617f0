"""Specification of mailingest.sr3log: sr3's per-notice lines for decoded files are left out at info."""

import logging

import pytest

from mailingest.sr3log import SR3_LOG, DecodedFilesQuiet

PART = {"new_dir": "/data/mail/INBOX", "new_file": "data file.csv", "relPath": "INBOX/1.parts/data file.csv"}
SR3_LINES = {
    "downloaded": "downloaded ok: /data/mail/INBOX/data file.csv size: 4Bytes (4) ",
    "posted": "posted to amqp://u@h/,xs_mail_parts,v03.INBOX a file with baseUrl: file:/data/mail "
              "relPath: INBOX/1.parts/data file.csv size: 4 id: Kwn5TNh ",
}
EML_LINE = "downloaded ok: /data/mail/INBOX/1.eml size: 1.3KiB (1309) rate: 16.1KiB/s"


@pytest.fixture
def quiet(caplog):
    caplog.set_level(logging.INFO)
    quiet = DecodedFilesQuiet.install()
    quiet.expect([PART])
    yield quiet
    quiet.remove()


@pytest.mark.parametrize("line", sorted(SR3_LINES.values()))
def test_sr3s_info_lines_for_a_decoded_file_are_left_out(quiet, caplog, line):
    logging.getLogger(SR3_LOG).info(line)
    assert caplog.records == []


def test_the_eml_line_and_other_loggers_pass(quiet, caplog):
    logging.getLogger(SR3_LOG).info(EML_LINE)
    logging.getLogger("mailingest.decode").info(SR3_LINES["downloaded"])
    assert [r.getMessage() for r in caplog.records] == [EML_LINE, SR3_LINES["downloaded"]]


def test_warnings_and_debug_level_pass(quiet, caplog):
    logging.getLogger(SR3_LOG).warning(SR3_LINES["posted"])
    caplog.set_level(logging.DEBUG)
    logging.getLogger(SR3_LOG).info(SR3_LINES["downloaded"])
    assert len(caplog.records) == 2


def test_the_next_batch_replaces_the_files_expected(quiet, caplog):
    quiet.expect([])
    logging.getLogger(SR3_LOG).info(SR3_LINES["downloaded"])
    assert len(caplog.records) == 1


def test_removed_filter_lets_everything_pass(quiet, caplog):
    quiet.remove()
    logging.getLogger(SR3_LOG).info(SR3_LINES["downloaded"])
    assert len(caplog.records) == 1
