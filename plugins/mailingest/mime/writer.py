"""Create files and sub-directories inside one directory: atomically, never following a
symlink, never overwriting anything.

All operations are relative to a directory file descriptor opened with ``O_NOFOLLOW``, so a
path component swapped for a symlink after the directory was opened cannot redirect a write.
A file is written to a hidden temporary name (``O_CREAT|O_EXCL|O_NOFOLLOW``), flushed and
fsync'ed, then published under its final name with ``link()``, which fails instead of
replacing an existing entry; the temporary name is then removed.  On file systems without hard
links the final name is first claimed with ``O_EXCL`` and the data moved over it with
``os.replace``.  A name that turns out to exist gets the next ``-N`` suffix
(:py:func:`mailingest.mime.safenames.unique_name`).  POSIX only (``dir_fd`` support).

A *private* directory (a decode's hidden staging directory and everything made inside it,
published whole by a rename) is seen by nobody before it is complete: there a file is created
under its final name directly (still ``O_EXCL|O_NOFOLLOW``) and the fsyncs are batched (up to
64 files written, then fsynced together, and all before the rename), which turns one journal
commit per file into one per batch.  Directories are closed as soon as they are complete, so
a message with thousands of attached messages does not hold thousands of descriptors.
"""
from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterable
from typing import Union

from mailingest.mime.safenames import name_key, unique_name

#: what :py:meth:`OutputDir.write` writes: bytes, or byte pieces one after the other
Data = Union[bytes, memoryview, Iterable[bytes]]
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC
_DIR = os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC
_NO_HARDLINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK}
#: files of a private directory kept open until fsynced together (well under the fd limit)
_SYNC_BATCH = 64


class OutputDir:
    """A directory we write into.  Use as a context manager, or call :py:meth:`close`.

    :param fd: a directory descriptor (owned: closed by :py:meth:`close`).
    :param path: its path, for reporting only.
    :param fsync: fsync each file and, on close, the directory.
    :param taken: names already present (lower-cased); read from the directory when None.
    """

    def __init__(self, fd: int, path: str, *, fsync: bool = True,
                 taken: set[str] | None = None, private: bool = False,
                 unsynced: list[int] | None = None) -> None:
        self.fd = fd
        self.path = path
        self.fsync = fsync
        self.taken: set[str] = taken if taken is not None else {name_key(n) for n in os.listdir(fd)}
        self._reserved: set[str] = set()
        self.created: list[tuple[str, OutputDir | None]] = []
        #: a staging directory (or one inside it): nobody else writes or reads it before
        #: :py:meth:`publish`, so files are created under their final names and fsynced in
        #: batches (one journal commit per batch instead of one per file)
        self.private = private
        self._unsynced: list[int] = unsynced if unsynced is not None else []  # shared with children

    @classmethod
    def open(cls, path: str, *, create: bool = True, fsync: bool = True,
             scan: bool = True) -> OutputDir:
        """Open the operator-chosen directory *path* (made, with parents, if *create*).

        :param scan: list the names already there; without it, clashes are still never
            overwritten (``O_EXCL``/``link``/``mkdir`` fail and the next name is tried), which
            saves listing a big download directory.
        """
        if create:
            os.makedirs(path, exist_ok=True)
        return cls(os.open(path, _DIR), path, fsync=fsync, taken=None if scan else set())

    def __enter__(self) -> OutputDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def join(self, name: str) -> str:
        """``os.path.join(self.path, name)`` (without its general case for a relative name in a
        directory path that needs a separator: one call per file written)."""
        path = self.path
        if path and not path.endswith("/") and not name.startswith("/"):
            return path + "/" + name
        return os.path.join(path, name)

    def reserve(self, name: str) -> str:
        """Claim a unique name now (e.g. ``metadata.json``); write it later with
        ``write(name, data, reserved=True)``."""
        final = unique_name(name, self.taken)
        self.taken.add(name_key(final))
        self._reserved.add(final)
        return final

    def write(self, name: str, data: Data, *, reserved: bool = False) -> str:
        """Write *data* (bytes, or an iterable of byte pieces written one after the other) under
        *name* (or the next free ``-N`` variant); return the name used.

        :param reserved: *name* was returned by :py:meth:`reserve`: use it as it is.
        """
        if reserved and name in self._reserved:
            self._reserved.discard(name)
            final = name
        else:
            final = unique_name(name, self.taken)
        if self.private:
            return self._write_private(name, final, data)
        tmp = self._write_temp(data)
        moved = False
        try:
            while True:
                try:
                    os.link(tmp, final, src_dir_fd=self.fd, dst_dir_fd=self.fd, follow_symlinks=False)
                    break
                except FileExistsError:
                    self.taken.add(name_key(final))
                    final = unique_name(name, self.taken)
                except OSError as exc:
                    if exc.errno not in _NO_HARDLINKS:
                        raise
                    final = self._claim(name, final)
                    os.replace(tmp, final, src_dir_fd=self.fd, dst_dir_fd=self.fd)
                    moved = True
                    break
        finally:
            if not moved:
                _unlink(tmp, self.fd)
        self.taken.add(name_key(final))
        self.created.append((final, None))
        return final

    def mkdir(self, name: str) -> OutputDir:
        """Create a new sub-directory *name* (or a ``-N`` variant) and open it."""
        final = unique_name(name, self.taken)
        while True:
            try:
                os.mkdir(final, 0o777, dir_fd=self.fd)
                break
            except FileExistsError:
                self.taken.add(name_key(final))
                final = unique_name(name, self.taken)
        self.taken.add(name_key(final))
        fd = os.open(final, _DIR | os.O_NOFOLLOW, dir_fd=self.fd)
        child = OutputDir(fd, self.join(final), fsync=self.fsync, taken=set(), private=self.private,
                          unsynced=self._unsynced if self.private else None)
        self.created.append((final, child))
        return child

    def mkdir_staging(self, name: str) -> OutputDir:
        """Create the hidden sub-directory *name* to fill before :py:meth:`publish` gives it its
        final name.  A leftover of that exact name can only be a dead writer's: it is removed."""
        try:
            os.mkdir(name, 0o777, dir_fd=self.fd)
        except FileExistsError:
            shutil.rmtree(name, dir_fd=self.fd)  # fd-based: never follows a symlink
            os.mkdir(name, 0o777, dir_fd=self.fd)
        fd = os.open(name, _DIR | os.O_NOFOLLOW, dir_fd=self.fd)
        child = OutputDir(fd, self.join(name), fsync=self.fsync, taken=set(), private=True)
        self.created.append((name, child))
        return child

    def publish(self, child: OutputDir, name: str) -> str:
        """Rename the staging directory *child* (closed first: its files and itself fsynced) to
        *name*, or the next free ``-N`` variant; return the name used.  Readers see either no
        directory or the complete one."""
        staging = os.path.basename(child.path)
        child.close()
        final = unique_name(name, self.taken)
        while True:
            if not _exists(final, self.fd):
                try:
                    os.rename(staging, final, src_dir_fd=self.fd, dst_dir_fd=self.fd)
                    break
                except OSError as exc:  # appeared meanwhile (ENOTEMPTY, EEXIST, ENOTDIR)
                    if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                        raise
            self.taken.add(name_key(final))
            final = unique_name(name, self.taken)
        self.taken.add(name_key(final))
        self.created = [(final if n == staging else n, c) for n, c in self.created]
        child.path = self.join(final)
        return final

    def remove_created(self) -> None:
        """Best effort: delete what this object created (after a failure part-way)."""
        for name, child in reversed(self.created):
            try:
                if child is None:
                    os.unlink(name, dir_fd=self.fd)
                else:
                    try:
                        child.close()
                    finally:
                        shutil.rmtree(name, dir_fd=self.fd)  # fd-based: never follows a symlink
            except OSError:
                continue
        self.created.clear()

    def close(self) -> None:
        if self.fd < 0:
            return
        try:
            self._sync_pending()
            for _name, child in self.created:
                if child is not None:
                    child.close()
            if self.fsync and self.created:
                os.fsync(self.fd)
        finally:
            for fd in self._unsynced:
                os.close(fd)
            self._unsynced.clear()
            os.close(self.fd)
            self.fd = -1

    def _write_private(self, name: str, final: str, data: Data) -> str:
        """Create *final* (``O_EXCL``, never following a link) and write *data*; the fsync
        waits for :py:meth:`_sync_pending`, before the directory is published."""
        while True:
            try:
                fd = os.open(final, _NEW_FILE, 0o666, dir_fd=self.fd)
                break
            except FileExistsError:
                self.taken.add(name_key(final))
                final = unique_name(name, self.taken)
        self.taken.add(name_key(final))
        self.created.append((final, None))
        try:
            for piece in _pieces(data):
                view = memoryview(piece)
                while view:
                    view = view[os.write(fd, view):]
        except BaseException:
            os.close(fd)
            raise
        if self.fsync:
            self._unsynced.append(fd)
            if len(self._unsynced) >= _SYNC_BATCH:
                self._sync_pending()
        else:
            os.close(fd)
        return final

    def _sync_pending(self) -> None:
        """fsync the files written since the last call: the first fsync writes them all out."""
        try:
            for fd in self._unsynced:
                os.fsync(fd)
        finally:
            for fd in self._unsynced:
                os.close(fd)
            self._unsynced.clear()

    def _write_temp(self, data: Data) -> str:
        while True:
            tmp = ".mailingest-%s.tmp" % os.urandom(6).hex()
            try:
                fd = os.open(tmp, _NEW_FILE, 0o666, dir_fd=self.fd)
                break
            except FileExistsError:
                continue
        try:
            with os.fdopen(fd, "wb") as fh:
                for piece in _pieces(data):
                    fh.write(piece)
                fh.flush()
                if self.fsync:
                    os.fsync(fh.fileno())
        except BaseException:
            _unlink(tmp, self.fd)
            raise
        return tmp

    def _claim(self, name: str, final: str) -> str:
        while True:
            try:
                os.close(os.open(final, _NEW_FILE, 0o666, dir_fd=self.fd))
                return final
            except FileExistsError:
                self.taken.add(name_key(final))
                final = unique_name(name, self.taken)


def _pieces(data: Data) -> Iterable[bytes | memoryview]:
    return (data,) if isinstance(data, (bytes, bytearray, memoryview)) else data


def _exists(name: str, dir_fd: int) -> bool:
    try:
        os.lstat(name, dir_fd=dir_fd)
        return True
    except FileNotFoundError:
        return False


def _unlink(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
