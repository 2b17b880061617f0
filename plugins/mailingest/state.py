"""What a poll has already announced, kept on disk so a restart announces nothing twice.

IMAP: per account and folder, the UIDVALIDITY and the highest UID examined (``last_uid``).
A later cycle searches only ``UID last_uid+1:*``, so its cost follows the new mail, not the
mailbox.  POP3: per account, the UIDLs announced that are still in the maildrop.  The file is JSON, replaced atomically; it lives in the poll's sr3 cache directory
(``~/.cache/sr3/poll/<config>/mailingest_state.json``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, Optional, Set

from mailingest.atomic import write_atomically

logger = logging.getLogger(__name__)

STATE_FILE = "mailingest_state.json"


@dataclass
class FolderState:
    uidvalidity: int
    last_uid: int


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
        return FolderState(uidvalidity=int(entry["uidvalidity"]), last_uid=int(entry["last_uid"]))

    def set_folder(self, account: str, folder: str, state: FolderState) -> None:
        self._data.setdefault(account, {})[folder] = {"uidvalidity": state.uidvalidity, "last_uid": state.last_uid}

    def uidls(self, account: str, folder: str = "INBOX") -> Set[str]:
        """POP3: the UIDLs already announced (and still in the maildrop at the last cycle)."""
        entry = self._data.get(account, {}).get(folder) or {}
        return set(entry.get("uidls", []))

    def set_uidls(self, account: str, uidls: Set[str], folder: str = "INBOX") -> None:
        self._data.setdefault(account, {})[folder] = {"uidls": sorted(uidls)}

    def save(self) -> None:
        """Write atomically (temp file, fsync, rename, directory fsync)."""
        directory = os.path.dirname(self.path) or "."
        os.makedirs(directory, exist_ok=True)
        text = json.dumps(self._data, indent=1, sort_keys=True)
        write_atomically(self.path, [text.encode("utf-8")])
