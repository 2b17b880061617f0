"""Specification of the pending-decode journal: a decode survives the death of its worker.

sr3 acknowledges a notice before ``after_work``; ``Decode.after_accept`` records the pass's .eml
notices first (fsynced), ``after_post`` forgets them, and a live worker takes over (``on_start``,
``on_housekeeping``) what a dead one left, finishing the decode in its next ``after_work``.
Dead workers are real: a child process that has exited.
"""

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from mailingest.atomic import _host_tag, process_start
from mailingest.mime.journal import DecodeJournal, Owner
from tests.unit.test_decode_flowcb import IMAP_MAIL, downloaded, load, options, sample, worklist

REL = "host/user/INBOX/1700000000.101.eml"


@pytest.fixture
def base(tmp_path):
    return tmp_path / "mail"


@pytest.fixture
def o(base, tmp_path):
    o = options(base)
    o.cfg_run_dir = str(tmp_path / "cache")
    return o


def journal_dir(o):
    return os.path.join(o.cfg_run_dir, "mailingest-pending-decodes")


def batches(o):
    try:
        return sorted(n for n in os.listdir(journal_dir(o)) if n.endswith(".json"))
    except FileNotFoundError:
        return []


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@contextlib.contextmanager
def another_process() -> Iterator[int]:
    """The pid of a live process of this host (a worker, or a stranger that reused a pid), killed
    when the block ends."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield process.pid
    finally:
        process.kill()
        process.wait()


def first_pass(o):
    """A worker starting with options *o*: its callback and the worklist of its first after_work."""
    cb = load(o)
    cb.on_start()
    wl = worklist()
    cb.after_work(wl)
    return cb, wl


def started_ms(pid: int) -> int:
    started = process_start(pid)
    assert started is not None
    return round(started * 1000)


def proc_stat_ticks(pid: int) -> int:
    """The start time in the unit mailingest 0.1 wrote in batch names: /proc/<pid>/stat field 22."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[19])
    except OSError:
        pytest.skip("no /proc on this system: batches of mailingest 0.1 were never written here")


def leave_batch(o, owner: Owner, *entries) -> str:
    """A batch file as the worker ``owner`` would have left it."""
    os.makedirs(journal_dir(o), exist_ok=True)
    path = os.path.join(journal_dir(o), "%s-%d-%s-1.json" % (owner.host, owner.pid, owner.start_token))
    with open(path, "w") as handle:
        json.dump({"entries": list(entries)}, handle)
    return path


def entry(base, rel=REL, mail=IMAP_MAIL):
    return {"path": str(base / rel), "mail": dict(mail)}


def names(wl):
    return sorted(m["relPath"] for m in wl.ok)


def tree(directory):
    return {os.path.relpath(os.path.join(d, f), directory): os.stat(os.path.join(d, f)).st_ino
            for d, _dirs, files in os.walk(directory) for f in files}


def test_the_eml_notices_of_a_pass_are_recorded_before_the_download_and_forgotten_after_the_post(o, base):
    eml = downloaded(o, base, REL, sample())
    other = downloaded(o, base, "notes.txt", b"not mail")
    cb = load(o)
    wl = worklist()
    wl.incoming = [eml, other]
    cb.after_accept(wl)
    [name] = batches(o)
    with open(os.path.join(journal_dir(o), name)) as handle:
        assert json.load(handle)["entries"] == [{"path": str(base / REL), "mail": IMAP_MAIL}]
    assert name.startswith("%s-%d-" % (_host_tag(), os.getpid()))
    wl.ok, wl.incoming = wl.incoming, []
    cb.after_work(wl)
    assert batches(o) == [name], "kept until the announcements are posted"
    cb.after_post(wl)
    assert batches(o) == []


def test_a_dead_workers_pending_decode_is_finished_and_announced_by_the_next_worker(o, base):
    downloaded(o, base, REL, sample())
    leave_batch(o, Owner(_host_tag(), dead_pid(), 1), entry(base))
    cb, wl = first_pass(o)
    parts = "host/user/INBOX/1700000000.101.parts/"
    assert names(wl) == [REL, parts + "body.txt", parts + "metadata.json", parts + "obs.csv"]
    eml_notice = wl.ok[0]
    assert eml_notice["mailDecode"]["status"] == "decoded"
    assert eml_notice["mail"]["uid"] == 101 and eml_notice["mail"]["size"] == eml_notice["size"]
    assert all(m["mailParent"]["mail"]["uid"] == 101 for m in wl.ok[1:])
    assert len(batches(o)) == 1, "the taken-over batch is this worker's until posted"
    cb.after_post(wl)
    assert batches(o) == []
    assert cb.metrics["recovered"] == 1 and cb.metrics["decoded"] == 1


def test_a_dead_workers_batch_is_also_taken_over_at_housekeeping(o, base):
    downloaded(o, base, REL, sample())
    cb = load(o)
    cb.on_start()
    leave_batch(o, Owner(_host_tag(), dead_pid(), 1), entry(base))
    cb.on_housekeeping()
    wl = worklist()
    cb.after_work(wl)
    assert wl.ok[0]["mailDecode"]["status"] == "decoded"


def test_a_live_workers_pending_decode_is_never_taken(o, base):
    downloaded(o, base, REL, sample())
    with another_process() as worker:
        path = leave_batch(o, Owner(_host_tag(), worker, started_ms(worker)), entry(base))
        cb, wl = first_pass(o)
        assert wl.ok == [] and os.path.exists(path)
        assert not (base / "host/user/INBOX/1700000000.101.parts").exists()
    cb.on_housekeeping()
    cb.after_work(wl)
    assert wl.ok[0]["mailDecode"]["status"] == "decoded", "taken over once the worker is dead"


def test_a_pid_reused_by_another_process_does_not_keep_a_dead_workers_batch(o, base):
    downloaded(o, base, REL, sample())
    with another_process() as stranger:
        leave_batch(o, Owner(_host_tag(), stranger, started_ms(stranger) - 1000), entry(base))
        _cb, wl = first_pass(o)
        assert wl.ok[0]["mailDecode"]["status"] == "decoded"


def test_a_batch_named_in_clock_ticks_by_mailingest_0_1_stays_with_its_live_worker(o, base):
    downloaded(o, base, REL, sample())
    with another_process() as worker:
        old = Owner(_host_tag(), worker, proc_stat_ticks(worker), start_in_ticks=True)
        path = leave_batch(o, old, entry(base))
        assert re.search(r"-%d-%d-1\.json$" % (worker, old.start), path), "the 0.1 name: ticks, no unit"
        cb, wl = first_pass(o)
        assert wl.ok == [] and os.path.exists(path)
    cb.on_housekeeping()
    cb.after_work(wl)
    assert wl.ok[0]["mailDecode"]["status"] == "decoded", "taken over once the worker is dead"


def test_a_batch_named_in_clock_ticks_whose_pid_was_reused_is_taken_over(o, base):
    downloaded(o, base, REL, sample())
    with another_process() as stranger:
        leave_batch(o, Owner(_host_tag(), stranger, proc_stat_ticks(stranger) - 1, start_in_ticks=True),
                    entry(base))
        _cb, wl = first_pass(o)
        assert wl.ok[0]["mailDecode"]["status"] == "decoded"


def test_a_batch_of_another_host_is_left_to_that_host(o, base):
    downloaded(o, base, REL, sample())
    path = leave_batch(o, Owner("otherhost", dead_pid(), 1), entry(base))
    cb, wl = first_pass(o)
    assert wl.ok == [] and os.path.exists(path)


def test_an_already_complete_parts_directory_is_announced_again_not_rewritten(o, base):
    first = downloaded(o, base, REL, sample())
    load(o).after_work(worklist(first))  # decoded, then the worker died before its post
    parts_dir = base / "host/user/INBOX/1700000000.101.parts"
    before = tree(parts_dir)
    leave_batch(o, Owner(_host_tag(), dead_pid(), 1), entry(base))
    cb, wl = first_pass(o)
    assert tree(parts_dir) == before, "same files, same inodes"
    assert sorted(os.listdir(parts_dir.parent)) == ["1700000000.101.eml", "1700000000.101.parts"]
    assert len(wl.ok) == 4 and wl.ok[0]["mailDecode"]["directory"] == "1700000000.101.parts"
    assert {m["mailPart"]["kind"] for m in wl.ok[1:]} == {"body-text", "metadata", "part"}
    assert cb.metrics["reannounced"] == 1 and cb.metrics["decoded"] == 0


def test_a_redelivered_notice_of_a_decoded_message_is_announced_again_not_decoded_twice(o, base):
    first = downloaded(o, base, REL, sample())
    load(o).after_work(worklist(first))
    again = downloaded(o, base, REL, sample())
    wl = worklist(again)
    load(o).after_work(wl)
    assert sorted(os.listdir(base / "host/user/INBOX")) == ["1700000000.101.eml", "1700000000.101.parts"]
    assert len(wl.ok) == 4


def test_a_damaged_or_foreign_parts_directory_is_not_trusted(o, base):
    first = downloaded(o, base, REL, sample())
    load(o).after_work(worklist(first))
    (base / "host/user/INBOX/1700000000.101.parts/obs.csv").write_bytes(b"truncated")
    other_uid = dict(IMAP_MAIL, uid=102)
    again = downloaded(o, base, REL, sample(), mail=other_uid)
    wl = worklist(again)
    load(o).after_work(wl)
    assert again["mailDecode"]["directory"] == "1700000000.101-2.parts"


def test_a_pending_decode_whose_eml_never_arrived_is_dropped(o, base, caplog):
    leave_batch(o, Owner(_host_tag(), dead_pid(), 1), entry(base))
    cb, wl = first_pass(o)
    cb.after_post(wl)
    assert wl.ok == [] and batches(o) == []
    assert "not downloaded" in caplog.text


def test_an_eml_without_parts_and_without_a_pending_entry_is_left_alone(o, base):
    """Its parts may have been moved away by a later stage: only the journal says what is pending."""
    downloaded(o, base, REL, sample())
    cb, wl = first_pass(o)
    assert wl.ok == [] and os.listdir(base / "host/user/INBOX") == ["1700000000.101.eml"]


def test_a_message_delivered_again_in_the_same_pass_is_decoded_once(o, base):
    again = downloaded(o, base, REL, sample())
    leave_batch(o, Owner(_host_tag(), dead_pid(), 1), entry(base))
    cb = load(o)
    cb.on_start()
    wl = worklist(again)
    cb.after_work(wl)
    assert len(wl.ok) == 4 and sorted(os.listdir(base / "host/user/INBOX")) == [
        "1700000000.101.eml", "1700000000.101.parts"]


def test_an_unreadable_batch_is_set_aside_for_an_operator(o, base, caplog):
    path = leave_batch(o, Owner(_host_tag(), dead_pid(), 1))
    with open(path, "w") as handle:
        handle.write("{not json")
    journal = DecodeJournal(journal_dir(o))
    assert journal.take_over_orphans() == []
    assert [n for n in os.listdir(journal_dir(o)) if n.endswith(".bad")]
    assert "unreadable" in caplog.text


def test_two_workers_never_both_take_the_same_batch(o, base):
    leave_batch(o, Owner(_host_tag(), dead_pid(), 1), entry(base))
    one, two = DecodeJournal(journal_dir(o)), DecodeJournal(journal_dir(o))
    taken = one.take_over_orphans() + two.take_over_orphans()
    assert len(taken) == 1


def _takers_die(o, times: int, *, after_beginning: bool) -> None:
    """``times`` workers in a row take the batch over and die before their post: right after the
    claim, or once they began decoding each entry (``after_beginning``)."""
    begin = "[j.starting(b, e) for b in taken for e in b.entries];" if after_beginning else ""
    for _taker in range(times):
        taker = subprocess.run([sys.executable, "-c",
                                "import sys; from mailingest.mime.journal import DecodeJournal;"
                                "j = DecodeJournal(sys.argv[1]); taken = j.take_over_orphans();"
                                f"assert taken; {begin}", journal_dir(o)],
                               env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
        assert taker.returncode == 0


def test_a_message_whose_decode_keeps_killing_its_worker_is_set_aside_instead_of_crash_looping(o, base, caplog):
    downloaded(o, base, REL, sample())
    leave_batch(o, Owner(_host_tag(), dead_pid(), 1), entry(base))
    _takers_die(o, 5, after_beginning=True)
    cb, wl = first_pass(o)
    assert wl.ok == [] and batches(o) == []
    assert [n for n in os.listdir(journal_dir(o)) if n.endswith(".bad")]
    assert "begun 5 times and each time its worker died" in caplog.text and str(base / REL) in caplog.text


def test_takers_killed_before_they_begin_decoding_cost_the_message_nothing(o, base):
    # a worker killed at random moments (sr3 restarts, an operator, the OOM killer elsewhere) must not
    # turn an ordinary message into a set-aside one
    downloaded(o, base, REL, sample())
    leave_batch(o, Owner(_host_tag(), dead_pid(), 1), entry(base))
    _takers_die(o, 8, after_beginning=False)
    cb, wl = first_pass(o)
    assert [n for n in os.listdir(journal_dir(o)) if n.endswith(".bad")] == []
    assert wl.ok[0]["mailDecode"]["status"] == "decoded"


