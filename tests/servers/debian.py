"""Make sure the server binaries the test suite needs are installed.

On Debian (and derivatives) run as root, a missing binary is installed with
``apt-get install -y`` after one ``apt-get update`` per process.  Anywhere else a missing
binary raises :py:class:`RuntimeError` that names the package to install, so a test that
needs a real server fails with an instruction instead of being skipped.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path

logger = logging.getLogger(__name__)

#: sbin directories are often missing from a non-root PATH, yet hold dovecot and rabbitmq.
SEARCH_PATH = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"]
)
_APT_TIMEOUT = 1800.0

_lock = threading.Lock()
_apt_updated = False


def find_binary(name: str) -> str | None:
    """Return the path of executable *name* (a bare name or an absolute path), or None."""
    if os.path.isabs(name):
        return name if os.access(name, os.X_OK) else None
    return shutil.which(name, path=SEARCH_PATH)


def ensure_packages(binary_to_package: Mapping[str, str]) -> dict[str, str]:
    """Install the Debian packages of missing binaries; return each binary's path.

    :param binary_to_package: e.g. ``{"dovecot": "dovecot-imapd", "doveadm": "dovecot-core"}``.
    :raises RuntimeError: when a binary is missing and cannot be installed here (not root,
        not Debian, or apt-get failed); the message names the packages to install.
    """
    missing = {b: p for b, p in binary_to_package.items() if find_binary(b) is None}
    if missing:
        _install(missing)
    paths: dict[str, str] = {}
    for binary in binary_to_package:
        path = find_binary(binary)
        if path is None:
            raise RuntimeError(
                f"{binary} is still missing after installing {binary_to_package[binary]}; "
                f"install it by hand (apt-get install {binary_to_package[binary]})"
            )
        paths[binary] = path
    return paths


def _install(missing: Mapping[str, str]) -> None:
    packages = sorted(set(missing.values()))
    wanted = ", ".join(f"{b} (package {p})" for b, p in missing.items())
    hint = f"apt-get install -y {' '.join(packages)}"
    if not Path("/etc/debian_version").exists() or shutil.which("apt-get") is None:
        raise RuntimeError(f"Missing {wanted}. This is not Debian: install the equivalent of: {hint}")
    if os.geteuid() != 0:
        raise RuntimeError(f"Missing {wanted}. Run as root, or install them first: sudo {hint}")
    global _apt_updated
    with _lock:
        if not _apt_updated:
            _apt("update")
            _apt_updated = True
        logger.warning("Installing Debian packages for the test servers: %s", " ".join(packages))
        _apt("install", "-y", *packages)


def _apt(*args: str) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    command = ["apt-get", "-o", "DPkg::Lock::Timeout=300", *args]
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=_APT_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{' '.join(command)} timed out after {_APT_TIMEOUT:.0f}s") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
        raise RuntimeError(
            f"{' '.join(command)} failed with exit code {done.returncode}; "
            f"fix apt and retry. Output:\n{tail}"
        )
