"""Free loopback ports for private test servers.

A port is taken below the kernel's ephemeral range (``ip_local_port_range``) when there is room
there: the kernel hands ports of that range to every client socket (a TCP connection's source
port, a DNS query's UDP socket), so a server stopped and started again on a port of that range
could find it taken meanwhile (``Address already in use``: seen with dnsmasq restarted while the
poll's resolver was sending queries).  A candidate is checked free for TCP and UDP, then
*claimed* with a small file in a shared directory so that two processes (parallel test sessions, a benchmark next
to a test run) never hand out the same port before the server has bound it.  Claims are
kept for the life of the process, so a server restarted with :py:meth:`restart` finds its
ports still reserved; they are dropped at exit, and claims of dead processes are reclaimed.
"""

from __future__ import annotations

import atexit
import errno
import logging
import os
import random
import socket
import tempfile
import threading
from pathlib import Path

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
CLAIM_DIR = Path(tempfile.gettempdir()) / "mailingest-port-claims"
_ATTEMPTS = 200

_lock = threading.Lock()
_claimed: set[int] = set()


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that is free on *host* and claimed by this process.

    :param host: the address the server will bind; loopback by default.
    :raises RuntimeError: if no port could be found and claimed.
    """
    below = _below_ephemeral()
    for _ in range(_ATTEMPTS):
        port = random.randrange(*below) if below else _kernel_port(host)
        if _bindable(host, port) and _claim(port):
            return port
    raise RuntimeError(
        f"Could not find a free TCP port on {host} after {_ATTEMPTS} attempts; "
        f"check for leftover servers and stale claims in {CLAIM_DIR}"
    )


#: the lowest port handed out below the ephemeral range (above the well-known and common ones)
_LOWEST = 10000


def _below_ephemeral() -> tuple[int, int] | None:
    """``(lowest, first ephemeral port)`` when at least 1,000 ports lie between them, else None."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return (_LOWEST, low) if low - _LOWEST >= 1000 else None


def _kernel_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


def _bindable(host: str, port: int) -> bool:
    """Nothing holds *port* on *host* for TCP or UDP now."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """Return *count* distinct free, claimed ports on *host*."""
    return [free_port(host) for _ in range(count)]


def release_port(port: int) -> None:
    """Drop this process's claim on *port* (missing claims are ignored)."""
    with _lock:
        if port not in _claimed:
            return
        _claimed.discard(port)
    try:
        (CLAIM_DIR / str(port)).unlink()
    except FileNotFoundError:
        pass


def _claim(port: int) -> bool:
    with _lock:
        if port in _claimed:
            return False
        if not _ensure_claim_dir():
            _claimed.add(port)  # no shared directory: in-process uniqueness only
            return True
        path = CLAIM_DIR / str(port)
        for _ in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                if _claim_is_alive(path):
                    return False
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as claim:
                claim.write(str(os.getpid()))
            _claimed.add(port)
            return True
        return False


def _claim_is_alive(path: Path) -> bool:
    try:
        pid = int(path.read_text() or "0")
    except (OSError, ValueError):
        return False  # unreadable or half-written: treat as stale
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True


def _ensure_claim_dir() -> bool:
    try:
        CLAIM_DIR.mkdir(mode=0o1777, exist_ok=True)
        if CLAIM_DIR.stat().st_uid == os.geteuid():
            os.chmod(CLAIM_DIR, 0o1777)  # mkdir's mode is masked by umask
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        logger.debug("Port claims disabled, cannot use %s: %s", CLAIM_DIR, exc)
        return False
    return os.access(CLAIM_DIR, os.W_OK | os.X_OK)


@atexit.register
def _release_all() -> None:
    for port in list(_claimed):
        release_port(port)
