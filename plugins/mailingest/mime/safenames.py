"""Pure: turn a sender-supplied attachment name into a safe file name, and keep names unique.

Rules (documented in docs/decode.md, "Naming rules"):

1. Only the last path component survives: everything up to the last ``/`` or ``\\``, and a
   leading drive letter (``C:``), is dropped, so ``../../etc/passwd`` becomes ``passwd``.
2. Control characters (C0, DEL, C1), Unicode line/paragraph separators, bidirectional
   controls (which can disguise ``exe.pdf`` as ``fdp.exe``) and lone surrogates are removed;
   ``:`` (Windows streams, old Mac paths) becomes ``_``.
3. Leading dots and blanks, trailing dots and blanks are stripped (no hidden files, no
   ``.``/``..``, nothing Windows would silently rename).
4. Windows device names (``CON``, ``NUL``, ``COM1``, ``LPT1.txt`` ...) get a ``_`` prefix.
5. The result is at most 255 bytes of UTF-8; the extension is kept when it is short; a cut
   name never ends in a dot or a blank (nor becomes empty, ``.`` or ``..``).
6. An empty result falls back to ``part-N`` plus an extension from the content type.

:py:func:`unique_name` adds ``-2``, ``-3`` ... before the extension until the name is not in the
*taken* set (compared case-insensitively, so case-folding file systems cannot collide either).
"""
from __future__ import annotations

import re
from collections.abc import Collection

MAX_NAME_BYTES = 255
_MAX_EXT_BYTES = 32
_DROP = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
                   "\ud800-\udfff\ufeff]")
_DRIVE = re.compile(r"^[A-Za-z]:")
_RESERVED = re.compile(r"^(con|prn|aux|nul|clock\$|com[0-9¹²³]|lpt[0-9¹²³]|conin\$|conout\$)(\..*)?$",
                       re.IGNORECASE)
_EXTENSIONS = {
    "text/plain": ".txt", "text/html": ".html", "text/csv": ".csv", "text/calendar": ".ics",
    "text/xml": ".xml", "text/rtf": ".rtf", "text/enriched": ".txt", "text/richtext": ".txt",
    "text/markdown": ".md", "text/x-vcard": ".vcf", "text/vcard": ".vcf",
    "message/rfc822": ".eml", "message/global": ".eml", "message/delivery-status": ".txt",
    "message/disposition-notification": ".txt", "message/external-body": ".txt",
    "message/partial": ".txt",
    "application/octet-stream": ".bin", "application/pdf": ".pdf", "application/zip": ".zip",
    "application/gzip": ".gz", "application/x-gzip": ".gz", "application/json": ".json",
    "application/xml": ".xml", "application/pgp-signature": ".asc",
    "application/pgp-encrypted": ".asc", "application/pkcs7-signature": ".p7s",
    "application/x-pkcs7-signature": ".p7s", "application/pkcs7-mime": ".p7m",
    "application/ms-tnef": ".dat", "application/msword": ".doc", "application/rtf": ".rtf",
    "application/vnd.ms-excel": ".xls", "application/postscript": ".ps",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/tiff": ".tif",
    "image/bmp": ".bmp", "image/svg+xml": ".svg", "image/webp": ".webp",
    "audio/basic": ".au", "audio/mpeg": ".mp3", "audio/wav": ".wav", "video/mp4": ".mp4",
}


def extension_for(content_type: str) -> str:
    """A file extension (with the dot) for *content_type*; ``.bin`` when unknown."""
    ctype = content_type.split(";", 1)[0].strip().lower()
    known = _EXTENSIONS.get(ctype)
    if known is not None:
        return known
    import mimetypes  # slow to initialise (reads /etc/mime.types): only for unusual types

    guessed = mimetypes.guess_extension(ctype, strict=False)
    return guessed or (".txt" if ctype.startswith("text/") else ".bin")


def fallback_name(index: int, content_type: str) -> str:
    """``part-<index><ext>`` for a part that has no usable name."""
    return "part-%d%s" % (index, extension_for(content_type))


def safe_name(original: str | None, fallback: str) -> str:
    """A file name derived from *original* that cannot leave its directory (see module rules).

    :param original: the decoded name the sender gave, or None.
    :param fallback: the name to use when nothing safe is left (itself assumed safe).
    """
    if not original:
        return fallback
    name = re.split(r"[/\\]", original)[-1]
    name = _DRIVE.sub("", name)
    name = _DROP.sub("", name).replace(":", "_")
    name = name.lstrip(". \t").rstrip(". \t")
    if not name:
        return fallback
    if _RESERVED.match(name):
        name = "_" + name
    return truncate(name)


def split_extension(name: str) -> tuple[str, str]:
    """``("report", ".csv")``; no extension when there is no stem or it is implausibly long."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or not ext or len(ext.encode("utf-8")) + 1 > _MAX_EXT_BYTES:
        return name, ""
    return stem, "." + ext


def truncate(name: str, limit: int = MAX_NAME_BYTES) -> str:
    """Shorten *name* to at most *limit* UTF-8 bytes, keeping a short extension."""
    if len(name.encode("utf-8")) <= limit:
        return name
    stem, ext = split_extension(name)
    room = limit - len(ext.encode("utf-8"))
    if room < 1:  # an extension that leaves no room is part of the name
        stem, ext, room = name, "", limit
    cut = _cut(stem, room).rstrip(". \t")
    if not cut and ext:  # e.g. ".....pdf": keep the extension, without its dot
        return _cut(ext.lstrip("."), limit).rstrip(". \t") or "part"
    return (cut or "part") + ext


def _cut(text: str, limit: int) -> str:
    out, used = [], 0
    for char in text:
        size = len(char.encode("utf-8"))
        if used + size > limit:
            break
        out.append(char)
        used += size
    return "".join(out)


def unique_name(name: str, taken: Collection[str]) -> str:
    """*name*, or *name* with ``-2``, ``-3`` ... before its extension, not in *taken*.

    *taken* holds lower-cased names (see :py:func:`name_key`).
    """
    if name_key(name) not in taken:
        return name
    stem, ext = split_extension(name)
    counter = 2
    while True:
        suffix = "-%d%s" % (counter, ext)
        candidate = truncate(stem, MAX_NAME_BYTES - len(suffix.encode("utf-8"))) + suffix
        if name_key(candidate) not in taken:
            return candidate
        counter += 1


def name_key(name: str) -> str:
    """The key names are compared by: lower case, as on case-insensitive file systems."""
    return name.lower()
