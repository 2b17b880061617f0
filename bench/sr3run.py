"""Run ``sr3 start`` with several instances (``sr3 foreground`` runs only one) and stop them.

``sr3 start`` launches one ``instance.py`` process per instance and exits; they stay in the
process group of the ``sr3 start`` process started here (a new session), so stopping kills
that group, after SIGTERM to the pids the instances wrote.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
from pathlib import Path

from mailingest.atomic import process_running
from tests.sr3env import SR3, Sr3Home, instance_pids, stop_instances

logger = logging.getLogger(__name__)


class Sr3Instances:
    """``sr3 start component/config`` under *home*, with *env* (e.g. an extra PYTHONPATH)."""

    def __init__(self, home: Sr3Home, target: str, env: dict[str, str]) -> None:
        self.home = home
        self.target = target
        self.component, self.config = target.split("/", 1)
        self.env = env
        self._launcher: subprocess.Popen[bytes] | None = None

    def declare(self) -> None:
        done = subprocess.run([SR3, "declare", self.target], env=self.env, capture_output=True, text=True,
                              timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"sr3 declare {self.target} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")

    def start(self) -> None:
        """Launch ``sr3 start`` and return at once (it takes a second or two to exit by itself)."""
        self._launcher = subprocess.Popen([SR3, "start", self.target], env=self.env, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True)

    @property
    def pid_dir(self) -> Path:
        return self.home.cache_dir / self.component / self.config

    def pids(self) -> list[int]:
        return instance_pids(self.pid_dir)

    def alive(self) -> bool:
        """True while an instance runs, or while ``sr3 start`` has not written the pid files yet."""
        pids = self.pids()
        return any(process_running(pid) for pid in pids) if pids else self._launcher is not None

    def logs(self) -> list[Path]:
        return sorted((self.home.cache_dir / "log").glob(f"{self.component}_{self.config}_*.log"))

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs())

    def stop(self, grace: float = 3.0) -> None:
        stop_instances(self.pid_dir, grace, kill=True)
        if self._launcher is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._launcher.pid, signal.SIGKILL)
            self._launcher.wait(30)

    def __enter__(self) -> Sr3Instances:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
