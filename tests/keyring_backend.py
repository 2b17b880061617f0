"""Keyring backends for tests: in memory, and a JSON file shared between processes.

Select the file backend in a child process (an ``sr3 foreground``, the ``mailingest``
command) through the environment::

    PYTHONPATH=<repo>  PYTHON_KEYRING_BACKEND=tests.keyring_backend.FileKeyring
    MAILINGEST_TEST_KEYRING=<dir>/test.keyring.json

The file necessarily holds secrets in clear text: the session's secret scan skips
``*.keyring.json`` files (tests/secret_scan.py).
"""

from __future__ import annotations

import json
import os
import tempfile

from jaraco.classes.properties import classproperty
from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError

ENV_FILE = "MAILINGEST_TEST_KEYRING"
SUFFIX = ".keyring.json"


class MemoryKeyring(KeyringBackend):
    """Secrets in a dict; ``set_keyring(MemoryKeyring())`` in a test, restore afterwards."""

    @classproperty
    def priority(cls) -> float:  # noqa: N805 - keyring's classproperty
        raise RuntimeError("used only when selected explicitly")  # keeps keyring's autodetection away

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[str, str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get(f"{service}\0{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[f"{service}\0{username}"] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.entries.pop(f"{service}\0{username}", None) is None:
            raise PasswordDeleteError(f"no {service} entry for {username}")


class FileKeyring(KeyringBackend):
    """Secrets in the JSON file named by ``$MAILINGEST_TEST_KEYRING`` (or *path*), replaced atomically."""

    @classproperty
    def priority(cls) -> float:  # noqa: N805 - keyring's classproperty
        if os.environ.get("PYTHON_KEYRING_BACKEND", "").endswith(".FileKeyring"):
            return 1
        raise RuntimeError("used only when selected with PYTHON_KEYRING_BACKEND")

    def __init__(self, path: str | None = None) -> None:
        super().__init__()
        self.path = path or os.environ.get(ENV_FILE) or ""
        if not self.path.endswith(SUFFIX):
            raise ValueError(f"FileKeyring path must end in {SUFFIX} (set ${ENV_FILE}), not {self.path!r}")

    def _load(self) -> dict[str, str]:
        try:
            with open(self.path) as handle:
                return dict(json.load(handle))
        except FileNotFoundError:
            return {}

    def _save(self, entries: dict[str, str]) -> None:
        fd, staging = tempfile.mkstemp(dir=os.path.dirname(self.path), suffix=SUFFIX + ".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(entries, handle)
        os.replace(staging, self.path)

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(f"{service}\0{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        entries = self._load()
        entries[f"{service}\0{username}"] = password
        self._save(entries)

    def delete_password(self, service: str, username: str) -> None:
        entries = self._load()
        if entries.pop(f"{service}\0{username}", None) is None:
            raise PasswordDeleteError(f"no {service} entry for {username}")
        self._save(entries)
