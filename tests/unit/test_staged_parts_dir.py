"""A decode writes its parts into a hidden staging directory and renames it to ``x.parts`` only
when complete: readers, and a crash, never see a half-written parts directory."""

import os
import subprocess
from email.message import EmailMessage

import pytest

from mailingest.atomic import remove_stale_temps, temp_name
from mailingest.mime import layout
from mailingest.mime.layout import decode_file
from mailingest.mime.writer import OutputDir


def eml(tmp_path, name="1.2.eml"):
    msg = EmailMessage()
    msg["From"] = "obs@example.org"
    msg["Subject"] = "obs"
    msg.set_content("hourly observations\n")
    msg.add_attachment(b"time,temp\n", maintype="text", subtype="csv", filename="obs.csv")
    path = tmp_path / name
    path.write_bytes(msg.as_bytes())
    return path


def test_the_parts_directory_appears_complete_and_no_staging_is_left(tmp_path):
    result = decode_file(str(eml(tmp_path)))
    assert sorted(os.listdir(tmp_path)) == ["1.2.eml", "1.2.parts"]
    assert sorted(os.listdir(tmp_path / "1.2.parts")) == ["body.txt", "metadata.json", "obs.csv"]
    assert result.directory == str(tmp_path / "1.2.parts")
    assert sorted(os.path.basename(f.path) for f in result.files) == ["body.txt", "metadata.json", "obs.csv"]
    assert all(os.path.isfile(f.path) for f in result.files), "paths name the published directory"


def test_a_second_decode_of_the_same_message_gets_its_own_directory(tmp_path):
    path = eml(tmp_path)
    decode_file(str(path))
    again = decode_file(str(path))
    assert again.directory == str(tmp_path / "1.2-2.parts")
    assert sorted(os.listdir(tmp_path)) == ["1.2-2.parts", "1.2.eml", "1.2.parts"]


def test_a_failure_part_way_leaves_neither_a_parts_nor_a_staging_directory(tmp_path, monkeypatch):
    real_write_rows = layout._write_rows

    def write_then_fail(decoded, target, *args):
        target.write("first.bin", b"x")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(layout, "_write_rows", write_then_fail)
    with pytest.raises(OSError, match="No space left"):
        decode_file(str(eml(tmp_path)))
    assert os.listdir(tmp_path) == ["1.2.eml"]
    monkeypatch.setattr(layout, "_write_rows", real_write_rows)


def test_a_dead_writers_staging_directory_is_swept_and_a_live_ones_is_kept(tmp_path):
    staging = temp_name(str(tmp_path / "1.2.parts"))
    with subprocess.Popen(["sleep", "30"]) as live:
        try:
            live_dir = tmp_path / os.path.basename(staging).replace(f"-{os.getpid()}.tmp", f"-{live.pid}.tmp")
            dead_dir = tmp_path / os.path.basename(staging).replace(f"-{os.getpid()}.tmp", "-999999999.tmp")
            for directory in (live_dir, dead_dir):
                (directory / "nested.parts").mkdir(parents=True)
                (directory / "nested.parts" / "a.csv").write_bytes(b"x")
            assert remove_stale_temps(str(tmp_path)) == 1
            assert sorted(os.listdir(tmp_path)) == [live_dir.name]
        finally:
            live.kill()


def test_a_leftover_staging_directory_of_this_very_pid_is_replaced(tmp_path):
    leftover = tmp_path / os.path.basename(temp_name(str(tmp_path / "1.2.parts")))
    (leftover / "old.parts").mkdir(parents=True)
    (leftover / "old.parts" / "stale.csv").write_bytes(b"old")
    with OutputDir.open(str(tmp_path), create=False) as parent:
        staging = parent.mkdir_staging(leftover.name)
        staging.write("new.csv", b"new")
        assert parent.publish(staging, "1.2.parts") == "1.2.parts"
    assert sorted(os.listdir(tmp_path / "1.2.parts")) == ["new.csv"]
    assert not leftover.exists()


def test_moving_the_published_files_keeps_every_field_of_each() -> None:
    import dataclasses

    values = {f.name: "x-%s" % f.name for f in dataclasses.fields(layout.WrittenFile)}
    row = tuple({**values, "path": "/s/.tmp/a/b.txt"}.values())
    outside = tuple({**values, "path": "/s/.tmpx/c.txt"}.values())
    decoded = layout.decode_bytes(b"Subject: x\n\nbody\n")
    moved = layout._result(decoded, "x.eml", [row, outside], [], "decoded", layout._Moved("/s/.tmp", "/s/x.parts"))
    assert moved.directory == "/s/x.parts"
    assert moved.files == (dataclasses.replace(layout.WrittenFile(*row), path="/s/x.parts/a/b.txt"),
                           layout.WrittenFile(*outside))


def test_each_file_written_carries_its_size_on_disk(tmp_path) -> None:
    from tests.mailgen import sample_message

    path = tmp_path / "m.eml"
    path.write_bytes(sample_message(1, size_hint=1_500_000))  # its attachment decoded as it is written
    result = decode_file(str(path), settings=layout.DecodeSettings(fsync=False))
    assert len(result.files) >= 4
    assert all(f.size == os.path.getsize(f.path) for f in result.files)
