"""sr3's credentials.conf as mailingest reads it: checked line by line, and read again when it changes.

sr3 reads credentials.conf once, when a process starts.  mailingest reads the same file itself:

* **line by line, checked first.** A line whose URL does not read as one URL (a ``#``, ``?`` or
  ``/`` written unencoded in its password makes the rest of the line a fragment, a query or a
  path, and the port a piece of the password) is reported by its line number, with what to
  percent-encode, and skipped.  Nothing of the line is logged but its scheme.  The other lines,
  and the accounts they serve, keep working;
* **again when it changes** (modification time, size or inode), so a password fixed while a
  poll or download runs is used at their next attempt, without a restart; the change is logged
  once.

Lines that pass the check are handed to sr3's own parser (:class:`CredentialDB`), so options
such as ``tls``, ``bearer_token`` and ``login_method`` mean exactly what they mean to sr3.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import urllib.parse
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger(__name__)

FILE_NAME = "credentials.conf"
#: what the messages tell operators to percent-encode in a user name or password
ENCODINGS = "% as %25, @ as %40, : as %3A, / as %2F, # as %23, ? as %3F, space as %20"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
#: how sr3 3.3.1 redacts the line it reports for a '#' in a password (sarracenia/config/credentials.py)
_SR3_REDACTED = re.compile(r"(://[^:@/]+:)[^@]+(@)")


def line_problem(line: str) -> str | None:
    """Why the credentials.conf *line* cannot be used as written, or None (also for blank and
    comment lines).  The answer never quotes the line.
    """
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    url = text.split()[0]
    if not _SCHEME.match(url):
        return "it does not start with a URL (scheme://user:password@host/)"
    unreadable = "its URL does not read as scheme://user:password@host:port/"
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError when the port is not a number
    except ValueError:
        return unreadable
    if parts.fragment or parts.query or "#" in url or "?" in url or "@" in parts.path or not parts.hostname:
        return unreadable
    return None


def sr3_logs_it_in_full(line: str) -> bool:
    """Whether sr3 3.3.1's own parser, reading credentials.conf as a flow starts (before any
    plugin), logs the unusable *line*, or the part of it after a space, as it is: ``bad
    credential 1 (<line>)`` when it finds no user name and password in the URL, ``bad credential
    option (<rest>)`` when the line has more words, and for a ``#`` whose fragment holds the ``@``
    the line with the password hidden only up to its first ``@``.  A URL in which it finds both
    a user name and a password it takes silently.
    """
    words = line.split()
    if not words:
        return False
    if len(words) > 1:
        return True
    try:
        url = urllib.parse.urlsplit(words[0])
        user, password = url.username, url.password
    except ValueError:
        return True
    if url.fragment and "@" in url.fragment and "@" not in url.netloc:  # sr3 redacts up to the first @
        return _SR3_REDACTED.sub(r"\1<secret>\2", words[0]).count("@") > 1
    return not (user and password)


def scheme_of(line: str) -> str:
    """The scheme of a line's URL (``imaps``), the only part of a line a message may show."""
    match = _SCHEME.match(line.strip())
    return match.group(1).lower() if match else "?"


class CredentialsFile:
    """The credentials of one credentials.conf, read at first use and again when the file changes.

    :param path: the file; when it does not exist, *fallback* (sr3's ``options.credentials``) is used.
    """

    def __init__(self, path: str, fallback: Any = None) -> None:
        self.path = path
        self.fallback = fallback
        #: incremented each time the file is (re)read; callers compare it to know a change
        self.generation = 0
        self._signature: tuple[int, int, int, int] | None = None
        self._database: Any = None

    @classmethod
    def of(cls, options: Any) -> CredentialsFile:
        """The credentials.conf sr3 reads for *options* (``<sr3 config dir>/credentials.conf``)."""
        import sarracenia.config

        path = os.path.join(sarracenia.config.get_user_config_dir(), FILE_NAME)
        return cls(path, getattr(options, "credentials", None))

    def database(self) -> Any:
        """An sr3 ``CredentialDB`` of the file's usable lines (re-read if the file changed since),
        or the fallback when the file does not exist or cannot be read."""
        try:
            info = os.stat(self.path)
        except OSError:
            return self.fallback
        signature = (info.st_mtime_ns, info.st_ctime_ns, info.st_size, info.st_ino)
        if signature == self._signature and self._database is not None:
            return self._database
        try:
            with open(self.path, encoding="utf-8", errors="replace") as handle:
                lines = handle.readlines()
        except OSError as exc:
            logger.error("cannot read %s (%s); using the credentials read at start", self.path, exc.strerror)
            return self._database if self._database is not None else self.fallback
        if self._signature is not None:
            logger.info("%s changed: read again; the next login of each account uses it", self.path)
        self._signature = signature
        self._database = self._parse(lines)
        self.generation += 1
        return self._database

    def _parse(self, lines: list[str]) -> Any:
        from sarracenia.config.credentials import CredentialDB

        database = CredentialDB()
        for number, line in enumerate(lines, start=1):
            problem = line_problem(line)
            if problem is not None:
                shown = ("; sr3 itself logs this line in full when a flow starts (its 'bad credential' lines): "
                         "if one has started with it, change that password" if sr3_logs_it_in_full(line) else "")
                logger.error("%s line %d (%s://...) is ignored: %s; percent-encode the special characters of its "
                             "user name and password (%s), see docs/authentication.md%s",
                             self.path, number, scheme_of(line), problem, ENCODINGS, shown)
                continue
            with _sr3_credentials_quiet():  # it would log a line it rejects in full, password included
                database._parse(line)
        return database


def sr3_default_config() -> Any:
    """sr3's default options (``sarracenia.config.default_config()``) for a mailingest command.

    The first sr3 ``Config`` of a process reads credentials.conf, and sr3 3.3.1 then logs some
    malformed lines in full, password included (``bad credential 1 (imaps://carol:a/b?c@...)`` for
    a ``/`` or ``?`` left unencoded in a password, ``bad credential option (...)`` for a space).
    Those messages are held back here: :class:`CredentialsFile` reports the same lines by their
    number, without their content.  (An sr3 flow reads the file before it loads any plugin, so
    there mailingest cannot hold them back: docs/authentication.md.)
    """
    import sarracenia.config

    with _sr3_credentials_quiet():
        return sarracenia.config.default_config()


@contextlib.contextmanager
def _sr3_credentials_quiet() -> Iterator[None]:
    sr3_logger = logging.getLogger("sarracenia.config.credentials")
    was_disabled = sr3_logger.disabled
    sr3_logger.disabled = True
    try:
        yield
    finally:
        sr3_logger.disabled = was_disabled
