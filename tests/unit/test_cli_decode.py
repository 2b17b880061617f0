"""Specification of ``mailingest decode`` (mailingest.cli.decode + mailingest.mime.layout) on crafted messages.

Standard input, exit codes, the summary line and the progress bar are checked on the real command
(``python -m mailingest`` in a subprocess, under a pseudo-terminal for the progress bar)."""

import hashlib
import json
import os
import pty
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


PARTS = ["body.html", "body.txt", "data.csv", "metadata.json"]


def mailingest(*args, stdin=b"", cwd=None):
    """Run the real command; returns (exit status, stdout, stderr)."""
    done = subprocess.run([sys.executable, "-m", "mailingest", *map(str, args)], input=stdin,
                          capture_output=True, cwd=cwd, check=False, timeout=120)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def test_one_file_with_output_gets_its_own_parts_directory_in_it(eml, tmp_path, capsys):
    before = (eml.read_bytes(), eml.stat().st_mtime_ns)
    assert main(["decode", str(eml), "-o", str(tmp_path / "out")]) == 0
    assert tree(tmp_path / "out") == ["x.parts/" + name for name in PARTS]
    assert (tmp_path / "out" / "x.parts" / "body.txt").read_text("utf-8") == "text body\n"
    assert (tmp_path / "out" / "x.parts" / "data.csv").read_bytes() == b"a,b\n1,2\n"
    assert (eml.read_bytes(), eml.stat().st_mtime_ns) == before   # the .eml is never altered
    assert capsys.readouterr().out == "%s -> %s (4 files)\n" % (eml, tmp_path / "out" / "x.parts")


def test_several_files_follow_the_same_rule_as_one(tmp_path):
    paths = []
    for stem in ("a", "b"):
        path = tmp_path / ("%s.eml" % stem)
        path.write_bytes(sample(stem))
        paths.append(str(path))
    assert main(["decode", *paths, "-o", str(tmp_path / "out"), "-q"]) == 0
    assert sorted(os.listdir(tmp_path / "out")) == ["a.parts", "b.parts"]
    assert sorted(os.listdir(tmp_path / "out" / "b.parts")) == PARTS


def test_without_output_the_parts_go_beside_each_message(eml):
    assert main(["decode", str(eml), "-q"]) == 0
    assert sorted(os.listdir(eml.parent)) == ["x.eml", "x.parts"]


def test_a_directory_is_decoded_recursively_and_its_tree_kept_under_the_output(tmp_path):
    src = tmp_path / "mail"
    for rel in ("INBOX/1.eml", "INBOX/2.EML", "Archive/2026/1.eml", "notes.txt", ".hidden/3.eml",
                "INBOX/.4.eml"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(sample(rel))
    code, out, err = mailingest("decode", src, "-o", tmp_path / "out")
    assert code == 0, err
    assert sorted(os.listdir(tmp_path / "out")) == ["Archive", "INBOX"]
    assert sorted(os.listdir(tmp_path / "out" / "INBOX")) == ["1.parts", "2.parts"]
    assert os.listdir(tmp_path / "out" / "Archive" / "2026") == ["1.parts"]
    assert len(out.splitlines()) == 3


def test_a_directory_without_output_gets_parts_beside_each_message_and_skips_earlier_output(tmp_path):
    src = tmp_path / "mail"
    (src / "INBOX").mkdir(parents=True)
    (src / "INBOX" / "1.eml").write_bytes(sample(names=("inner.eml",)))
    assert main(["decode", str(src), "-q"]) == 0
    assert sorted(os.listdir(src / "INBOX")) == ["1.eml", "1.parts"]
    # a second run sees only 1.eml: nothing inside 1.parts/ counts as input
    code, _out, err = mailingest("decode", src)
    assert code == 1
    assert err.count("not decoded") == 1 and "1.parts exists" in err


def test_an_output_directory_inside_the_input_directory_is_not_read_back(tmp_path):
    src = tmp_path / "mail"
    src.mkdir()
    (src / "a.eml").write_bytes(sample())
    (src / "out" / "old").mkdir(parents=True)
    (src / "out" / "old" / "b.eml").write_bytes(sample())
    assert main(["decode", str(src), "-o", str(src / "out"), "-q"]) == 0
    assert sorted(os.listdir(src / "out")) == ["a.parts", "old"]


def test_standard_input_is_decoded_as_stdin_parts(tmp_path):
    code, out, err = mailingest("decode", "-", "-o", tmp_path / "out", stdin=sample())
    assert code == 0, err
    assert tree(tmp_path / "out") == ["stdin.parts/" + name for name in PARTS]
    assert out == "(stdin) -> %s (4 files)\n" % (tmp_path / "out" / "stdin.parts")
    meta = json.loads((tmp_path / "out" / "stdin.parts" / "metadata.json").read_text("utf-8"))
    assert meta["source"] == "stdin"


def test_standard_input_without_output_goes_to_the_current_directory_under_its_given_name(tmp_path):
    code, _out, err = mailingest("decode", "--stdin-name", "report.eml", "-", stdin=sample(), cwd=tmp_path)
    assert code == 0, err
    assert sorted(os.listdir(tmp_path)) == ["report.parts"]


def test_standard_input_can_be_given_only_once(tmp_path):
    code, _out, err = mailingest("decode", "-", "-", "-o", tmp_path / "out", stdin=sample())
    assert code == 2 and "only once" in err
    assert not (tmp_path / "out").exists()


def test_decoding_twice_refuses_the_message_and_keeps_the_first_output(eml, tmp_path):
    assert mailingest("decode", eml, "-o", tmp_path / "out")[0] == 0
    first = (tmp_path / "out" / "x.parts" / "metadata.json").stat().st_ino
    code, out, err = mailingest("decode", eml, "-o", tmp_path / "out")
    assert code == 1
    assert out == ""
    assert "x.parts exists (--force replaces it)" in err
    assert sorted(os.listdir(tmp_path / "out")) == ["x.parts"]
    assert (tmp_path / "out" / "x.parts" / "metadata.json").stat().st_ino == first


def test_force_replaces_the_earlier_output_and_leaves_nothing_else(eml, tmp_path):
    assert main(["decode", str(eml), "-o", str(tmp_path / "out"), "-q"]) == 0
    (tmp_path / "out" / "x.parts" / "stale.txt").write_text("from an older run")
    eml.write_bytes(sample(names=("new.csv",)))
    assert main(["decode", str(eml), "-o", str(tmp_path / "out"), "--force", "-q"]) == 0
    assert os.listdir(tmp_path / "out") == ["x.parts"]
    assert sorted(os.listdir(tmp_path / "out" / "x.parts")) == ["body.html", "body.txt", "metadata.json",
                                                                  "new.csv"]


def test_two_inputs_needing_the_same_output_refuse_the_second_even_with_force(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "x.eml").write_bytes(sample(sub))
    code, _out, err = mailingest("decode", tmp_path / "a" / "x.eml", tmp_path / "b" / "x.eml",
                                "-o", tmp_path / "out", "--force")
    assert code == 1
    assert "also the output of an earlier input" in err and str(tmp_path / "b" / "x.eml") in err
    meta = json.loads((tmp_path / "out" / "x.parts" / "metadata.json").read_text("utf-8"))
    assert meta["subject"] == "a"


def test_the_summary_line_counts_messages_files_bytes_and_failures(eml, tmp_path):
    (tmp_path / "bad.eml").write_bytes(sample())
    code, _out, err = mailingest("decode", eml, tmp_path / "bad.eml", tmp_path / "missing.eml",
                                 "-o", tmp_path / "out", "--max-parts", "50")
    written = sum(f.stat().st_size for f in (tmp_path / "out").rglob("*") if f.is_file())
    assert code == 1
    summary = err.splitlines()[-1]
    assert summary.startswith("2 messages decoded, 8 files, %d bytes (" % written), summary
    assert ", 1 failed, " in summary and summary.endswith(" s")


def test_the_summary_line_says_message_for_exactly_one(eml, tmp_path):
    code, _out, err = mailingest("decode", eml, "-o", tmp_path / "out")
    assert code == 0
    assert err.splitlines()[-1].startswith("1 message decoded, "), err


def test_a_directory_without_any_eml_file_is_named_in_a_warning(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "report.msg").write_bytes(sample())
    code, out, err = mailingest("decode", tmp_path / "in")
    assert code == 0 and out == ""
    assert "%s: no *.eml file below it" % (tmp_path / "in") in err
    assert err.splitlines()[-1].startswith("0 messages decoded, "), err


def test_quiet_prints_only_errors(eml, tmp_path):
    code, out, err = mailingest("decode", eml, tmp_path / "missing.eml", "-o", tmp_path / "out", "-q")
    assert code == 1 and out == ""
    assert err.splitlines() == [line for line in err.splitlines() if "not decoded" in line]


def run_on_a_terminal(*args):
    """Run the command with standard error on a pseudo-terminal; returns (exit status, what the
    terminal showed)."""
    controller, terminal = pty.openpty()
    try:
        done = subprocess.run([sys.executable, "-m", "mailingest", *map(str, args)], stdout=subprocess.DEVNULL,
                              stderr=terminal, check=False, timeout=120)
    finally:
        os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the terminal is closed and drained
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    return done.returncode, shown.decode()


def test_a_progress_bar_is_drawn_only_on_a_terminal_and_erased_at_the_end(tmp_path):
    for i in range(3):
        (tmp_path / "in").mkdir(exist_ok=True)
        (tmp_path / "in" / ("%d.eml" % i)).write_bytes(sample())
    code, shown = run_on_a_terminal("decode", tmp_path / "in", "-o", tmp_path / "tty")
    assert code == 0
    assert "3/3 messages" in shown and "\r\x1b[K" in shown
    assert shown.rstrip().splitlines()[-1].endswith(" s")  # the summary follows the erased bar

    code, _out, err = mailingest("decode", tmp_path / "in", "-o", tmp_path / "pipe")
    assert code == 0 and "messages, " not in err and "\r" not in err
    code, shown = run_on_a_terminal("decode", tmp_path / "in", "-o", tmp_path / "quiet", "-q")
    assert code == 0 and shown == ""


def test_help_documents_inputs_output_replacement_and_exit_status():
    code, out, _err = mailingest("decode", "--help")
    assert code == 0
    for text in ("DIRECTORY", "standard input", "-o DIR", "--force", "exit status", "summary",
                 "progress", "130"):
        assert text in out, text


def test_metadata_json(eml, tmp_path):
    main(["decode", str(eml), "-o", str(tmp_path / "out"), "-q"])
    meta = json.loads((tmp_path / "out" / "x.parts" / "metadata.json").read_text("utf-8"))
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


def test_hostile_and_duplicate_names_stay_inside_the_output(tmp_path):
    path = tmp_path / "evil.eml"
    path.write_bytes(sample(names=("../../escape.csv", "/etc/passwd", "C:\\win\\x.csv", "dup.csv",
                                   "dup.csv", "metadata.json", "..", "\u202etxt.exe")))
    out = tmp_path / "deep" / "out"
    assert main(["decode", str(path), "-o", str(out), "-q"]) == 0
    assert tree(out / "evil.parts") == ["body.html", "body.txt", "dup-2.csv", "dup.csv", "escape.csv",
                         "metadata-2.json", "metadata.json", "part-9.csv", "passwd", "txt.exe", "x.csv"]
    assert sorted(os.listdir(tmp_path)) == ["deep", "evil.eml"]


def test_japanese_names_and_subjects_are_written_in_utf8(tmp_path):
    path = tmp_path / "jp.eml"
    path.write_bytes(sample("会議の件", names=("議事録.csv",)))
    out = tmp_path / "out"
    assert main(["decode", str(path), "-o", str(out), "-q"]) == 0
    assert "議事録.csv" in os.listdir(out / "jp.parts")
    meta = json.loads((out / "jp.parts" / "metadata.json").read_text("utf-8"))
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
    assert tree(tmp_path / "out" / "fwd.parts") == ["body.txt", "metadata.json", "orig.eml",
                                                    "orig.parts/body.txt", "orig.parts/in.bin",
                                                    "orig.parts/metadata.json"]
    meta = json.loads((tmp_path / "out" / "fwd.parts" / "metadata.json").read_text("utf-8"))
    entry = [p for p in meta["parts"] if p["file"] == "orig.eml"][0]
    assert (entry["kind"], entry["status"], entry["decodedInto"]) == ("message", "decoded", "orig.parts")


def test_a_message_over_a_bound_is_decoded_partially_with_the_rest_kept_raw(eml, tmp_path, caplog):
    assert main(["decode", str(eml), "-o", str(tmp_path / "out"), "--max-parts", "2", "-q"]) == 0
    [meta_path] = (tmp_path / "out").rglob("metadata.json")
    meta = json.loads(meta_path.read_text("utf-8"))
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
    from mailingest.cli.decode import parse_size
    assert parse_size(text) == size


def test_no_html_and_no_fsync(eml, tmp_path):
    assert main(["decode", str(eml), "-o", str(tmp_path / "o"), "--no-html", "--no-fsync", "-q"]) == 0
    assert "body.html" not in os.listdir(tmp_path / "o" / "x.parts")


def test_python_dash_m_runs_the_same_command(eml, tmp_path):
    result = subprocess.run([sys.executable, "-m", "mailingest", "decode", str(eml), "-o",
                             str(tmp_path / "out")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "data.csv" in os.listdir(tmp_path / "out" / "x.parts")


def test_the_decode_path_does_not_import_sarracenia(eml, tmp_path):
    code = ("import sys; from mailingest.cli import main; main(['decode', %r, '-o', %r, '-q']); "
            "print('sarracenia' in sys.modules)" % (str(eml), str(tmp_path / "o")))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_a_write_failure_removes_what_was_written(eml, tmp_path, monkeypatch, caplog):
    from mailingest.mime import writer

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


def test_the_byte_limit_defaults_to_the_callbacks_and_its_help_reads_as_the_option_does(capsys):
    from mailingest.cli import build_parser
    from mailingest.mime.parse import DecodeLimits

    args = build_parser().parse_args(["decode", "x.eml"])
    assert args.max_bytes == DecodeLimits().max_decoded_bytes
    with pytest.raises(SystemExit):
        build_parser().parse_args(["decode", "--help"])
    assert "(default 256mb)" in " ".join(capsys.readouterr().out.split())


def test_tnef_and_smime_flags_choose_what_is_opened(tmp_path, caplog):
    from tests import smime_pki
    from tests.fuzz.generators import tnef_file, tnef_stream, winmail

    pki = smime_pki.make_pki()
    key = tmp_path / "key.pem"
    key.write_bytes(pki.recipient.pem())
    (tmp_path / "tnef.eml").write_bytes(winmail(tnef_stream(tnef_file("a.txt", b"a"))))
    (tmp_path / "sealed.eml").write_bytes(smime_pki.encrypted(pki.recipient))
    assert main(["decode", "--no-fsync", "--tnef-keep", "--smime-key", str(key), "-o", str(tmp_path / "out"),
                 str(tmp_path / "tnef.eml"), str(tmp_path / "sealed.eml")]) == 0
    assert {"a.txt", "winmail.dat"} <= set(os.listdir(tmp_path / "out" / "tnef.parts"))
    assert "report.pdf" in os.listdir(tmp_path / "out" / "sealed.parts")
    assert main(["decode", "--no-fsync", "--no-tnef", "--no-smime", "-o", str(tmp_path / "plain"),
                 str(tmp_path / "tnef.eml"), str(tmp_path / "sealed.eml")]) == 0
    assert "a.txt" not in os.listdir(tmp_path / "plain" / "tnef.parts")
    assert "report.pdf" not in os.listdir(tmp_path / "plain" / "sealed.parts")
    assert main(["decode", "--smime-key", str(tmp_path / "missing.pem"), str(tmp_path / "tnef.eml")]) == 2
    assert "missing.pem cannot be read" in caplog.text
