"""Specification of ``mailingest examples [DIR] [--force]`` (mailingest.cli.examples)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mailingest.cli import main
from mailingest.cli.examples import NOT_EXAMPLES, shipped_examples

REPO_EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def repository_examples() -> dict:
    return {str(path.relative_to(REPO_EXAMPLES)): path.read_bytes()
            for path in sorted(REPO_EXAMPLES.glob("*/*.conf"))}


def written(directory: Path) -> dict:
    return {str(path.relative_to(directory)): path.read_bytes()
            for path in sorted(directory.rglob("*")) if path.is_file()}


def test_the_package_ships_every_example_of_the_repository_byte_for_byte():
    shipped = {example.relative: example.content for example in shipped_examples()}
    assert shipped == repository_examples()
    assert {"poll/mail.conf", "subscribe/downloademail.conf", "subscribe/decodeemail.conf"} <= set(shipped)


def test_sr3_files_of_passwords_and_site_settings_lying_among_the_examples_are_never_examples(tmp_path):
    for component in ("poll", "subscribe", "sender"):
        (tmp_path / component).mkdir()
        (tmp_path / component / "mine.conf").write_text("broker amqp://localhost/\n")
        (tmp_path / component / "credentials.conf").write_text("amqp://bunny:s3cr3t-Pw@localhost/\n")
        (tmp_path / component / "default.conf").write_text("declare env MAIL_USER=alice\n")
        (tmp_path / component / "admin.conf").write_text("admin amqp://root@localhost/\n")
    (tmp_path / "credentials.conf").write_text("imaps://alice:pw@mail/\n")
    found = {example.relative for example in shipped_examples(tmp_path)}
    assert found == {"poll/mine.conf", "sender/mine.conf", "subscribe/mine.conf"}
    assert NOT_EXAMPLES == {"credentials.conf", "default.conf", "admin.conf"}


def test_without_a_directory_it_lists_each_example_with_its_installed_path(capsys):
    assert main(["examples"]) == 0
    out = capsys.readouterr().out
    for example in shipped_examples():
        line = next(line for line in out.splitlines() if line.startswith(example.relative + " "))
        path = Path(line.split()[-1])
        assert path.is_file() and path.read_bytes() == example.content


def test_with_a_directory_it_writes_poll_and_subscribe_and_prints_the_next_commands(tmp_path, capsys):
    target = tmp_path / "new" / "configs"
    assert main(["examples", str(target)]) == 0
    assert written(target) == repository_examples()
    out = capsys.readouterr().out
    assert f"cd {target}" in out
    assert "sr3 add poll/mail.conf" in out
    assert "sr3 add subscribe/downloademail.conf" in out
    assert "sr3 start" in out


def test_the_next_commands_declare_the_poll_then_the_subscriber_by_name_before_starting(tmp_path, capsys):
    # A bare `sr3 declare` with several configs does nothing (sr3 wants --dangerWillRobinson=N),
    # and the subscriber's queue can only be bound once the poll has declared the exchange.
    assert main(["examples", str(tmp_path)]) == 0
    commands = [line.split("#")[0].strip() for line in capsys.readouterr().out.splitlines()]
    declares = [command for command in commands if command.startswith("sr3 declare")]
    assert declares == ["sr3 declare poll/mail", "sr3 declare subscribe/downloademail"]
    assert commands.index("sr3 declare subscribe/downloademail") < commands.index("sr3 start")


def test_a_file_that_differs_is_refused_and_nothing_at_all_is_written(tmp_path, capsys):
    (tmp_path / "poll").mkdir()
    (tmp_path / "poll" / "mail.conf").write_text("my own poll\n")
    assert main(["examples", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "--force" in err and str(tmp_path / "poll" / "mail.conf") in err
    assert written(tmp_path) == {"poll/mail.conf": b"my own poll\n"}


def test_force_replaces_files_that_differ(tmp_path):
    (tmp_path / "poll").mkdir()
    (tmp_path / "poll" / "mail.conf").write_text("my own poll\n")
    assert main(["examples", "--force", str(tmp_path)]) == 0
    assert written(tmp_path) == repository_examples()


def test_writing_again_over_unchanged_examples_succeeds_and_keeps_other_files(tmp_path):
    assert main(["examples", str(tmp_path)]) == 0
    (tmp_path / "subscribe" / "mine.conf").write_text("kept\n")
    mtimes = {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*.conf")}
    assert main(["examples", str(tmp_path)]) == 0
    assert {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*.conf")} == mtimes
    assert (tmp_path / "subscribe" / "mine.conf").read_text() == "kept\n"


def test_a_directory_that_cannot_be_written_is_one_clear_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory\n")
    assert main(["examples", str(blocker)]) == 1
    assert "cannot write into" in capsys.readouterr().err


def test_sr3_add_run_in_the_written_directory_copies_mailingest_s_examples_not_sarracenia_s(tmp_path):
    """``cd DIR && sr3 add poll/mail.conf`` tries DIR/poll/mail.conf before sarracenia's own poll/mail.conf."""
    assert main(["examples", str(tmp_path / "ex")]) == 0
    relatives = [example.relative for example in shipped_examples()]
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    sr3 = str(Path(sys.executable).parent / "sr3")
    subprocess.run([sr3, "add", *relatives], cwd=tmp_path / "ex", env=env, check=True, capture_output=True, timeout=120)
    for relative in relatives:
        installed = tmp_path / "config" / "sr3" / relative
        assert installed.read_bytes() == (tmp_path / "ex" / relative).read_bytes(), relative
    assert "callback mailingest.poll" in (tmp_path / "config" / "sr3" / "poll" / "mail.conf").read_text()


def test_a_reader_that_stops_early_ends_the_listing_quietly_without_a_traceback():
    """``mailingest examples | head -1``: the closed pipe ends the command, it does not crash it."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "plugins")}
    with subprocess.Popen([sys.executable, "-m", "mailingest", "examples"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as listing:
        assert listing.stdout is not None and listing.stderr is not None
        listing.stdout.readline()
        listing.stdout.close()  # the reader goes away after one line
        stderr = listing.stderr.read().decode()
        listing.wait(30)
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr
