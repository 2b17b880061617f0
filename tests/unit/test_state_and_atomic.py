"""Specification of the poll state file and of atomic writes."""

import os
import subprocess
import time

from mailingest import atomic
from mailingest.atomic import process_running, remove_stale_temps, temp_name, write_atomically
from mailingest.poller.state import FolderState, PollState


def test_poll_state_survives_a_restart(tmp_path):
    path = str(tmp_path / "state.json")
    state = PollState(path)
    assert state.folder("imaps://a@h:993", "INBOX") is None
    state.set_folder("imaps://a@h:993", "INBOX", FolderState(uidvalidity=5, last_uid=40))
    state.save()
    again = PollState(path)
    assert again.folder("imaps://a@h:993", "INBOX") == FolderState(uidvalidity=5, last_uid=40)


def test_messages_held_by_a_dns_temperror_survive_a_restart(tmp_path):
    path = tmp_path / "state.json"
    state = PollState(str(path))
    state.set_folder("imaps://a@h", "INBOX", FolderState(uidvalidity=7, last_uid=12, held={9: 1700000000.5, 11: 1.0}))
    state.save()
    again = PollState(str(path)).folder("imaps://a@h", "INBOX")
    assert again is not None and again.held == {9: 1700000000.5, 11: 1.0}
    state.set_folder("imaps://a@h", "INBOX", FolderState(uidvalidity=7, last_uid=12))
    state.save()
    assert PollState(str(path)).folder("imaps://a@h", "INBOX").held == {}


def test_a_corrupt_state_file_starts_afresh_with_an_error(tmp_path, caplog):
    path = tmp_path / "state.json"
    path.write_text("{not json")
    assert PollState(str(path)).folder("x", "INBOX") is None
    assert "unreadable" in caplog.text


def test_write_atomically_leaves_the_whole_file_and_no_temp(tmp_path):
    final = tmp_path / "1.2.eml"
    assert write_atomically(str(final), [b"abc", b"\x00\xff"], mtime=1_000_000_000) == 5
    assert final.read_bytes() == b"abc\x00\xff"
    assert final.stat().st_mtime == 1_000_000_000
    assert os.listdir(tmp_path) == ["1.2.eml"]


def test_a_failed_write_leaves_no_file_at_all(tmp_path):
    final = tmp_path / "x.eml"

    def chunks():
        yield b"partial"
        raise RuntimeError("connection lost")

    try:
        write_atomically(str(final), chunks())
    except RuntimeError:
        pass
    assert os.listdir(tmp_path) == []


def test_stale_temps_of_dead_writers_are_removed(tmp_path):
    stale = temp_name(str(tmp_path / "a.eml")).replace(f"-{os.getpid()}.tmp", "-999999999.tmp")
    open(stale, "wb").close()
    (tmp_path / "keep.eml").write_bytes(b"x")
    assert remove_stale_temps(str(tmp_path)) == 1
    assert os.listdir(tmp_path) == ["keep.eml"]


def _temp_of(pid: int, directory) -> str:
    return temp_name(str(directory / "a.eml")).replace(f"-{os.getpid()}.tmp", f"-{pid}.tmp")


def test_the_temp_of_a_running_writer_is_kept(tmp_path):
    with subprocess.Popen(["sleep", "30"]) as writer:
        try:
            open(_temp_of(writer.pid, tmp_path), "wb").close()
            assert remove_stale_temps(str(tmp_path)) == 0
        finally:
            writer.kill()


def test_the_temp_of_a_killed_but_unreaped_writer_is_removed(tmp_path):
    # Under a container init that reaps nothing, a kill -9'd worker stays a zombie for good.
    writer = subprocess.Popen(["sleep", "30"])
    writer.kill()
    deadline = time.monotonic() + 10
    while process_running(writer.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert os.path.exists(f"/proc/{writer.pid}"), "the killed writer must still be a zombie here"
    open(_temp_of(writer.pid, tmp_path), "wb").close()
    try:
        assert remove_stale_temps(str(tmp_path)) == 1
    finally:
        writer.wait()


def test_a_temp_untouched_for_an_hour_is_removed_even_if_its_pid_is_in_use(tmp_path, monkeypatch):
    with subprocess.Popen(["sleep", "30"]) as unrelated:
        try:
            open(_temp_of(unrelated.pid, tmp_path), "wb").close()
            monkeypatch.setattr(atomic, "STALE_AFTER_SECONDS", -1.0)  # as if an hour had passed
            assert remove_stale_temps(str(tmp_path)) == 1
        finally:
            unrelated.kill()


def test_sync_together_syncs_every_file_and_directory_and_skips_what_is_gone(tmp_path, monkeypatch):
    from mailingest import atomic

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (synced.append(os.readlink("/proc/self/fd/%d" % fd)),
                                                        real_fsync(fd)))
    (tmp_path / "d").mkdir()
    for name in ("a", "d/b"):
        (tmp_path / name).write_bytes(b"x" * 10)
    atomic.sync_together([str(tmp_path / "a"), str(tmp_path / "d/b"), str(tmp_path / "gone")],
                         [str(tmp_path / "d"), str(tmp_path), str(tmp_path / "gone-dir")])
    assert set(synced[:2]) == {str(tmp_path / "a"), str(tmp_path / "d/b")}  # the files first, then
    assert set(synced[2:]) == {str(tmp_path / "d"), str(tmp_path)}  # the directories naming them


def test_sync_together_keeps_its_threads_from_one_group_to_the_next(tmp_path):
    import threading

    from mailingest import atomic

    files = []
    for i in range(20):
        (tmp_path / f"f{i}").write_bytes(b"x")
        files.append(str(tmp_path / f"f{i}"))

    def fsync_threads() -> set[int | None]:
        return {t.ident for t in threading.enumerate() if t.name.startswith("mailingest-fsync")}

    atomic.sync_together(files, [str(tmp_path)])
    first = fsync_threads()
    for _ in range(3):
        atomic.sync_together(files, [str(tmp_path)])
    assert first and first <= fsync_threads(), "a pass starts no threads of its own: it reuses the process's"
    assert len(fsync_threads()) <= atomic.SYNC_THREADS
