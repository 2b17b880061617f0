"""Write messages straight into Maildir++ folders, as a delivery agent would.

Pure file-system helpers for :py:class:`tests.servers.dovecot.DovecotServer`: a message is
written to ``tmp/`` and renamed into ``new/`` (or ``cur/`` with ``:2,S`` when seen).  File
names follow Dovecot's own pattern, including ``S=`` (size) and ``W=`` (size with CRLF line
ends) so Dovecot need not open the file to report RFC822.SIZE, and they sort in delivery
order, which is the order Dovecot assigns UIDs in.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import time
from collections.abc import Iterable
from pathlib import Path

_sequence = itertools.count()
_host_tag = re.sub(r"[^A-Za-z0-9-]", "_", socket.gethostname()) or "localhost"


def folder_dir(maildir_root: Path, folder: str) -> Path:
    """Directory of *folder* under ``~/Maildir``: INBOX is the root, ``A/B`` is ``.A.B``.

    :raises ValueError: for names Maildir++ with ``/`` as separator cannot hold.
    """
    if folder.upper() == "INBOX":
        return maildir_root
    if not folder or "." in folder or folder.startswith("/") or folder.endswith("/"):
        raise ValueError(f"Folder {folder!r}: use '/' as the hierarchy separator and no dots")
    return maildir_root / ("." + folder.replace("/", "."))


def make_dirs(paths: Iterable[Path], owner: tuple[int, int] | None) -> None:
    """Create missing directories (mode 0700) in order, chowning new ones to *owner* (uid, gid)."""
    for path in paths:
        if path.is_dir():
            continue
        path.mkdir(mode=0o700, exist_ok=True)
        if owner is not None:
            os.chown(path, *owner)


def make_maildir(directory: Path, owner: tuple[int, int] | None) -> None:
    """Create *directory* with its ``cur``, ``new`` and ``tmp`` subdirectories."""
    make_dirs([directory, directory / "cur", directory / "new", directory / "tmp"], owner)


def virtual_size(raw: bytes) -> int:
    """Size of *raw* once every bare LF is sent as CRLF (what IMAP reports as RFC822.SIZE)."""
    return len(raw) + raw.count(b"\n") - raw.count(b"\r\n")


def write_message(directory: Path, raw: bytes, *, seen: bool = False,
                  internaldate: float | None = None, owner: tuple[int, int] | None = None) -> Path:
    """Store *raw* untouched in the Maildir *directory*; return the final path.

    :param internaldate: epoch seconds for the file mtime (Dovecot's INTERNALDATE).
    """
    now = time.time()
    name = (f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(_sequence)}.{_host_tag}"
            f",S={len(raw)},W={virtual_size(raw)}")
    staging = directory / "tmp" / name
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if owner is not None:
            os.fchown(fd, *owner)
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    if internaldate is not None:
        os.utime(staging, (internaldate, internaldate))
    final = directory / "cur" / f"{name}:2,S" if seen else directory / "new" / name
    os.rename(staging, final)
    return final


def others_can_traverse(path: Path) -> bool:
    """True if every directory from / down to *path* has the o+x bit."""
    return all(p.stat().st_mode & 0o001 for p in (path, *path.parents))
