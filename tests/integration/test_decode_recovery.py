"""A decode survives a crash (issue 10, part 3), end to end: a real download+decode subscriber
(`sr3 foreground`), real Dovecot and RabbitMQ, the worker killed with SIGKILL at random moments
and restarted.  sr3 acknowledges a notice before `after_work`, where the decode runs; without
the pending-decode journal a kill there leaves an .eml that nothing ever decodes or announces.

Once, the worker's decode process (`mailDecodeProcess`) is killed alone first: the worker decodes
the pass it held itself and starts another.

At the end every .eml has one complete parts directory (metadata.json matches the files by size
and SHA-256) and every file in it was announced (checked with an independent pika consumer on
the subscriber's post exchange)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import time
from pathlib import Path

import pytest

from tests.helpers import imap_raw, kill_minus_nine, make_home, wait_until
from tests.integration.test_download_depth import announce_all, setup_subscriber
from tests.mailgen import sample_message
from tests.sr3env import REPO, NoticeCollector
from tests.sr3hold import HOLD_VARIABLE, reached

pytestmark = pytest.mark.integration

TOTAL = 80
KILLS = 12


def downloaded_emls(directory: Path) -> list[Path]:
    """Every downloaded .eml, wherever the layout puts it (attached messages inside *.parts excluded)."""
    return sorted(p for p in everything_in(directory) if p.name.endswith(".eml")
                  and not any(part.endswith(".parts") for part in p.relative_to(directory).parts[:-1]))


def everything_in(directory: Path) -> list[Path]:
    """Files and directories under ``directory``, tolerating entries that vanish meanwhile."""
    found = []
    for parent, dirs, files in os.walk(directory):  # os.walk skips what disappears under it
        found.extend(Path(parent, name) for name in dirs + files)
    return found


def parts_dir(eml: Path) -> Path:
    return eml.with_suffix(".parts")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def complete_files(directory: Path) -> set[Path]:
    """The files of a parts directory when its metadata.json matches them all (recursively); else
    raises AssertionError saying what is wrong."""
    meta = json.loads((directory / "metadata.json").read_text("utf-8"))
    files = {directory / "metadata.json"}
    for entry in meta["parts"]:
        path = directory / entry["file"]
        assert path.is_file(), f"{path} listed but missing"
        assert path.stat().st_size == entry["size"] and sha256(path) == entry["sha256"], f"{path} differs"
        files.add(path)
        if entry.get("decodedInto"):
            files |= complete_files(directory / entry["decodedInto"])
    on_disk = {p for p in directory.rglob("*") if p.is_file()}
    assert on_disk == files, f"{directory}: files not in metadata.json: {sorted(map(str, on_disk - files))[:5]}"
    return files


def decoded_count(directory: Path) -> int:
    return sum(1 for eml in downloaded_emls(directory) if (parts_dir(eml) / "metadata.json").exists())


def snapshot(directory: Path) -> tuple:
    """What a worker has visibly done so far: .eml files, parts directories, staging directories."""
    names = [p.name for p in everything_in(directory)]
    return (sum(n.endswith(".eml") for n in names), sum(n.endswith(".parts") for n in names),
            sum(".parts.mailingest-" in n for n in names))




def test_a_worker_killed_at_random_moments_leaves_every_message_decoded_and_announced(tmp_path, rabbitmq,
                                                                                       mail_account, monkeypatch):
    # The first kill lands, for sure, where a pass's downloads are durable and their decode has not
    # started (a worker held there by tests/sr3hold.py); the others at random moments.
    hold = tmp_path / "hold"
    monkeypatch.setenv(HOLD_VARIABLE, str(hold))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    mail_account.server.deliver_many(mail_account.user,
                                      (sample_message(i, size_hint=1_000_000) for i in range(TOTAL)))
    raw_by_uid = imap_raw(mail_account)
    home = make_home(tmp_path, rabbitmq, mail_account)
    directory = tmp_path / "mail"
    post = f"amqp://{rabbitmq.user}@{rabbitmq.host}:{rabbitmq.port}/"
    announced = NoticeCollector(rabbitmq.url, "xs_decode_kill_parts")
    try:
        setup_subscriber(home, rabbitmq, tmp_path, "xs_decode_kill",
                         "flowCallback tests.sr3hold.HoldBeforeDecode\n"
                         # the decode process (the default at instances 1 where a core is free), on
                         # whatever the machine's cores: a kill also lands while it holds a pass
                         "callback mailingest.decode\nmailDecodeProcess on\nbatch 2\nprefetch 2\nlogLevel info\n"
                         f"post_broker {post}\npost_exchange xs_decode_kill_parts\n"
                         f"post_baseDir {directory}\npost_baseUrl file:{directory}\n", name="dd")
        announce_all(home, rabbitmq, mail_account, "xs_decode_kill", TOTAL)

        rng = random.Random(10)
        kills, after_kill = 0, []
        while kills < KILLS and decoded_count(directory) < TOTAL:
            before = snapshot(directory)
            held = kills == 0
            if held:
                hold.touch()
            with home.foreground("subscribe/dd", log_name=f"dd_{kills}.log") as worker:
                if held:
                    wait_until(lambda worker=worker: reached(hold).exists() or not worker.alive(),
                               timeout=60, what="the worker held between its download and its decode")
                else:
                    # kill once the worker visibly works (a new .eml, parts or staging directory),
                    # a random moment later: in a download, a decode, between them or before a post
                    wait_until(lambda before=before, worker=worker: (snapshot(directory) != before
                                                                     or not worker.alive()),
                               timeout=60, what="the restarted worker to make progress")
                assert worker.alive(), worker.log_text()[-3000:]
                if kills == 1:
                    kill_decode_process(worker)
                if not held:
                    time.sleep(rng.uniform(0.0, 0.3))
                kill_minus_nine(worker)
            hold.unlink(missing_ok=True)
            kills += 1
            emls = downloaded_emls(directory)
            after_kill.append((len(emls), sum(not parts_dir(e).exists() for e in emls)))

        def finished() -> bool:
            emls = downloaded_emls(directory)
            if len(emls) < TOTAL or decoded_count(directory) < TOTAL:
                return False
            announced.drain(settle=0.2)
            return expected_rel_paths(directory) <= {n["relPath"] for n in announced.notices}

        with home.foreground("subscribe/dd", log_name="dd_final.log"):
            wait_until(finished, timeout=120, interval=0.5, what="every message decoded and announced")
        announced.drain(settle=0.5)
    finally:
        announced.close()

    print(f"\n(.eml files, of them without parts) after each kill -9: {after_kill}")
    assert kills >= 10, f"only {kills} kills: the run must be long enough to kill it at least 10 times"
    assert after_kill[0][1] > 0, f"the held worker's kill left no .eml without its parts: {after_kill[0]}"

    emls = downloaded_emls(directory)
    assert len(emls) == TOTAL
    for eml in emls:
        uid = int(eml.name.split(".")[1])
        assert sha256(eml) == hashlib.sha256(raw_by_uid[uid]).hexdigest(), eml.name
        complete_files(parts_dir(eml))
        doubles = sorted(p.name for p in eml.parent.glob(eml.name[:-len(".eml")] + "-*.parts"))
        assert not doubles, f"one parts directory per message, not also {doubles}"
    leftovers = [p for p in directory.rglob(".*")]
    assert not leftovers, f"staging or temp files left: {leftovers[:5]}"

    by_rel: dict[str, list[dict]] = {}
    for notice in announced.notices:
        by_rel.setdefault(notice["relPath"], []).append(notice)
    missing = expected_rel_paths(directory) - set(by_rel)
    assert not missing, f"{len(missing)} decoded files never announced, e.g. {sorted(missing)[:5]}"
    for eml in emls:
        rel = str(eml.relative_to(directory))
        assert any(n.get("mailDecode", {}).get("status") == "decoded" for n in by_rel[rel]), rel
        for part in complete_files(parts_dir(eml)):
            notice = by_rel[str(part.relative_to(directory))][-1]
            assert notice["size"] == part.stat().st_size
            assert notice["mailParent"]["relPath"] == rel


DECODE_PROCESS = re.compile(r"decoding in a process of its own \(pid (\d+)")


def kill_decode_process(worker) -> None:
    """SIGKILL the worker's decode process alone, and wait until the worker has started another
    (it decodes the pass the dead one held itself: the messages must all arrive all the same)."""
    wait_until(lambda: DECODE_PROCESS.search(worker.log_text()) or not worker.alive(), timeout=30,
               what="the worker's decode process")
    found = DECODE_PROCESS.search(worker.log_text())
    assert found, worker.log_text()[-3000:]
    os.kill(int(found.group(1)), signal.SIGKILL)
    wait_until(lambda: len(DECODE_PROCESS.findall(worker.log_text())) > 1 or not worker.alive(), timeout=60,
               what="the worker to start a new decode process")
    assert worker.alive(), worker.log_text()[-3000:]
    assert "starting a new decode process" in worker.log_text()


def expected_rel_paths(directory: Path) -> set[str]:
    """Every .eml and every file of its parts directory, relative to post_baseDir."""
    rels = set()
    for eml in downloaded_emls(directory):
        rels.add(str(eml.relative_to(directory)))
        if parts_dir(eml).exists():
            rels |= {str(p.relative_to(directory)) for p in parts_dir(eml).rglob("*") if p.is_file()}
    return rels
