"""Session-wide secret check: no secret a test used may appear in any file the session wrote.

Tests (and fixtures) call :func:`register_secret` with every password, access token, refresh
token and client secret they create; ``tests/conftest.py`` runs :func:`find_leaks` over
pytest's base temporary directory when the session ends and fails naming the file.  Both the
contents and the names of files (and directories) are searched, as written and
percent-encoded.

Files that must hold secrets are skipped, on purpose and nothing else:

* Dovecot's passwd-files (``passwd.d/``): the server has to know its users' passwords.  The
  passwords found there are also registered, so every Dovecot account is covered even when a
  test forgets to register it;
* sr3's ``credentials.conf``: where operators put passwords, by design;
* the test keyring files (``*.keyring.json``, see tests/keyring_backend.py);
* OAuth2 secret files and private keys the tests write on purpose (``*.secret.json``, ``*.secret.pem``,
  0600 like real ones).

The *contents* of raw messages (``*.eml``) and of decoded attachments (files under ``*.parts/``
other than body.txt, body.html and metadata.json) are the test mail itself, copied byte for byte
from the server: they are checked by name only.  Scanning hundreds of megabytes of base64 for
hundreds of secrets made the session's teardown take minutes.

The search itself (:class:`SecretIndex`) costs the same for ten secrets or ten thousand.  Under
pytest-xdist every worker is its own process: it registers its own secrets and scans its own
base temporary directory.
"""

from __future__ import annotations

import os
import re
import threading
import urllib.parse
from collections.abc import Iterable, Iterator
from pathlib import Path

MIN_LENGTH = 8  # shorter strings ("guest") would match by chance

_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(secret: str | None) -> None:
    """Remember *secret*; the end-of-session scan fails if any file contains it."""
    if secret and len(secret) >= MIN_LENGTH:
        with _lock:
            _secrets.add(secret)


def registered() -> set[str]:
    with _lock:
        return set(_secrets)


def excluded(path: Path) -> bool:
    """Files that hold secrets by design (see the module docstring)."""
    name = path.name
    return ("passwd.d" in path.parts or name == "credentials.conf" or ".keyring.json" in name
            or name.endswith((".secret.json", ".secret.pem")))


def harvest_dovecot_passwords(root: Path) -> None:
    """Register the password of every ``passwd.d/<user>`` file (``user:{PLAIN}password::...``)."""
    for passwd in root.rglob("passwd.d/*"):
        try:
            lines = passwd.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            fields = line.split(":")
            if len(fields) > 1 and fields[1].startswith("{PLAIN}"):
                register_secret(fields[1][len("{PLAIN}"):])


def _files(root: Path) -> Iterator[Path]:
    """Every file and directory under *root*, never following symlinks (Dovecot's Maildirs are
    linked in from outside basetemp: test mail, not something the code under test wrote)."""
    for directory, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            path = Path(directory, name)
            if path.is_symlink() or excluded(path):
                continue
            yield path


_PARTS_WRITTEN_BY_US = {"body.txt", "body.html", "metadata.json"}


def _mail_content(path: Path) -> bool:
    """Raw or decoded test mail (see the module docstring): checked by name only."""
    if path.suffix == ".eml":
        return True
    return any(part.endswith(".parts") for part in path.parts[:-1]) and path.name not in _PARTS_WRITTEN_BY_US


class SecretIndex:
    """Finds registered secrets in bytes at a cost that does not grow with their number.

    Every secret (and its percent-encoded form) is a *needle*.  A needle only contains bytes of
    the needles' alphabet, so it lies inside a run of such bytes at least ``MIN_LENGTH`` long;
    one fixed regex finds those runs, and the ``MIN_LENGTH`` bytes at each position of a run are
    looked up among the needles' first ``MIN_LENGTH`` bytes (a candidate is then compared whole).
    The work is proportional to the bytes scanned, never to the number of secrets or of their
    lengths: a regex alternation of every secret, tried at every position, made the session's
    teardown take more than a minute with thousands of short-lived OAuth2 tokens.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        self._needles: dict[bytes, str] = {}
        for secret in secrets:
            for form in (secret, urllib.parse.quote(secret, safe="")):
                needle = form.encode()
                if len(needle) >= MIN_LENGTH:
                    self._needles[needle] = secret
        #: the needles by their first MIN_LENGTH bytes: one lookup per position, whatever their lengths
        self._by_prefix: dict[bytes, list[bytes]] = {}
        for needle in self._needles:
            self._by_prefix.setdefault(needle[:MIN_LENGTH], []).append(needle)
        alphabet = sorted({byte for needle in self._needles for byte in needle})
        char_class = b"".join(re.escape(bytes([byte])) for byte in alphabet)
        self._runs = re.compile(b"[" + char_class + b"]{%d,}" % MIN_LENGTH) if alphabet else None

    def __bool__(self) -> bool:
        return bool(self._needles)

    def first_in(self, data: bytes) -> str | None:
        """The first registered secret found in *data*, or None."""
        if self._runs is None:
            return None
        by_prefix = self._by_prefix
        for run in self._runs.finditer(data):
            text = run.group()
            for start in range(len(text) - MIN_LENGTH + 1):
                candidates = by_prefix.get(text[start:start + MIN_LENGTH])
                if candidates:
                    for needle in candidates:
                        if text.startswith(needle, start):
                            return self._needles[needle]
        return None


def find_leaks(root: Path, secrets: Iterable[str] | None = None) -> list[str]:
    """``"<path>: <how>"`` for every file under *root* whose name or contents hold a secret.

    :param secrets: the secrets to look for; by default every registered one (after the
        passwords of Dovecot's passwd-files under *root* are registered).
    """
    if secrets is None:
        harvest_dovecot_passwords(root)
        secrets = registered()
    index = SecretIndex(secrets)
    if not index:
        return []
    leaks = []
    for path in _files(root):
        secret = index.first_in(os.fsencode(path.name))
        if secret is not None:
            leaks.append(f"{path}: file name contains a secret ({secret[:3]}...)")
        if not path.is_file() or _mail_content(path):
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        secret = index.first_in(data)
        if secret is not None:
            leaks.append(f"{path}: contains a secret ({secret[:3]}..., {len(secret)} characters)")
    return leaks
