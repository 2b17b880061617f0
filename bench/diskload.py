"""Another process that keeps the disk busy: the condition of row 2b (download on a busy disk).

It writes 1 MiB blocks to a scratch file in the directory given and fsyncs every 8 MiB, without
pause, starting over at 256 MiB so the space it takes stays bounded: the kind of neighbour a
mail host has (a backup, a log shipper, a database).  ``python bench/diskload.py DIR`` runs it
until killed; :func:`busy_disk` starts and stops it around a block of code.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

BLOCK = 1 << 20
SYNC_EVERY = 8
WRAP_AT = 256


def write_forever(directory: Path) -> None:
    path = directory / "diskload.scratch"
    block = os.urandom(BLOCK)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    written = 0
    while True:
        os.write(fd, block)
        written += 1
        if written % SYNC_EVERY == 0:
            os.fsync(fd)
        if written >= WRAP_AT:
            os.lseek(fd, 0, os.SEEK_SET)
            written = 0


@contextlib.contextmanager
def busy_disk(directory: Path) -> Iterator[subprocess.Popen]:
    """Keep the disk under *directory* busy while the block runs."""
    directory.mkdir(parents=True, exist_ok=True)
    writer = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), str(directory)])
    try:
        deadline = time.monotonic() + 10
        scratch = directory / "diskload.scratch"
        while time.monotonic() < deadline and not (scratch.exists() and scratch.stat().st_size >= SYNC_EVERY * BLOCK):
            time.sleep(0.05)  # the load is on before the measured work starts
        yield writer
    finally:
        writer.kill()
        writer.wait()
        with contextlib.suppress(FileNotFoundError):
            (directory / "diskload.scratch").unlink()


if __name__ == "__main__":
    write_forever(Path(sys.argv[1]))
