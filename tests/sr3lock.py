"""One machine, several pytest-xdist workers, one Unix user: keep ``sr3 stop`` to its own flows.

``sr3 stop`` (and ``sr3 sanity``) signal every sr3 process of the user that does not belong to a
config under their own ``XDG_CONFIG_HOME`` ("strays", ``sarracenia/sr.py`` ``_filter_sr_proc`` and
``stop``): run in one worker, they would stop the polls and subscribers of the other workers'
tests.  So every integration test holds a shared lock while it runs, and a test that runs
``sr3 stop`` holds it exclusively (marker ``sr3_stop``); other tests stop their flows by pid.

The lock has writer preference (a gate in front of the data lock), so an exclusive test does not
wait for the whole run to drain: new shared holders queue behind it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def sr3_processes(directory: Path, exclusive: bool) -> Iterator[None]:
    """Hold the lock in *directory* (common to all workers of a run) while the block runs."""
    directory.mkdir(parents=True, exist_ok=True)
    gate_fd = os.open(directory / "sr3-gate.lock", os.O_RDWR | os.O_CREAT, 0o600)
    data_fd = os.open(directory / "sr3-processes.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(gate_fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            fcntl.flock(data_fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        finally:
            fcntl.flock(gate_fd, fcntl.LOCK_UN)
        yield
    finally:
        fcntl.flock(data_fd, fcntl.LOCK_UN)
        os.close(data_fd)
        os.close(gate_fd)
