"""What a poll has already announced, kept on disk so a restart announces nothing twice.

IMAP: per account and folder, the UIDVALIDITY and the highest UID examined (``last_uid``).
A later cycle searches only ``UID last_uid+1:*``, so its cost follows the new mail, not the
mailbox.  POP3: per account, the UIDLs announced that are still in the maildrop.  With
``mailReannounceAfter``, also the messages announced that may still be waiting for a download,
with when they were announced (see :mod:`mailingest.reannounce`).  The file is JSON, replaced
atomically; it lives in the poll's sr3 cache directory
(``~/.cache/sr3/poll/<config>/mailingest_state.json``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Set

from mailingest.atomic import write_atomically
from mailingest.reannounce import Announced

logger = logging.getLogger(__name__)

STATE_FILE = "mailingest_state.json"


@dataclass
class FolderState:
    uidvalidity: int
    last_uid: int
    #: UID -> when it was announced, for the messages that may still be waiting (mailReannounceAfter)
    pending: Dict[int, Announced] = field(default_factory=dict)


class PollState:
    """Folder high-water marks, keyed by account display (``scheme://user@host:port``) and folder."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._data: Dict[str, Dict[str, Dict[str, Any]]] = self._load()

    def _load(self) -> Dict[str, Dict[str, Dict[str, Any]]]:
        try:
            with open(self.path, "r", encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            logger.error("poll state %s unreadable (%s): starting afresh; mail may be announced again",
                         self.path, exc)
            return {}
        return data if isinstance(data, dict) else {}

    def folder(self, account: str, folder: str) -> Optional[FolderState]:
        entry = self._data.get(account, {}).get(folder)
        if not entry or "uidvalidity" not in entry:
            return None
        pending = {int(uid): announced for uid, announced in _pending(entry).items() if uid.isdigit()}
        return FolderState(uidvalidity=int(entry["uidvalidity"]), last_uid=int(entry["last_uid"]), pending=pending)

    def set_folder(self, account: str, folder: str, state: FolderState) -> None:
        entry: Dict[str, Any] = {"uidvalidity": state.uidvalidity, "last_uid": state.last_uid}
        if state.pending:
            entry["pending"] = {str(uid): announced.to_json() for uid, announced in state.pending.items()}
        self._data.setdefault(account, {})[folder] = entry

    def uidls(self, account: str, folder: str = "INBOX") -> Set[str]:
        """POP3: the UIDLs already announced (and still in the maildrop at the last cycle)."""
        entry = self._data.get(account, {}).get(folder) or {}
        return set(entry.get("uidls", []))

    def pending_uidls(self, account: str, folder: str = "INBOX") -> Dict[str, Announced]:
        """POP3: the UIDLs announced that may still be waiting for a download (mailReannounceAfter)."""
        return _pending(self._data.get(account, {}).get(folder) or {})

    def set_uidls(self, account: str, uidls: Set[str], folder: str = "INBOX",
                  pending: Optional[Dict[str, Announced]] = None) -> None:
        entry: Dict[str, Any] = {"uidls": sorted(uidls)}
        if pending:
            entry["pending"] = {uidl: announced.to_json() for uidl, announced in pending.items()}
        self._data.setdefault(account, {})[folder] = entry

    def save(self) -> None:
        """Write atomically (temp file, fsync, rename, directory fsync)."""
        directory = os.path.dirname(self.path) or "."
        os.makedirs(directory, exist_ok=True)
        text = json.dumps(self._data, indent=1, sort_keys=True)
        write_atomically(self.path, [text.encode("utf-8")])


def _pending(entry: Dict[str, Any]) -> Dict[str, Announced]:
    raw = entry.get("pending")
    if not isinstance(raw, dict):
        return {}
    out: Dict[str, Announced] = {}
    for key, value in raw.items():
        announced = Announced.from_json(value)
        if announced is not None:
            out[str(key)] = announced
    return out
