"""What a poll has already announced, kept on disk so a restart announces nothing twice.

IMAP: per account and folder, the UIDVALIDITY and the highest UID examined (``last_uid``).
A later cycle searches only ``UID last_uid+1:*``, so its cost follows the new mail, not the
mailbox.  POP3: per account, the UIDLs announced that are still in the maildrop.  With
``mailReannounceAfter``, also the messages announced that may still be waiting for a download,
with when they were announced (see :mod:`mailingest.poller.reannounce`).  The file is JSON, replaced
atomically; it lives in the poll's sr3 cache directory
(``~/.cache/sr3/poll/<config>/mailingest_state.json``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from mailingest.atomic import write_atomically
from mailingest.poller.reannounce import Announced

logger = logging.getLogger(__name__)

STATE_FILE = "mailingest_state.json"


@dataclass
class FolderState:
    uidvalidity: int
    last_uid: int
    #: UID -> when it was announced, for the messages that may still be waiting (mailReannounceAfter)
    pending: dict[int, Announced] = field(default_factory=dict)
    #: no message of ``pending`` is due before this time (not stored; None: unknown, scan)
    next_due: float | None = field(default=None, compare=False)
    #: UID -> when it was first held: messages whose sender check met a DNS temperror, checked
    #: again at every cycle until they are decided (mailingest.poller.screening)
    held: dict[int, float] = field(default_factory=dict)


class PollState:
    """Folder high-water marks, keyed by account display (``scheme://user@host:port``) and folder.

    Entries are parsed once and kept; :meth:`save` writes the file only when something changed,
    so a quiet cycle costs no write even with many messages waiting (``pending``).  ``pending`` is
    stored grouped by announcement, ``[[at, repeats, [uid, ...]], ...]``: the messages of one
    cycle share one group."""

    def __init__(self, path: str, data: dict[str, dict[str, dict[str, Any]]] | None = None) -> None:
        """``data``: the content of a state file (a snapshot) instead of the file at ``path``."""
        self.path = path
        self._data: dict[str, dict[str, dict[str, Any]]] = self._load() if data is None else data
        self._folders: dict[tuple[str, str], FolderState | None] = {}
        self._maildrops: dict[tuple[str, str], tuple[set[str], dict[str, Announced]]] = {}
        self._dirty = False

    def _load(self) -> dict[str, dict[str, dict[str, Any]]]:
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            logger.error("poll state %s unreadable (%s): starting afresh; mail may be announced again",
                         self.path, exc)
            return {}
        return data if isinstance(data, dict) else {}

    def folder(self, account: str, folder: str) -> FolderState | None:
        """IMAP: the folder's committed state (treat it as read-only), None if never listed."""
        key = (account, folder)
        if key not in self._folders:
            entry = self._data.get(account, {}).get(folder)
            if not entry or "uidvalidity" not in entry:
                self._folders[key] = None
            else:
                pending = {uid: announced for uid, announced in _parse_pending(entry).items()
                           if isinstance(uid, int)}
                held = {int(uid): float(at) for uid, at in (entry.get("held") or {}).items()
                        if str(uid).isdigit() and isinstance(at, (int, float))}
                self._folders[key] = FolderState(uidvalidity=int(entry["uidvalidity"]),
                                                 last_uid=int(entry["last_uid"]), pending=pending, held=held)
        return self._folders[key]

    def set_folder(self, account: str, folder: str, state: FolderState) -> None:
        if self.folder(account, folder) == state:
            self._folders[(account, folder)] = state  # same content, maybe a fresher next_due
            return
        entry: dict[str, Any] = {"uidvalidity": state.uidvalidity, "last_uid": state.last_uid}
        if state.pending:
            entry["pending"] = _pending_json(state.pending)
        if state.held:
            entry["held"] = {str(uid): round(at, 3) for uid, at in sorted(state.held.items())}
        self._data.setdefault(account, {})[folder] = entry
        self._folders[(account, folder)] = state
        self._dirty = True

    def uidls(self, account: str, folder: str = "INBOX") -> set[str]:
        """POP3: the UIDLs already announced (and still in the maildrop at the last cycle)."""
        return self._maildrop(account, folder)[0]

    def pending_uidls(self, account: str, folder: str = "INBOX") -> dict[str, Announced]:
        """POP3: the UIDLs announced that may still be waiting for a download (mailReannounceAfter)."""
        return self._maildrop(account, folder)[1]

    def _maildrop(self, account: str, folder: str) -> tuple[set[str], dict[str, Announced]]:
        key = (account, folder)
        if key not in self._maildrops:
            entry = self._data.get(account, {}).get(folder) or {}
            self._maildrops[key] = (set(entry.get("uidls", [])), _parse_pending(entry))
        return self._maildrops[key]

    def set_uidls(self, account: str, uidls: set[str], folder: str = "INBOX",
                  pending: dict[str, Announced] | None = None) -> None:
        pending = pending or {}
        if self._maildrop(account, folder) == (uidls, pending):
            return
        entry: dict[str, Any] = {"uidls": sorted(uidls)}
        if pending:
            entry["pending"] = _pending_json(pending)
        self._data.setdefault(account, {})[folder] = entry
        self._maildrops[(account, folder)] = (set(uidls), dict(pending))
        self._dirty = True

    def entries(self) -> list[tuple[str, str, bool]]:
        """Every (account, folder, is_imap) this state knows."""
        return [(account, folder, "uidvalidity" in entry)
                for account, folders in self._data.items() if isinstance(folders, dict)
                for folder, entry in folders.items() if isinstance(entry, dict)]

    def to_text(self) -> str:
        """The state as its file holds it (JSON)."""
        return json.dumps(self._data, sort_keys=True)

    @property
    def dirty(self) -> bool:
        return self._dirty

    def save(self) -> None:
        """Write atomically (temp file, fsync, rename, directory fsync), if anything changed."""
        if not self._dirty:
            return
        directory = os.path.dirname(self.path) or "."
        os.makedirs(directory, exist_ok=True)
        text = self.to_text()
        write_atomically(self.path, [text.encode("utf-8")])
        self._dirty = False


def _pending_json(pending: dict[Any, Announced]) -> list[list[Any]]:
    groups: dict[Announced, list[Any]] = {}
    for key, announced in pending.items():
        groups.setdefault(announced, []).append(key)
    return [[round(announced.at, 3), announced.repeats, sorted(keys)] for announced, keys in sorted(groups.items())]


def _parse_pending(entry: dict[str, Any]) -> dict[Any, Announced]:
    """``pending`` of a state entry (keys as stored: UIDs as ints, UIDLs as strings); {} if unusable."""
    out: dict[Any, Announced] = {}
    groups = entry.get("pending")
    if not isinstance(groups, list):
        return out
    for group in groups:
        try:
            at, repeats, keys = group
            announced = Announced(at=float(at), repeats=int(repeats))
        except (TypeError, ValueError):
            continue
        for key in keys if isinstance(keys, list) else []:
            out[key] = announced
    return out
