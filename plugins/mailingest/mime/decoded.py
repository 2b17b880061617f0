"""Find the complete parts directory an earlier decode already made for an ``.eml``.

A notice delivered again (the worker died before sr3 acknowledged it) or a decode taken over
from a dead worker (:mod:`mailingest.mime.journal`) may find that ``x.parts`` was already published.
It is then announced again, never rewritten, if it is *complete*: its ``metadata.json`` names
this ``.eml`` (``source``) and the same mail identity, and every file it lists (recursively
into the ``decodedInto`` directories of attached messages) is there, a regular file, with the
size and SHA-256 recorded.  ``x.parts`` and then ``x-2.parts``, ``x-3.parts`` ... are checked.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Mapping
from typing import Any

from mailingest.mime.layout import PARTS_SUFFIX, SCHEMA, DecodeResult, WrittenFile, parts_dir_name

#: the ``mail`` fields that name a message (the rest, e.g. ``size``, may be refined on download)
IDENTITY_KEYS = ("account", "folder", "uidvalidity", "uid", "uidl")

#: how many ``x-N.parts`` siblings are looked at
MAX_SIBLINGS = 20


def find_decoded(eml_path: str, mail: Mapping[str, Any] | None) -> DecodeResult | None:
    """The complete parts directory of ``eml_path`` (as a :py:class:`DecodeResult` listing its
    files in the order a decode announces them), or None."""
    parent, eml_name = os.path.split(os.path.abspath(eml_path))
    first = parts_dir_name(eml_name)
    stem = first[:-len(PARTS_SUFFIX)]
    for n in range(1, MAX_SIBLINGS + 1):
        candidate = os.path.join(parent, first if n == 1 else "%s-%d%s" % (stem, n, PARTS_SUFFIX))
        if not os.path.isdir(candidate):
            return None
        files: list[WrittenFile] = []
        meta = _complete(candidate, eml_name, files)
        if meta is not None and _same_mail(meta.get("mail"), mail):
            return DecodeResult(eml_name, candidate, tuple(files), (), meta.get("messageId"))
    return None


def _complete(directory: str, source: str, files: list[WrittenFile]) -> dict[str, Any] | None:
    """metadata.json of ``directory`` when it was decoded from ``source`` and every file it
    lists is intact (appending them to ``files``); None otherwise."""
    meta_path = os.path.join(directory, "metadata.json")
    try:
        if not stat.S_ISREG(os.lstat(meta_path).st_mode):
            return None
        with open(meta_path, "rb") as handle:
            meta = json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA or meta.get("source") != source:
        return None
    for entry in meta.get("parts") or []:
        name = entry.get("file") if isinstance(entry, dict) else None
        if not isinstance(name, str) or os.sep in name or name in ("", ".", ".."):
            return None
        path = os.path.join(directory, name)
        if not _intact(path, entry.get("size"), entry.get("sha256")):
            return None
        files.append(WrittenFile(path, str(entry.get("kind")), entry.get("originalName"),
                                 entry.get("contentType"), entry.get("disposition"), entry.get("contentId")))
        child = entry.get("decodedInto")
        if child is not None:
            if not isinstance(child, str) or os.sep in child or _complete(os.path.join(directory, child),
                                                                        name, files) is None:
                return None
    files.append(WrittenFile(meta_path, "metadata", None, "application/json"))
    return meta


def _intact(path: str, size: Any, sha256: Any) -> bool:
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        digest = hashlib.sha256()
        length = 0
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
                length += len(block)
    except OSError:
        return False
    return bool(length == size and digest.hexdigest() == sha256)


def _same_mail(recorded: Any, mail: Mapping[str, Any] | None) -> bool:
    recorded = recorded if isinstance(recorded, Mapping) else {}
    mail = mail if isinstance(mail, Mapping) else {}
    return all(str(recorded.get(k)) == str(mail.get(k)) for k in IDENTITY_KEYS)
