"""Process plumbing shared by the private test servers.

A server runs in the foreground in its own session (process group), so stopping it can
signal the whole tree: SIGTERM first, SIGKILL after a grace period.  Every started server
is registered for an :py:mod:`atexit` stop, so an aborted test run leaves nothing behind.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Protocol, TypeVar

logger = logging.getLogger(__name__)


class Closable(Protocol):
    def close(self) -> None: ...


_live_lock = threading.Lock()
_live: dict[int, Closable] = {}


def register(server: Closable) -> None:
    """Close (stop) *server* at interpreter exit unless :py:func:`unregister` is called first."""
    with _live_lock:
        _live[id(server)] = server


def unregister(server: Closable) -> None:
    with _live_lock:
        _live.pop(id(server), None)


@atexit.register
def _stop_all() -> None:
    with _live_lock:
        servers = list(_live.values())
    for server in servers:
        try:
            server.close()
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            logger.warning("Could not stop %r at exit: %s", server, exc)


_Server = TypeVar("_Server", bound="ManagedServer")


class ManagedServer:
    """What every private test server shares: ``with Server(...) as s`` starts it (and cleans up
    if starting fails), leaving the block closes it, and :py:attr:`pid` says whether it runs.

    Subclasses implement :py:meth:`start` and :py:meth:`stop`, keep their running
    :py:class:`ServerProcess` in ``_process``, and call :py:func:`register` once set up.
    """

    _process: ServerProcess | None = None

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Stop, and forget the atexit safety net."""
        self.stop()
        unregister(self)

    @property
    def pid(self) -> int | None:
        """Process id of the server's main process (also its process group), or None when stopped."""
        return self._process.pid if self._process is not None and self._process.running() else None

    def __enter__(self: _Server) -> _Server:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class ServerProcess:
    """One foreground server process and its process group.

    :param name: what to call it in log and error messages (``"Dovecot"``).
    :param command: argv of the foreground server.
    :param console_path: file receiving the process's stdout and stderr.
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        console_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.console_path = console_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    def start(self) -> None:
        """Start the process in a new session; the console file is appended to."""
        if self.running():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        with open(self.console_path, "ab") as console:
            self._popen = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        logger.debug("Started %s (pid %s): %s", self.name, self._popen.pid, " ".join(self.command))

    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def exit_code(self) -> int | None:
        return self._popen.poll() if self._popen is not None else None

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the server, wait *grace* seconds, then SIGKILL its whole process group.

        Only the leader gets SIGTERM, so it shuts its children down in order (and they do
        not log being killed); SIGKILL then removes anything left in the group. Idempotent.
        """
        popen = self._popen
        if popen is None:
            return
        pgid = popen.pid  # session leader: its pid is the process group id
        if popen.poll() is None:
            popen.terminate()
            try:
                popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                logger.warning("%s (pid %s) ignored SIGTERM for %.0fs; killing it", self.name, pgid, grace)
        _killpg(pgid, signal.SIGKILL)  # also kills children left behind by the leader
        popen.wait()
        deadline = time.monotonic() + 5
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        self._popen = None
        logger.debug("Stopped %s (pid %s)", self.name, pgid)


def group_alive(pgid: int) -> bool:
    """True while a process of group *pgid* is still running (zombies do not count)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process just went away
        if int(fields[2]) == pgid and fields[0] != "Z":  # fields: state, ppid, pgrp, ...
            return True
    return False


def _killpg(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def greeting(host: str, port: int, prefix: bytes, timeout: float = 2.0) -> bool:
    """True if a TCP server on host:port answers with a first line starting with *prefix*."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            line = sock.makefile("rb").readline(1024)
    except OSError:
        return False
    return line.startswith(prefix)


def tail(path: Path, lines: int = 25) -> str:
    """The last *lines* lines of a log file, or a note that it does not exist."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:]) or f"({path} is empty)"


def wait_for(ready: Callable[[], bool], process: ServerProcess, timeout: float,
             interval: float = 0.1) -> str | None:
    """Poll *ready* until it returns True; return None, or why it gave up.

    Gives up early when the process has exited, so a bad configuration fails fast.
    """
    deadline = time.monotonic() + timeout
    while True:
        if ready():
            return None
        code = process.exit_code()
        if code is not None:
            return f"{process.name} exited with code {code} during start-up"
        if time.monotonic() > deadline:
            return f"{process.name} was not ready after {timeout:.0f}s"
        time.sleep(interval)
