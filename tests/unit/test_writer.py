"""Specification of the no-follow, no-overwrite, atomic writer (mailingest.mime.writer)."""

import os

import pytest

from mailingest.mime.writer import OutputDir


def test_writes_atomically_and_leaves_no_temporary_file(tmp_path):
    with OutputDir.open(str(tmp_path / "out")) as out:
        assert out.write("a.txt", b"data") == "a.txt"
    assert os.listdir(tmp_path / "out") == ["a.txt"]
    assert (tmp_path / "out" / "a.txt").read_bytes() == b"data"


def test_duplicate_names_get_a_suffix_and_nothing_is_overwritten(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"old")
    with OutputDir.open(str(tmp_path)) as out:
        assert out.write("a.txt", b"1") == "a-2.txt"
        assert out.write("A.TXT", b"2") == "A-3.TXT"
        assert out.write("a.txt", b"3") == "a-4.txt"
    assert (tmp_path / "a.txt").read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["A-3.TXT", "a-2.txt", "a-4.txt", "a.txt"]


def test_a_file_that_appears_after_opening_is_not_overwritten(tmp_path):
    with OutputDir.open(str(tmp_path)) as out:
        (tmp_path / "late.txt").write_bytes(b"someone else's")
        assert out.write("late.txt", b"ours") == "late-2.txt"
    assert (tmp_path / "late.txt").read_bytes() == b"someone else's"


def test_symlinks_are_never_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with OutputDir.open(str(out_dir)) as out:
        os.symlink(victim, out_dir / "x.txt")         # planted after the directory was opened
        os.symlink(tmp_path, out_dir / "sub")
        assert out.write("x.txt", b"payload") == "x-2.txt"
        child = out.mkdir("sub")
        assert os.path.basename(child.path) == "sub-2"
        child.write("y.txt", b"inside")
    assert victim.read_bytes() == b"precious"
    assert (out_dir / "sub-2" / "y.txt").read_bytes() == b"inside"
    assert not (tmp_path / "y.txt").exists()


def test_reserved_names_are_kept_for_later(tmp_path):
    with OutputDir.open(str(tmp_path)) as out:
        meta = out.reserve("metadata.json")
        assert out.write("metadata.json", b"an attachment") == "metadata-2.json"
        assert out.write(meta, b"{}", reserved=True) == "metadata.json"


def test_remove_created_cleans_up_after_a_failure(tmp_path):
    (tmp_path / "keep.txt").write_bytes(b"k")
    with OutputDir.open(str(tmp_path)) as out:
        out.write("a", b"1")
        out.mkdir("d").write("b", b"2")
        out.remove_created()
    assert os.listdir(tmp_path) == ["keep.txt"]


def test_write_into_a_file_path_fails_loudly(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(OSError):
        OutputDir.open(str(tmp_path / "file"))


def test_without_hard_links_the_name_is_claimed_then_replaced(tmp_path, monkeypatch):
    import errno

    def no_links(*args, **kwargs):
        raise OSError(errno.EPERM, "hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    (tmp_path / "a.txt").write_bytes(b"old")
    with OutputDir.open(str(tmp_path)) as out:
        assert out.write("a.txt", b"new") == "a-2.txt"
        assert out.write("b.txt", b"b") == "b.txt"
    assert (tmp_path / "a.txt").read_bytes() == b"old"
    assert (tmp_path / "a-2.txt").read_bytes() == b"new"
    assert sorted(os.listdir(tmp_path)) == ["a-2.txt", "a.txt", "b.txt"]


@pytest.mark.parametrize("path", ["out", "out/", "/", "", "/a/b", "a//"])
@pytest.mark.parametrize("name", ["x.txt", "", "/abs", "a/b", ".hidden"])
def test_a_name_is_joined_to_the_directory_as_os_path_join_does(path: str, name: str) -> None:
    out = OutputDir.__new__(OutputDir)
    out.path = path
    assert out.join(name) == os.path.join(path, name)
