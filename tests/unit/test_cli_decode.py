"""Specification of ``mailingest decode`` (mailingest.cli + mailingest.layout) on crafted messages."""

import hashlib
import json
import os
import subprocess
import sys
from email.message import EmailMessage

import pytest

from mailingest.cli import main

PDF = b"%PDF-1.4\n\x00\xff binary"


def sample(subject="Observations", *, names=("data.csv",)) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Station <obs@example.org>"
    msg["To"] = "ingest@example.net"
    msg["Subject"] = subject
    msg["Date"] = "Mon, 02 Nov 2026 10:00:00 +0000"
    msg["Message-ID"] = "<m1@example.org>"
    msg.set_content("text body\n")
    msg.add_alternative("<p>html body</p>\n", subtype="html")
    for name in names:
        msg.add_attachment(b"a,b\n1,2\n", maintype="text", subtype="csv", filename=name)
    return msg.as_bytes()


def tree(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _dirs, files in os.walk(root) for f in files)


@pytest.fixture
def eml(tmp_path):
    path = tmp_path / "in" / "x.eml"
    path.parent.mkdir()
    path.write_bytes(sample())
    return path


def test_one_file_goes_straight_into_the_output_directory(eml, tmp_path, capsys):
    before = (eml.read_bytes(), eml.stat().st_mtime_ns)
    assert main(["decode", str(eml), "-o", str(tmp_path / "out")]) == 0
    assert tree(tmp_path / "out") == ["body.html", "body.txt", "data.csv", "metadata.json"]
    assert (tmp_path / "out" / "body.txt").read_text("utf-8") == "text body\n"
    assert (tmp_path / "out" / "data.csv").read_bytes() == b"a,b\n1,2\n"
    assert (eml.read_bytes(), eml.stat().st_mtime_ns) == before   # the .eml is never altered
    assert "4 files" in capsys.readouterr().out


def test_metadata_json(eml, tmp_path):
    main(["decode", str(eml), "-o", str(tmp_path / "out"), "-q"])
    meta = json.loads((tmp_path / "out" / "metadata.json").read_text("utf-8"))
    assert meta["schema"] == "mailingest-decode/1"
    assert meta["status"] == "decoded"
    assert meta["source"] == "x.eml"
    assert meta["from"] == "Station <obs@example.org>"
    assert meta["to"] == ["ingest@example.net"] and meta["cc"] == []
    assert meta["subject"] == "Observations"
    assert meta["date"] == "2026-11-02T10:00:00+00:00"
    assert meta["messageId"] == "<m1@example.org>"
    assert meta["mail"] is None
    csv = [p for p in meta["parts"] if p["file"] == "data.csv"][0]
    assert csv == {"file": "data.csv", "kind": "part", "originalName": "data.csv",
                   "contentType": "text/csv", "charset": None, "disposition": "attachment",
                   "contentId": None, "mimePart": "2", "size": 8,
                   "sha256": hashlib.sha256(b"a,b\n1,2\n").hexdigest()}
    assert [p["kind"] for p in meta["parts"]] == ["body-text", "body-html", "part"]


def test_several_files_get_a_directory_each(tmp_path):
    paths = []
    for stem in ("a", "b"):
        path = tmp_path / ("%s.eml" % stem)
        path.write_bytes(sample(stem))
        paths.append(str(path))
    assert main(["decode", *paths, "-o", str(tmp_path / "out"), "-q"]) == 0
    assert sorted(os.listdir(tmp_path / "out")) == ["a.parts", "b.parts"]
    assert "data.csv" in os.listdir(tmp_path / "out" / "b.parts")


def test_without_output_the_parts_go_beside_the_eml_and_never_overwrite(eml):
    assert main(["decode", str(eml), "-q"]) == 0
    assert main(["decode", str(eml), "-q"]) == 0
    assert sorted(os.listdir(eml.parent)) == ["x-2.parts", "x.eml", "x.parts"]


def test_hostile_and_duplicate_names_stay_inside_the_output(tmp_path):
    path = tmp_path / "evil.eml"
    path.write_bytes(sample(names=("../../escape.csv", "/etc/passwd", "C:\\win\\x.csv", "dup.csv",
                                   "dup.csv", "metadata.json", "..", "\u202etxt.exe")))
    out = tmp_path / "deep" / "out"
    assert main(["decode", str(path), "-o", str(out), "-q"]) == 0
    assert tree(out) == ["body.html", "body.txt", "dup-2.csv", "dup.csv", "escape.csv",
                         "metadata-2.json", "metadata.json", "part-9.csv", "passwd", "txt.exe", "x.csv"]
    assert sorted(os.listdir(tmp_path)) == ["deep", "evil.eml"]


def test_japanese_names_and_subjects_are_written_in_utf8(tmp_path):
    path = tmp_path / "jp.eml"
    path.write_bytes(sample("会議の件", names=("議事録.csv",)))
    out = tmp_path / "out"
    assert main(["decode", str(path), "-o", str(out), "-q"]) == 0
    assert "議事録.csv" in os.listdir(out)
    meta = json.loads((out / "metadata.json").read_text("utf-8"))
    assert meta["subject"] == "会議の件"


def test_attached_messages_are_saved_and_decoded_into_a_subfolder(tmp_path):
    outer = EmailMessage()
    outer["Subject"] = "fwd"
    outer.set_content("see attached\n")
    inner = EmailMessage()
    inner["Subject"] = "inner"
    inner.set_content("inner text\n")
    inner.add_attachment(b"x", maintype="application", subtype="octet-stream", filename="in.bin")
    outer.add_attachment(inner, filename="orig.eml")
    path = tmp_path / "fwd.eml"
    path.write_bytes(outer.as_bytes())
    assert main(["decode", str(path), "-o", str(tmp_path / "out"), "-q"]) == 0
    assert tree(tmp_path / "out") == ["body.txt", "metadata.json", "orig.eml",
                                      "orig.parts/body.txt", "orig.parts/in.bin",
                                      "orig.parts/metadata.json"]
    meta = json.loads((tmp_path / "out" / "metadata.json").read_text("utf-8"))
    entry = [p for p in meta["parts"] if p["file"] == "orig.eml"][0]
    assert (entry["kind"], entry["status"], entry["decodedInto"]) == ("message", "decoded", "orig.parts")


def test_a_message_over_a_bound_is_decoded_partially_with_the_rest_kept_raw(eml, tmp_path, caplog):
    assert main(["decode", str(eml), "-o", str(tmp_path / "out"), "--max-parts", "2", "-q"]) == 0
    meta = json.loads((tmp_path / "out" / "metadata.json").read_text("utf-8"))
    assert meta["status"] == "partial" and "max_parts (2)" in meta["bounds"][0]
    raw = [p for p in meta["parts"] if p["kind"] == "raw"]
    assert raw and raw[0]["status"] == "raw" and raw[0]["file"].startswith("raw-")
    assert "decoded partially" in caplog.text and "max_parts" in caplog.text


def test_a_message_larger_than_max_bytes_fails_with_exit_1_and_writes_nothing(eml, tmp_path, caplog):
    assert main(["decode", str(eml), "-o", str(tmp_path / "out"), "--max-bytes", "10", "-q"]) == 1
    assert not (tmp_path / "out").exists()
    assert "not decoded" in caplog.text and "max_decoded_bytes" in caplog.text


def test_a_missing_file_fails_but_the_others_are_decoded(eml, tmp_path):
    assert main(["decode", str(tmp_path / "nope.eml"), str(eml), "-o", str(tmp_path / "out"), "-q"]) == 1
    assert "x.parts" in os.listdir(tmp_path / "out")


@pytest.mark.parametrize("argv", [[], ["decode"], ["decode", "x.eml", "--max-depth", "0"],
                                  ["decode", "x.eml", "--max-bytes", "lots"], ["nosuchcommand"]])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


def test_max_bytes_accepts_sr3_size_suffixes(eml, tmp_path):
    assert main(["decode", str(eml), "-o", str(tmp_path / "a"), "--max-bytes", "1m", "-q"]) == 0
    assert main(["decode", str(eml), "-o", str(tmp_path / "b"), "--max-bytes", "100", "-q"]) == 1


@pytest.mark.parametrize("text, size", [("1000", 1000), ("100m", 100_000_000), ("100mb", 100 * 1024 ** 2),
                                        ("2Gi", 2 * 1024 ** 3), ("5k", 5000)])
def test_size_syntax_matches_sr3(text, size):
    from mailingest.cli import _size
    assert _size(text) == size


def test_no_html_and_no_fsync(eml, tmp_path):
    assert main(["decode", str(eml), "-o", str(tmp_path / "o"), "--no-html", "--no-fsync", "-q"]) == 0
    assert "body.html" not in os.listdir(tmp_path / "o")


def test_python_dash_m_runs_the_same_command(eml, tmp_path):
    result = subprocess.run([sys.executable, "-m", "mailingest", "decode", str(eml), "-o",
                             str(tmp_path / "out")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "data.csv" in os.listdir(tmp_path / "out")


def test_the_decode_path_does_not_import_sarracenia(eml, tmp_path):
    code = ("import sys; from mailingest.cli import main; main(['decode', %r, '-o', %r, '-q']); "
            "print('sarracenia' in sys.modules)" % (str(eml), str(tmp_path / "o")))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_a_write_failure_removes_what_was_written(eml, tmp_path, monkeypatch, caplog):
    import mailingest.writer as writer

    real = writer.OutputDir.write
    calls = []

    def failing(self, name, data, **kwargs):
        calls.append(name)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(self, name, data, **kwargs)

    monkeypatch.setattr(writer.OutputDir, "write", failing)
    assert main(["decode", str(eml), "-q"]) == 1
    assert os.listdir(eml.parent) == ["x.eml"]
    assert "No space left" in caplog.text


def test_several_files_again_get_new_directories(tmp_path):
    path = tmp_path / "a.eml"
    path.write_bytes(sample())
    other = tmp_path / "b.eml"
    other.write_bytes(sample())
    for _ in range(2):
        assert main(["decode", str(path), str(other), "-o", str(tmp_path / "out"), "-q"]) == 0
    assert sorted(os.listdir(tmp_path / "out")) == ["a-2.parts", "a.parts", "b-2.parts", "b.parts"]
