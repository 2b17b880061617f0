"""Decode speed and memory, measured the same way before and after a change (issue 18).

    python -m bench.decodespeed [--repeat 5] [--big-mb 50] [--only speed,memory] [--base DIR/plugins]

* speed: the shared corpus (../shared/corpus, 287 messages) decoded three ways, each best of N
  runs, no fsync: ``decode_file`` over every message in one process (CPU and wall seconds, as
  inside a running subscriber), ``mailingest decode`` over every message in one process (row 7a
  of ``bench/run.py``, interpreter start-up included), and ``ripmime -i FILE -d DIR`` once per
  message (as ripmime is used); each variant's code is compiled to byte code first, as
  ``bench/run.py`` does and pip does for an installed package.  Wall and CPU seconds (of the child processes: less moved by
  other load than wall time).  The ratios are taken between runs interleaved in one session,
  so a noisy machine moves both sides.
* memory: a synthetic message of ``--big-mb`` MB with one base64 attachment (and one with a
  quoted-printable one, and one attached message of that size) decoded in a fresh process:
  peak RSS (``VmHWM``) above the RSS after the imports, divided by the message size.

Prints one line per figure; nothing is written outside a temporary directory.
"""
from __future__ import annotations

import argparse
import base64
import compileall
import json
import os
import quopri
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.corpus import MESSAGES, linked

_CHILD = r"""
import json, os, sys, time
def hwm():
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM:")) / 1024
def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
from mailingest.mime.layout import DecodeSettings, decode_file
import hashlib
base = hwm()
cpu = time.process_time()
result = decode_file(sys.argv[1], sys.argv[2], settings=DecodeSettings(fsync=False, identity="sha512"))
print(json.dumps({"base_mb": base, "peak_mb": hwm(), "cpu": time.process_time() - cpu,
                  "files": len(result.files)}))
"""


def corpus_files() -> list[Path]:
    return sorted(MESSAGES.rglob("*.eml"))


def in_process(files: list[Path], scratch: Path) -> tuple[float, float]:
    """(wall, cpu) seconds of ``decode_file`` over *files* in this process, no fsync."""
    from mailingest.mime.layout import DecodeSettings, decode_file

    settings = DecodeSettings(fsync=False)
    out = Path(tempfile.mkdtemp(prefix="inproc-", dir=scratch))  # nothing deleted before it is timed
    wall, cpu = time.perf_counter(), time.process_time()
    for i, f in enumerate(files):
        try:
            decode_file(str(f), str(out / str(i)), settings=settings)
        except Exception:  # noqa: BLE001 - a refusal costs time too; counted the same both sides
            pass
    return time.perf_counter() - wall, time.process_time() - cpu


def _env(plugins: str) -> dict[str, str]:
    repo = str(Path(__file__).resolve().parents[1])
    return dict(os.environ, PYTHONPATH=os.pathsep.join([plugins, repo]))


def in_process_of(plugins: str, scratch: Path) -> tuple[float, float]:
    """:py:func:`in_process` run by the code in *plugins*, in a process of its own."""
    done = subprocess.run([sys.executable, "-m", "bench.decodespeed", "--in-process", str(scratch)],
                          capture_output=True, text=True, env=_env(plugins), timeout=3600, check=True)
    wall, cpu = json.loads(done.stdout.splitlines()[-1])
    return wall, cpu


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cli(plugins: str, files: list[Path], scratch: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of one ``mailingest decode`` process over *files* (row 7a)."""
    out = Path(tempfile.mkdtemp(prefix="cli-", dir=scratch))  # nothing deleted before it is timed
    links = linked(files, scratch / "in")
    started, cpu = time.perf_counter(), _children_cpu()
    subprocess.run([sys.executable, "-m", "mailingest", "decode", "-q", "--force", "--no-fsync", "-o", str(out),
                    *links], capture_output=True, timeout=3600, check=False, env=_env(plugins))
    return time.perf_counter() - started, _children_cpu() - cpu


def ripmime(files: list[Path], scratch: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of ``ripmime`` run once per message."""
    out = Path(tempfile.mkdtemp(prefix="ripmime-", dir=scratch))  # nothing deleted before it is timed
    binary = shutil.which("ripmime") or "ripmime"
    started, cpu = time.perf_counter(), _children_cpu()
    for i, f in enumerate(files):
        target = out / str(i)
        target.mkdir(parents=True)
        subprocess.run([binary, "-i", str(f), "-d", str(target)], capture_output=True, timeout=120, check=False)
    return time.perf_counter() - started, _children_cpu() - cpu


def speed(variants: dict[str, str], repeat: int, scratch: Path) -> None:
    files = corpus_files()
    mb = sum(f.stat().st_size for f in files) / 1e6
    best: dict[str, float] = {}

    def keep(key: str, value: float) -> None:
        best[key] = min(best.get(key, value), value)

    for _ in range(repeat):  # interleaved: each round runs every side once
        wall, cpu = ripmime(files, scratch)
        keep("ripmime wall", wall)
        keep("ripmime CPU", cpu)
        for name, plugins in variants.items():
            wall, cpu = in_process_of(plugins, scratch)
            keep(name + " in-process wall", wall)
            keep(name + " in-process CPU", cpu)
            wall, cpu = cli(plugins, files, scratch)
            keep(name + " one CLI process wall", wall)
            keep(name + " one CLI process CPU", cpu)
    print("corpus: %d messages, %.1f MB, best of %d (rates, higher is better; wall against ripmime's wall, "
          "CPU against its CPU)" % (len(files), mb, repeat))
    for key, seconds in best.items():
        theirs = best["ripmime " + key.rsplit(" ", 1)[1]]
        print("  %-32s %6.2f s  %6.1f MB/s  %.2fx ripmime" % (key, seconds, mb / seconds, theirs / seconds))


def big_messages(size: int) -> dict[str, bytes]:
    """Messages of about *size* bytes: one base64 attachment, one quoted-printable attachment,
    one attached message holding a base64 attachment."""
    blob = os.urandom(size * 3 // 4)
    b64 = base64.encodebytes(blob)
    head = (b"From: a@example.org\nTo: b@example.org\nSubject: big\nMessage-ID: <big@example.org>\n"
            b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"B\"\n\n"
            b"--B\nContent-Type: text/plain\n\nsee attached\n")
    one = head + (b"--B\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n"
                  b"Content-Disposition: attachment; filename=\"big.bin\"\n\n") + b64 + b"--B--\n"
    text = bytes(32 + (b % 95) for b in os.urandom(size // 2))
    qp = head + (b"--B\nContent-Type: text/csv\nContent-Transfer-Encoding: quoted-printable\n"
                 b"Content-Disposition: attachment; filename=\"big.csv\"\n\n") + quopri.encodestring(text) + b"\n--B--\n"
    inner = one.replace(b"boundary=\"B\"", b"boundary=\"C\"").replace(b"--B", b"--C")
    attached = head + (b"--B\nContent-Type: message/rfc822\nContent-Disposition: attachment; filename=\"fwd.eml\"\n\n"
                       ) + inner + b"--B--\n"
    return {"base64": one, "quoted-printable": qp, "attached-message": attached}


def memory(variants: dict[str, str], size_mb: int, repeat: int, scratch: Path) -> None:
    for kind, raw in big_messages(size_mb * 1_000_000).items():
        path = scratch / ("big-%s.eml" % kind)
        path.write_bytes(raw)
        reports: dict[str, list[dict]] = {name: [] for name in variants}
        for i in range(repeat):
            for name, plugins in variants.items():
                out = scratch / ("big-%s-%d" % (kind, i))
                done = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(out)], capture_output=True,
                                      text=True, env=_env(plugins), timeout=600, check=False)
                shutil.rmtree(out, ignore_errors=True)
                if done.returncode != 0:
                    print("  %s %s: failed: %s" % (name, kind, done.stderr[-500:]))
                    continue
                reports[name].append(json.loads(done.stdout.splitlines()[-1]))
        for name, found in reports.items():
            if not found:
                continue
            best = min(found, key=lambda r: r["peak_mb"] - r["base_mb"])
            added = best["peak_mb"] - best["base_mb"]
            print("  %-5s %-17s %5.1f MB: peak RSS %6.1f MB, %6.1f MB above the imports (%.2fx the message), "
                  "%.2f s CPU, %d files" % (name, kind, len(raw) / 2**20, best["peak_mb"], added,
                                             added * 2**20 / len(raw), min(r["cpu"] for r in found), best["files"]))
        path.unlink()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--big-mb", type=int, default=50)
    parser.add_argument("--only", default="speed,memory")
    parser.add_argument("--base", metavar="PLUGINS", help="also measure the code in this plugins directory "
                        "(e.g. a `git archive` of the base commit), interleaved with this tree's")
    parser.add_argument("--tmp", metavar="DIR", help="scratch space (e.g. /dev/shm: the decoders, not the disk)")
    parser.add_argument("--in-process", metavar="SCRATCH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_process:
        print(json.dumps(in_process(corpus_files(), Path(args.in_process))))
        return 0
    variants = {"new": str(Path(__file__).resolve().parents[1] / "plugins")}
    if args.base:
        variants = {"base": args.base, **variants}
    for plugins in variants.values():  # byte code, as an installed package has it (and row 7a)
        compileall.compile_dir(plugins, quiet=1)
    with tempfile.TemporaryDirectory(prefix="decodespeed-", dir=args.tmp) as tmp:
        scratch = Path(tmp)
        if "speed" in args.only:
            speed(variants, args.repeat, scratch)
        if "memory" in args.only:
            print("memory: fresh process per message, best of %d" % args.repeat)
            memory(variants, args.big_mb, args.repeat, scratch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
