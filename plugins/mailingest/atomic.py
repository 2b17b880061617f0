"""Write a file so that a crash at any moment leaves either no file or the whole file.

Bytes go to a hidden temporary name in the target directory, are fsynced, renamed onto the final
name, and the directory is fsynced so the rename itself survives a power cut.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

TEMP_MARK = ".mailingest-"
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_FADVISE = getattr(os, "posix_fadvise", None)


def _host_tag() -> str:
    return "".join(c if c.isalnum() else "_" for c in socket.gethostname())[:40] or "host"


def temp_name(final_path: str) -> str:
    """``.<name>.mailingest-<host>-<pid>.tmp`` beside the final file (hidden, unique per writer)."""
    directory, name = os.path.split(final_path)
    return os.path.join(directory, f".{name}{TEMP_MARK}{_host_tag()}-{os.getpid()}.tmp")


def write_atomically(final_path: str, chunks: Iterable[bytes], mtime: float | None = None) -> int:
    """Write ``chunks`` to ``final_path`` atomically; returns the byte count.

    The final name appears only once the data is durable.  ``mtime`` (epoch seconds) is set
    before the rename.
    """
    tmp, written = _write_temp(final_path, chunks, mtime, sync=True)
    try:
        os.replace(tmp, final_path)
    except BaseException:
        _remove(tmp)
        raise
    fsync_directory(os.path.dirname(final_path) or ".")
    return written


def write_temp(final_path: str, chunks: Iterable[bytes], mtime: float | None = None) -> tuple[str, int]:
    """The first half of :py:func:`write_atomically`: ``chunks`` in the hidden temp file of
    ``final_path`` (:py:func:`temp_name`), ``mtime`` set, nothing synced or renamed yet.
    Returns (temp path, byte count); on failure the temp file is removed.  Publish it with
    :py:func:`publish_together`."""
    return _write_temp(final_path, chunks, mtime, sync=False)


def _write_temp(final_path: str, chunks: Iterable[bytes], mtime: float | None, sync: bool) -> tuple[str, int]:
    tmp = temp_name(final_path)
    written = 0
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | _CLOEXEC, 0o644)
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
                written += len(chunk)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
        if mtime is not None:
            os.utime(tmp, (mtime, mtime))
    except BaseException:
        _remove(tmp)
        raise
    return tmp, written


def publish_together(pairs: Sequence[tuple[str, str]]) -> dict[str, OSError]:
    """The second half of :py:func:`write_atomically` for many files at once: every temp file
    made durable (:py:func:`sync_together`), each renamed onto its final name, then each
    directory fsynced once.  Returns the final paths that failed, with their error (their
    temp files removed); a final name exists and is durable for every other pair.

    A failing sync fails the whole group: no final name appears for any of them.
    """
    failed: dict[str, OSError] = {}
    try:
        sync_together(tmp for tmp, _final in pairs)
    except OSError as exc:
        for tmp, final in pairs:
            _remove(tmp)
            failed[final] = exc
        return failed
    renamed = []
    for tmp, final in pairs:
        try:
            os.replace(tmp, final)
            renamed.append(final)
        except OSError as exc:
            _remove(tmp)
            failed[final] = exc
    directories: dict[str, list[str]] = {}
    for final in renamed:
        directories.setdefault(os.path.dirname(final) or ".", []).append(final)
    for directory, finals in directories.items():
        try:
            fsync_directory(directory)
        except OSError as exc:  # renamed, but the rename may not survive a power cut
            failed.update((final, exc) for final in finals)
    return failed


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_together(files: Iterable[str], directories: Iterable[str] = ()) -> None:
    """Make ``files`` (their data) and then ``directories`` (their entries) durable, as a group.

    Writeback of every file is started first (``POSIX_FADV_DONTNEED`` starts it without
    waiting, and drops only pages already clean), then the files are fsynced from a few threads
    at once, then the directories: the file system folds fsyncs that wait together into one
    journal commit (ext4's group commit), where one fsync after the other costs one commit each.
    200 files of 20 kB while other processes write to the disk: 20-55 ms this way, 0.3-1.1 s
    one after the other.

    A file or directory that is gone meanwhile (a later stage moved it) is skipped.

    :raises OSError: a file or directory could not be synced (the group is not durable).
    """
    fds: list[int] = []
    try:
        for path in dict.fromkeys(files):
            try:
                fd = os.open(path, os.O_RDONLY | _CLOEXEC | os.O_NOFOLLOW)
            except FileNotFoundError:
                continue
            fds.append(fd)
            if _FADVISE is not None:
                _FADVISE(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        _fsync_all(fds)
    finally:
        for fd in fds:
            os.close(fd)
    fds = []
    try:
        for directory in dict.fromkeys(directories):
            try:
                fds.append(os.open(directory, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC))
            except FileNotFoundError:
                continue
        _fsync_all(fds)
    finally:
        for fd in fds:
            os.close(fd)


#: threads that fsync at once in :py:func:`sync_together`
SYNC_THREADS = 16


#: this process's kept thread pools, by name: (the pid that started them, the pool)
_pools: dict[str, tuple[int, ThreadPoolExecutor]] = {}


def _fsync_all(fds: list[int]) -> None:
    if len(fds) <= 1:
        for fd in fds:
            os.fsync(fd)
        return
    for _done in _threads().map(os.fsync, fds):  # re-raises the first OSError
        pass


def _threads() -> ThreadPoolExecutor:
    """The process's fsync threads, started on first use and kept: a subscriber syncs a group
    in every pass, and starting up to SYNC_THREADS threads each time cost it more CPU than the
    fsyncs on a fast disk."""
    return process_pool("mailingest-fsync", SYNC_THREADS)


def process_pool(name: str, workers: int) -> ThreadPoolExecutor:
    """This process's thread pool *name* (its threads' name prefix), started on first use and kept.
    A forked child starts its own (threads do not survive a fork)."""
    from concurrent.futures import ThreadPoolExecutor  # here: a `mailingest decode` with --no-fsync never loads it

    kept = _pools.get(name)
    if kept is None or kept[0] != os.getpid():
        kept = _pools[name] = (os.getpid(), ThreadPoolExecutor(workers, thread_name_prefix=name))
    return kept[1]




#: a temp file untouched (content or metadata) for this long is stale even if its pid is in use again
STALE_AFTER_SECONDS = 3600.0


def remove_stale_temps(directory: str) -> int:
    """Delete this host's temp files (and decode staging directories) whose writer no longer
    runs (after a kill -9); returns the count.

    A writer counts as gone when its pid no longer exists, is a zombie (killed but not reaped,
    as under a container init that reaps nothing), or when the file has not changed for
    STALE_AFTER_SECONDS (the pid was reused).  Temp files of other hosts sharing the directory
    are left alone.
    """
    removed = 0
    mine = f"{TEMP_MARK}{_host_tag()}-"
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0
    now = time.time()
    for name in names:
        if not (name.startswith(".") and mine in name and name.endswith(".tmp")):
            continue
        path = os.path.join(directory, name)
        pid_text = name.rsplit(mine, 1)[1][: -len(".tmp")]
        writer_runs = pid_text.isdigit() and int(pid_text) != os.getpid() and process_running(int(pid_text))
        try:
            info = os.lstat(path)
            if writer_runs and now - info.st_ctime < STALE_AFTER_SECONDS:
                continue
            if stat.S_ISDIR(info.st_mode):  # a decode's staging directory
                shutil.rmtree(path)
            else:
                os.unlink(path)
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def process_running(pid: int) -> bool:
    """True while ``pid`` exists and has not exited; a zombie (exited, not reaped) is not running."""
    import psutil  # only the decode journal asks: not imported by every `mailingest decode` start

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:  # ZombieProcess included
        return False
    except psutil.AccessDenied:  # it exists; whether it is a zombie is not ours to see
        return True


def process_start(pid: int) -> float | None:
    """When ``pid`` started (seconds since the epoch, psutil's ``create_time``), or None when it
    does not run or cannot be asked."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def process_start_ticks(pid: int) -> int | None:
    """When ``pid`` started in the unit of ``/proc/<pid>/stat`` field 22 (clock ticks since boot),
    for records written in that unit by earlier versions; None when unknown."""
    started = process_start(pid)
    if started is None:
        return None
    try:
        ticks_per_second = os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError):  # not POSIX: no such unit
        return None
    import psutil

    return round((started - psutil.boot_time()) * ticks_per_second)
