"""Decode one .eml in a fresh process and report what it cost, as one JSON line on stdout:
``{"status", "files", "error", "wall", "cpu", "maxrss_mb"}``.

    python -m tests.fuzz.measure FILE.eml [--no-fsync]
    python -m tests.fuzz.measure --loop DIR [--no-fsync]   # decode every .eml in DIR in turn,
                                                           # reporting RSS after each (a subscriber)

Run as a subprocess by the fuzz tests and the benchmark, so the peak RSS is the decode's alone.
"""
from __future__ import annotations

import json
import os
import sys
import time

from mailingest.errors import MimeError
from mailingest.mime.layout import DecodeSettings, decode_file


def peak_rss_mb() -> float:
    """This process's peak RSS since its exec (``VmHWM``).  Not ``ru_maxrss``: Linux carries that
    over from the forked parent, so a child of a 400 MB pytest worker would report 400 MB."""
    with open("/proc/self/status") as fh:
        kilobytes = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    return kilobytes / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def decode_one(path: str, settings: DecodeSettings) -> dict[str, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    report: dict[str, object] = {"status": None, "files": 0, "error": None}
    try:
        result = decode_file(path, settings=settings)
        report.update(status=result.status, files=len(result.files))
    except MimeError as exc:  # a documented refusal (larger than max_decoded_bytes)
        report.update(status="not-decoded", error=str(exc))
    report.update(wall=time.perf_counter() - wall, cpu=time.process_time() - cpu)
    return report


def main(argv: list[str]) -> int:
    settings = DecodeSettings(fsync="--no-fsync" not in argv)
    args = [a for a in argv if not a.startswith("--")]
    if "--loop" in argv:
        names = sorted(n for n in os.listdir(args[0]) if n.endswith(".eml"))
        for i, name in enumerate(names, 1):
            report = decode_one(os.path.join(args[0], name), settings)
            print(json.dumps({"n": i, "rss_mb": round(current_rss_mb(), 1), "status": report["status"]}),
                  flush=True)
        return 0
    report = decode_one(args[0], settings)
    report["maxrss_mb"] = peak_rss_mb()
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
