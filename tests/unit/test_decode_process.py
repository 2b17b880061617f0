"""Specification of the decode process (``mailDecodeProcess``): a worker decodes in a child process
of its own, a pass or two behind, with the same files, notices and guarantees as in its own process.

The children are real processes (``python -m mailingest.decodeprocess``), killed for real.
"""

import json
import logging
import os
import pickle
import re
import signal
import subprocess
import sys
import time

import pytest

from mailingest.decodeprocess import DecodeProcess, DecodeProcessError, Job
from mailingest.errors import ConfigError
from mailingest.mime.layout import DecodeSettings
from mailingest.settings import decode_process_wanted
from tests.unit.test_decode_flowcb import downloaded, load, options, sample, worklist


@pytest.fixture
def base(tmp_path):
    return tmp_path / "mail"


def worker(base, tmp_path, **settings):
    o = options(base, mailDecodeProcess="on", **settings)
    o.cfg_run_dir = str(tmp_path / "cache")
    cb = load(o)
    cb.on_start()
    assert cb.process is not None and cb.process.pid != os.getpid()
    return o, cb


def gone(pid: int, within: float = 20.0) -> bool:
    """True once *pid* has exited (reaped or a zombie), within *within* seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open("/proc/%d/stat" % pid) as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.01)
    return False


def two_passes(cb, *msgs):
    """A pass that hands *msgs* over, and the next, empty one that announces them."""
    first, second = worklist(*msgs), worklist()
    cb.after_work(first)
    cb.after_work(second)
    return first, second


def comparable(notice):
    """A notice's fields that do not depend on when it was built."""
    return {k: v for k, v in notice.items() if k not in ("pubTime", "mtime", "atime", "_deleteOnPost")}


RAW = [sample(("a%d.csv" % n, "b.csv")) for n in range(3)]  # once: each has a random boundary


def messages(o, base, count=3):
    return [downloaded(o, base, "INBOX/1700000000.%d.eml" % (100 + n), RAW[n]) for n in range(count)]


def test_a_pass_is_handed_over_and_announced_in_the_next_pass_as_in_the_workers_own_process(base, tmp_path):
    o, cb = worker(base, tmp_path)
    try:
        first, second = two_passes(cb, *messages(o, base))
        assert first.ok == []  # handed over: nothing of it is posted in that pass
    finally:
        cb.on_stop()
    inline_base = tmp_path / "inline"
    o_inline = options(inline_base)
    reference = worklist(*messages(o_inline, inline_base))
    load(o_inline).after_work(reference)
    # the same notices, field for field
    assert sorted(json.dumps(comparable(m), sort_keys=True, default=str).replace(str(base), "BASE")
                  for m in second.ok) == \
        sorted(json.dumps(comparable(m), sort_keys=True, default=str).replace(str(inline_base), "BASE")
               for m in reference.ok)
    assert [m["relPath"] for m in second.ok] == [m["relPath"] for m in reference.ok]  # in the same order
    for notice in second.ok:
        assert os.path.isfile(os.path.join(str(base), notice["relPath"]))


def test_the_journal_forgets_a_pass_only_after_the_pass_that_posts_its_announcements(base, tmp_path):
    o, cb = worker(base, tmp_path)
    journal = os.path.join(o.cfg_run_dir, "mailingest-pending-decodes")
    try:
        first = worklist()
        first.incoming = messages(o, base, 2)
        cb.after_accept(first)
        first.ok, first.incoming = first.incoming, []
        cb.after_work(first)
        cb.after_post(first)
        assert os.listdir(journal), "forgotten before its announcements were posted"
        second = worklist()
        cb.after_work(second)
        assert len(second.ok) == 2 * 5
        cb.after_post(second)
        assert not [n for n in os.listdir(journal) if n.endswith(".json")]
    finally:
        cb.on_stop()


def test_a_killed_decode_process_costs_nothing_the_worker_decodes_and_starts_another(base, tmp_path, caplog):
    o, cb = worker(base, tmp_path)
    try:
        cb.after_work(worklist(*messages(o, base, 2)))
        old = cb.process.pid
        os.kill(old, signal.SIGKILL)
        assert gone(old)
        second = worklist()
        with caplog.at_level(logging.INFO):
            cb.after_work(second)
        assert len(second.ok) == 2 * 5  # decoded by the worker itself
        assert all(m["mailDecode"]["status"] == "decoded" for m in second.ok if m["relPath"].endswith(".eml"))
        [line] = [r.getMessage() for r in caplog.records if "decode process" in r.getMessage()
                  and r.levelno == logging.ERROR]
        assert "pid %d" % old in line and "killed by signal 9" in line and "new decode process" in line
        assert cb.process is not None and cb.process.pid != old
        assert cb.metricsReport()["decodeProcessDied"] == 1
        third, fourth = two_passes(cb, *messages(o, base, 1))
        assert third.ok == [] and len(fourth.ok) == 5
    finally:
        cb.on_stop()


def test_an_answer_that_does_not_match_the_pass_is_taken_for_a_dead_process(base, tmp_path, caplog):
    o, cb = worker(base, tmp_path)
    try:
        cb.after_work(worklist(*messages(o, base, 2)))
        old, real_collect = cb.process, cb.process.collect
        old.collect = lambda: real_collect()[:1]
        second = worklist()
        with caplog.at_level(logging.ERROR):
            cb.after_work(second)
        assert len(second.ok) == 2 * 5  # both decoded by the worker itself
        assert any("answered 1 outcomes for 2 messages" in r.getMessage() for r in caplog.records)
        assert cb.process is not old and cb.metricsReport()["decodeProcessDied"] == 1
    finally:
        cb.on_stop()


def test_signals_to_the_workers_group_or_terminal_leave_the_decode_process_to_its_worker(base, tmp_path):
    o, cb = worker(base, tmp_path)
    try:
        pid = cb.process.pid
        assert os.getsid(pid) != os.getsid(0) and os.getpgid(pid) != os.getpgid(0)
        two_passes(cb, *messages(o, base, 1))  # the process has answered: it is past its start-up
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGINT)
        _third, fourth = two_passes(cb, *messages(o, base, 2)[1:])
        assert len(fourth.ok) == 5 and cb.process.pid == pid
    finally:
        cb.on_stop()
    assert gone(pid, within=0.5), "on_stop leaves no decode process behind"


def test_a_message_the_process_cannot_decode_gets_one_clear_line_and_is_posted_as_not_decoded(base, tmp_path, caplog):
    o, cb = worker(base, tmp_path, mailDecodeMaxBytes="1kb")
    try:
        big = downloaded(o, base, "INBOX/1700000000.9.eml", sample() + b"x" * 4096)
        cb.after_work(worklist(big))
        second = worklist()
        with caplog.at_level(logging.INFO):
            cb.after_work(second)
    finally:
        cb.on_stop()
    assert second.ok == [big] and big["mailDecode"]["status"] == "not-decoded"
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "INBOX/1700000000.9.eml" in line and "not decoded" in line


def test_the_decode_processs_log_records_are_logged_by_the_worker_under_their_own_name(base, tmp_path, caplog):
    from mailingest.decodeprocess import Outcome, _Capture

    capture = _Capture()
    child_logger = logging.getLogger("mailingest.mime.smime")
    child_logger.addHandler(capture)
    try:
        child_logger.warning("openssl said %s", "no")
    finally:
        child_logger.removeHandler(capture)
    o = options(base, mailDecodeProcess="on")
    cb = load(o)
    [msg] = messages(o, base, 1)
    with caplog.at_level(logging.INFO):
        cb._report(msg, Outcome(path="x", error="cut short", records=capture.take()))
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records][0] == \
        ("mailingest.mime.smime", logging.WARNING, "openssl said no")
    assert msg["mailDecode"] == {"status": "not-decoded", "reason": "cut short"}


def test_a_decode_process_decodes_a_batch_and_reports_the_parsers_defects(tmp_path):
    process = DecodeProcess(DecodeSettings(fsync=False), sync=False, log_level=logging.DEBUG)
    process.start()
    try:
        eml = tmp_path / "m.eml"
        eml.write_bytes(b"From: a@b\r\nSubject: x\r\nContent-Type: multipart/mixed\r\n\r\nno boundary\r\n")
        process.submit([Job(str(eml)), Job(str(tmp_path / "missing.eml"))])
        decoded, missing = process.collect()
    finally:
        process.stop()
    assert decoded.result is not None and decoded.result.defects and decoded.error is None
    assert missing.result is None and "missing.eml" in missing.error


def test_a_worker_killed_takes_its_decode_process_with_it(tmp_path):
    script = ("import sys, time; sys.path[:0] = %r\n"
              "from mailingest.decodeprocess import DecodeProcess\n"
              "from mailingest.mime.layout import DecodeSettings\n"
              "p = DecodeProcess(DecodeSettings()); p.start(); print(p.pid, flush=True); time.sleep(60)\n"
              % [p for p in sys.path if p])
    worker_process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        child = int(worker_process.stdout.readline())
        worker_process.kill()
        worker_process.wait()
        assert gone(child), "the decode process outlived its killed worker"
    finally:
        worker_process.kill()
        worker_process.wait()
        worker_process.stdout.close()


def test_smime_keys_reach_the_decode_process(base, tmp_path):
    from tests import smime_pki

    pki = smime_pki.make_pki()
    key = tmp_path / "key.pem"
    key.write_bytes(pki.recipient.pem())
    o, cb = worker(base, tmp_path, mailSmimeKeyFile=str(key))
    try:
        sealed = downloaded(o, base, "INBOX/1.1.eml", smime_pki.encrypted(pki.recipient))
        two_passes(cb, sealed)
    finally:
        cb.on_stop()
    assert [v["verdict"] for v in sealed["mailDecode"]["smime"]] == ["decrypted"]


@pytest.mark.parametrize("value, instances, cpus, wanted", [
    ("auto", 1, 2, True), ("auto", 2, 2, False), ("auto", 4, 2, False), ("auto", 1, 1, False),
    ("on", 8, 2, True), ("off", 1, 8, False), (None, 1, 2, True), (" ON ", 1, 1, True)])
def test_auto_gives_each_worker_a_decode_process_while_a_core_is_free(value, instances, cpus, wanted):
    assert decode_process_wanted(value, instances, cpus) is wanted


def test_an_unknown_mail_decode_process_value_fails_at_start(base):
    with pytest.raises(ConfigError, match="mailDecodeProcess sometimes: use auto, on, off"):
        load(options(base, mailDecodeProcess="sometimes"))


def test_without_on_start_a_worker_decodes_in_its_own_process(base):
    o = options(base, mailDecodeProcess="on")
    cb = load(o)
    wl = worklist(*messages(o, base, 1))
    cb.after_work(wl)
    assert cb.process is None and len(wl.ok) == 5


def test_a_stray_module_in_the_workers_directory_does_not_shadow_the_decoders_imports(tmp_path, monkeypatch):
    (tmp_path / "email.py").write_text("raise ImportError('the stray email.py was imported')\n")
    monkeypatch.chdir(tmp_path)
    process = DecodeProcess(DecodeSettings(fsync=False), sync=False)
    process.start()
    try:
        eml = tmp_path / "m.eml"
        eml.write_bytes(sample())
        process.submit([Job(str(eml))])
        [outcome] = process.collect()
    finally:
        process.stop()
    assert outcome.result is not None and outcome.error is None and outcome.unexpected is None


def accepted_pass(cb, msgs):
    """A pass as sr3 runs it: after_accept (journaled), then after_work with *msgs* downloaded."""
    wl = worklist()
    wl.incoming = list(msgs)
    cb.after_accept(wl)
    wl.ok, wl.incoming = wl.incoming, []
    cb.after_work(wl)
    return wl


def pending_batches(o):
    journal = os.path.join(o.cfg_run_dir, "mailingest-pending-decodes")
    return sorted(n for n in os.listdir(journal) if n.endswith(".json"))


def test_a_pass_the_process_is_still_decoding_does_not_hold_up_the_worker_it_is_announced_a_pass_later(base, tmp_path):
    o, cb = worker(base, tmp_path)
    batch = messages(o, base, 3)
    try:
        pid = cb.process.pid
        os.kill(pid, signal.SIGSTOP)  # the process is busy (stopped) with whatever it is given
        first = accepted_pass(cb, batch[:1])
        cb.after_post(first)
        second = accepted_pass(cb, batch[1:2])  # returns at once: the first pass is not decoded yet
        cb.after_post(second)
        assert first.ok == [] and second.ok == []
        assert len(pending_batches(o)) == 2, "a pass is forgotten only once its announcements are posted"
        os.kill(pid, signal.SIGCONT)
        third = accepted_pass(cb, batch[2:])  # two passes in the process: waits for the oldest
        assert [m["relPath"] for m in third.ok if m["relPath"].endswith(".eml")][:1] == [batch[0]["relPath"]]
        cb.after_post(third)
        last = worklist()
        cb.after_work(last)  # a pass without new mail announces everything still in the process
        cb.after_post(last)
        announced = [m for wl in (third, last) for m in wl.ok]
        emls = [m["relPath"] for m in announced if m["relPath"].endswith(".eml")]
        assert emls == [m["relPath"] for m in batch]  # each once, in the order handed over
        assert len(announced) == 3 * 5
        assert pending_batches(o) == []
    finally:
        os.kill(pid, signal.SIGCONT)
        cb.on_stop()


def test_a_process_that_dies_with_two_passes_in_it_costs_one_line_and_the_worker_decodes_both(base, tmp_path, caplog):
    o, cb = worker(base, tmp_path)
    batch = messages(o, base, 3)
    try:
        pid = cb.process.pid
        os.kill(pid, signal.SIGSTOP)
        cb.after_work(worklist(*batch[:2]))
        cb.after_work(worklist(batch[2]))
        assert cb.process.in_flight == 2
        os.kill(pid, signal.SIGKILL)
        assert gone(pid)
        last = worklist()
        with caplog.at_level(logging.ERROR):
            cb.after_work(last)
        assert [m["relPath"] for m in last.ok if m["relPath"].endswith(".eml")] == [m["relPath"] for m in batch]
        assert len(last.ok) == 3 * 5 and all(m["mailDecode"]["status"] == "decoded" for m in batch)
        [line] = [r.getMessage() for r in caplog.records if "decode process" in r.getMessage()]
        assert "pid %d" % pid in line and "its 3 message(s) are decoded here" in line
        assert cb.metricsReport()["decodeProcessDied"] == 1 and cb.process.pid != pid
    finally:
        cb.on_stop()


@pytest.mark.parametrize("answer, ended, said", [
    ({"not": "outcomes"}, None, "answered a dict, not a list of outcomes"),
    (None, pickle.UnpicklingError("invalid load key"), "answered something unreadable (UnpicklingError"),
    (None, EOFError("Ran out of input"), "died before answering"),
])
def test_an_answer_that_is_no_list_of_outcomes_or_no_answer_at_all_is_a_dead_process(answer, ended, said):
    process = DecodeProcess(DecodeSettings())
    process._in_flight = 1
    process._answers.put((answer, ended))
    with pytest.raises(DecodeProcessError, match=re.escape(said)):
        process.collect()
    process._in_flight = 1
    with pytest.raises(DecodeProcessError, match=re.escape(said)):  # and stays so: nothing more is read
        process.collect()
