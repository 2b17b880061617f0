"""Specification of the poll state file and of atomic writes."""

import os

from mailingest.atomic import remove_stale_temps, temp_name, write_atomically
from mailingest.state import FolderState, PollState


def test_poll_state_survives_a_restart(tmp_path):
    path = str(tmp_path / "state.json")
    state = PollState(path)
    assert state.folder("imaps://a@h:993", "INBOX") is None
    state.set_folder("imaps://a@h:993", "INBOX", FolderState(uidvalidity=5, last_uid=40))
    state.save()
    again = PollState(path)
    assert again.folder("imaps://a@h:993", "INBOX") == FolderState(uidvalidity=5, last_uid=40)


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
