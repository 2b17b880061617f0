"""Specification of mailingest.sr3log: sr3's per-notice lines for decoded files are left out at info."""

import logging
import subprocess
import sys

import pytest

from mailingest.sr3log import SR3_LOG, DecodedFilesQuiet, ImapclientQuiet

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


def test_importing_the_poll_and_the_download_leaves_imapclients_log_level_alone():
    probe = ("import logging, mailingest.poll, mailingest.download, mailingest.mailbox.imap; "
             "print(logging.getLogger('imapclient').level)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == str(logging.NOTSET)


@pytest.fixture
def imapclient_quiet(caplog):
    caplog.set_level(logging.DEBUG)
    quiet = ImapclientQuiet.install()
    yield quiet
    quiet.remove()


def test_imapclients_info_and_debug_lines_stay_out_of_a_flows_log(imapclient_quiet, caplog):
    logging.getLogger("imapclient.imapclient").info("Connection closed")
    logging.getLogger("imapclient.imaplib").debug("> b'FETCH ...'")
    logging.getLogger("imapclient.imapclient").warning("server said something odd")
    assert [r.getMessage() for r in caplog.records] == ["server said something odd"]


def test_imapclients_lines_pass_at_the_level_an_operator_set_on_its_logger(imapclient_quiet, caplog):
    imapclient = logging.getLogger("imapclient")
    imapclient.setLevel(logging.INFO)
    try:
        logging.getLogger("imapclient.imapclient").info("Connection closed")
        logging.getLogger("imapclient.imaplib").debug("> b'FETCH ...'")
    finally:
        imapclient.setLevel(logging.NOTSET)
    assert [r.getMessage() for r in caplog.records] == ["Connection closed"]


def test_once_removed_the_imapclient_filter_is_gone_from_every_imapclient_logger():
    quiet = ImapclientQuiet.install()
    quiet.remove()
    assert not any(quiet in logging.getLogger(name).filters
                   for name in ("imapclient", "imapclient.imapclient", "imapclient.imaplib"))
