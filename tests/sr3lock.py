"""One machine, several pytest-xdist workers, one Unix user: keep ``sr3 stop`` to its own flows.

``sr3 stop`` (and ``sr3 sanity``) signal every sr3 process of the user that no config under their
own ``XDG_CONFIG_HOME`` claims ("strays", ``sarracenia/sr.py`` ``_filter_sr_proc`` and ``stop``).
A process whose command line says ``foreground`` (or ``declare``, ``status`` ...) is claimed
and never signalled: what matters are the daemons ``sr3 start`` launched in other tests' homes.
So a test that runs ``sr3 start`` (marker ``sr3_daemons``) holds a lock shared by all xdist
workers while it runs, and a test that runs ``sr3 stop`` holds it exclusively (marker
``sr3_stop``); other tests, ``sr3 foreground`` flows included, need no lock, and stop what they
started by pid.  :func:`check_command` (called by ``Sr3Home.run``) refuses ``sr3 start`` or
``sr3 stop`` in a test without the marker, so a missing marker fails at once, not as a flaky kill.

The lock has writer preference (a gate in front of the data lock), so an exclusive test does not
wait for the whole run to drain: new shared holders queue behind it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

#: sr3 commands that launch daemons (need the lock shared) and that signal strays (exclusive)
STARTS_DAEMONS = frozenset({"start"})
SIGNALS_STRAYS = frozenset({"stop", "sanity", "restart"})

#: "shared" or "exclusive" while the current test holds the lock; None otherwise
_held: str | None = None
#: set by tests/conftest.py: under pytest, ``check_command`` enforces the markers
enforced = False


@contextlib.contextmanager
def sr3_processes(directory: Path, exclusive: bool) -> Iterator[None]:
    """Hold the lock in *directory* (common to all workers of a run) while the block runs."""
    global _held
    directory.mkdir(parents=True, exist_ok=True)
    gate_fd = os.open(directory / "sr3-gate.lock", os.O_RDWR | os.O_CREAT, 0o600)
    data_fd = os.open(directory / "sr3-processes.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(gate_fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            fcntl.flock(data_fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        finally:
            fcntl.flock(gate_fd, fcntl.LOCK_UN)
        _held = "exclusive" if exclusive else "shared"
        yield
    finally:
        _held = None
        fcntl.flock(data_fd, fcntl.LOCK_UN)
        os.close(data_fd)
        os.close(gate_fd)


def check_command(command: str) -> None:
    """Raise when the running test may not run ``sr3 <command>`` (see the module docstring)."""
    if not enforced:
        return
    if command in SIGNALS_STRAYS and _held != "exclusive":
        raise RuntimeError(f"`sr3 {command}` signals the sr3 daemons of every other test: mark the test "
                           "@pytest.mark.sr3_stop (tests/sr3lock.py), or stop its flows by pid")
    if command in STARTS_DAEMONS and _held is None:
        raise RuntimeError(f"`sr3 {command}` launches daemons that another test's `sr3 stop` would kill: "
                           "mark the test @pytest.mark.sr3_daemons (tests/sr3lock.py)")
