"""Decode one .eml file onto disk: the code shared by ``callback mailingest.decode`` and
``mailingest decode``.

Layout (docs/decode.md): for ``DIR/x.eml`` a new directory ``DIR/x.parts/`` receives

* ``body.txt`` / ``body.html``: the text and HTML bodies ``get_body()`` picks, as UTF-8;
* every other part under its sanitized original name (or ``part-N.ext``);
* attached messages as ``name.eml`` plus their own decoded content in ``name.parts/``;
* uuencoded blocks found in text bodies, under the name on their ``begin`` line;
* ``metadata.json`` (schema ``mailingest-decode/1``), written last.

The raw .eml is only read.  Decoding happens in memory first, so a .eml over
``max_decoded_bytes`` (the one bound that refuses a message; past the others it is decoded
partially, the rest kept as ``raw-<part>.eml`` files) writes nothing; the parts are written into a hidden staging directory that is renamed to ``x.parts``
once complete, so a crash leaves no half-written parts directory; a failure part-way through
writing removes what was written.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from mailingest.atomic import temp_name
from mailingest.mime.containers import Formats
from mailingest.mime.parse import DecodedMail, DecodeLimits, Part, decode_bytes
from mailingest.mime.payloads import DecodedStream
from mailingest.mime.safenames import MAX_NAME_BYTES, extension_for, fallback_name, safe_name, truncate
from mailingest.mime.writer import OutputDir

SCHEMA = "mailingest-decode/1"
PARTS_SUFFIX = ".parts"
_BODY_NAMES = {"body-text": "body.txt", "body-html": "body.html"}


@dataclass(frozen=True)
class DecodeSettings:
    """What to write; built once from options (flowcb) or arguments (CLI)."""

    limits: DecodeLimits = field(default_factory=DecodeLimits)
    html: bool = True
    uuencode: bool = True
    fsync: bool = True
    #: containers opened: TNEF, S/MIME (with the operator's trust and key files)
    formats: Formats = field(default_factory=Formats)
    #: a :py:mod:`hashlib` name: each :py:class:`WrittenFile` then carries that digest of its
    #: bytes, taken from memory as the file is written (the announcement need not read it back)
    identity: str | None = None


@dataclass(frozen=True)
class WrittenFile:
    """One file written, with what a later stage needs to know about the part it holds."""

    path: str
    kind: str
    original_name: str | None = None
    content_type: str | None = None
    disposition: str | None = None
    content_id: str | None = None
    #: the :py:attr:`DecodeSettings.identity` digest of the file's bytes (None: not taken)
    digest: bytes | None = None
    #: bytes written (None: not known, e.g. a file listed from an earlier decode's metadata.json)
    size: int | None = None

    def describe(self) -> dict[str, str | None]:
        """The ``mailPart`` field of the file's notice."""
        return {"kind": self.kind, "originalName": self.original_name,
                "contentType": self.content_type, "disposition": self.disposition,
                "contentId": self.content_id}


@dataclass(frozen=True)
class DecodeResult:
    """What :py:func:`decode_file` wrote: the parts directory, every file in it (and in nested
    ``*.parts/``), and the parser defects (prefixed with the attached message they are in)."""

    source: str
    directory: str
    files: tuple[WrittenFile, ...]
    defects: tuple[str, ...]
    message_id: str | None
    #: ``decoded``, or ``partial`` when a bound was reached (what lay past it is kept raw)
    status: str = "decoded"
    #: the bounds reached, one line per raw-kept part (prefixed like the defects)
    bounds: tuple[str, ...] = ()
    #: S/MIME verdicts at every level (``mimePart`` prefixed like the defects for attached messages)
    smime: tuple[Mapping[str, object], ...] = ()


#: the notice's ``mail`` fields written by the poll's sender check, repeated at metadata.json's top level
TRUST_KEYS = ("sender", "class", "trusted", "tags")


def parts_dir_name(eml_name: str) -> str:
    """``x.eml`` -> ``x.parts`` (the stem of any name plus ``.parts``), at most 255 bytes."""
    stem, dot, _ext = eml_name.rpartition(".")
    return truncate((stem if dot and stem else eml_name) + PARTS_SUFFIX)


def decode_file(eml_path: str, out_dir: str | None = None, *, flat: bool = False,
                settings: DecodeSettings = DecodeSettings(),
                mail: Mapping[str, object] | None = None) -> DecodeResult:
    """Decode *eml_path* and write its parts into a new ``<stem>.parts`` directory (``x.parts``,
    else ``x-2.parts`` ...) made in *out_dir*, or beside the .eml when *out_dir* is None.

    :param flat: write the parts straight into *out_dir* (created if missing) instead.
    :param mail: the notice's ``mail`` identity, copied into metadata.json.
    :raises DecodeLimitError: the .eml is larger than ``max_decoded_bytes``; nothing written.
    :raises MimeError: undecodable; nothing written.
    :raises OSError: reading or writing failed; what was written is removed.
    """
    with open(eml_path, "rb") as fh:
        raw = fh.read()
    decoded = decode_bytes(raw, settings.limits, uuencode=settings.uuencode, formats=settings.formats)
    eml_name = os.path.basename(eml_path)
    if out_dir is None:
        parent = OutputDir.open(os.path.dirname(os.path.abspath(eml_path)), create=False,
                                fsync=settings.fsync, scan=False)
    else:
        parent = OutputDir.open(out_dir, fsync=settings.fsync, scan=flat)
    done = False
    with parent:
        try:
            if flat and out_dir is not None:
                result = _write_all(decoded, parent, eml_name, settings, mail)
            else:
                result = _write_staged(decoded, parent, eml_name, settings, mail)
            done = True
        finally:
            if not done:
                parent.remove_created()
    return result


def _write_staged(decoded: DecodedMail, parent: OutputDir, eml_name: str, settings: DecodeSettings,
                  mail: Mapping[str, object] | None) -> DecodeResult:
    """Fill a hidden staging directory, then rename it to ``x.parts``: a reader (or a crash)
    never sees a half-written parts directory.  A dead writer's staging directory is removed
    by :py:func:`mailingest.atomic.remove_stale_temps` (the download's sweep)."""
    final_name = parts_dir_name(eml_name)
    overhead = len(os.path.basename(temp_name(parent.join(""))).encode("utf-8"))
    staging_name = os.path.basename(temp_name(parent.join(truncate(final_name, MAX_NAME_BYTES - overhead))))
    staging = parent.mkdir_staging(staging_name)
    rows, defects, status = _write_rows(decoded, staging, eml_name, settings, mail)
    staging_path = staging.path
    published = parent.publish(staging, final_name)
    return _result(decoded, eml_name, rows, defects, status, _Moved(staging_path, parent.join(published)))


class _Moved:
    """Paths under a directory renamed from *old* to *new*, as they are now."""

    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new
        self._inside = old + os.sep

    def __call__(self, path: str) -> str:
        if path == self.old or path.startswith(self._inside):
            return self.new + path[len(self.old):]
        return path


#: what :py:func:`_write_message` records of each file: :py:class:`WrittenFile`'s fields in order
_Row = tuple[str, str, "str | None", "str | None", "str | None", "str | None", "bytes | None", "int | None"]


def _write_all(decoded: DecodedMail, target: OutputDir, eml_name: str,
               settings: DecodeSettings, mail: Mapping[str, object] | None) -> DecodeResult:
    rows, defects, status = _write_rows(decoded, target, eml_name, settings, mail)
    return _result(decoded, eml_name, rows, defects, status, None, target.path)


def _write_rows(decoded: DecodedMail, target: OutputDir, eml_name: str, settings: DecodeSettings,
                mail: Mapping[str, object] | None) -> tuple[list[_Row], list[str], str]:
    """Write *decoded* into *target*: (a row per file written, the defects, the status)."""
    rows: list[_Row] = []
    defects: list[str] = []
    status = _write_message(decoded, target, eml_name, settings, mail, "", rows, defects)
    return rows, defects, status


def _result(decoded: DecodedMail, eml_name: str, rows: list[_Row], defects: list[str], status: str,
            moved: _Moved | None, directory: str = "") -> DecodeResult:
    """The :py:class:`DecodeResult` of the files in *rows*, each made once, at the path it
    has after *moved* (a staging directory renamed): no second object per file."""
    if moved is not None:
        directory = moved.new
        files = tuple(WrittenFile(moved(row[0]), *row[1:]) for row in rows)
    else:
        files = tuple(WrittenFile(*row) for row in rows)
    return DecodeResult(eml_name, directory, files, tuple(defects), decoded.message_id,
                        status, tuple(_bounds(decoded, "")), tuple(_verdicts(decoded, "")))


def _verdicts(decoded: DecodedMail, prefix: str) -> list[Mapping[str, object]]:
    """The S/MIME verdicts of *decoded* and of the messages attached to it."""
    found: list[Mapping[str, object]] = [{**v, "mimePart": "%s%s" % (prefix, v.get("mimePart"))}
                                         for v in decoded.smime]
    for part in decoded.parts:
        if part.message is not None:
            found.extend(_verdicts(part.message, "%s%s: " % (prefix, part.number)))
    return found


def _bounds(decoded: DecodedMail, prefix: str) -> list[str]:
    """The bounds reached at every level of *decoded* (attached messages included)."""
    found = [prefix + reason for reason in decoded.partial]
    for part in decoded.parts:
        if part.message is not None:
            found.extend(_bounds(part.message, "%s%s: " % (prefix, part.number)))
    return found


def _write_message(decoded: DecodedMail, target: OutputDir, source: str, settings: DecodeSettings,
                   mail: Mapping[str, object] | None, prefix: str, files: list[_Row],
                   defects: list[str]) -> str:
    """Write one message level into *target*; recurse into attached messages.  Returns the
    level's status: ``partial`` when it or a message attached to it hit a bound."""
    defects.extend(prefix + d for d in decoded.defects)
    meta_name = target.reserve("metadata.json")
    bodies = {p.kind: target.reserve(_BODY_NAMES[p.kind]) for p in decoded.parts
              if p.kind in _BODY_NAMES and (settings.html or p.kind != "body-html")}
    entries: list[dict[str, object]] = []
    for index, part in enumerate(decoded.parts, 1):
        if part.kind == "body-html" and not settings.html:
            continue
        if part.kind in bodies:
            name, reserved = bodies.pop(part.kind), True
        elif part.kind == "raw":
            name, reserved = safe_name("raw-%s.eml" % part.number, "raw.eml"), False
        elif part.kind == "tnef-body":  # body.rtf, body.html, body.txt (body-2.txt beside the mail's own)
            name, reserved = "body" + extension_for(part.content_type), False
        else:
            # the fallback made only when needed (safe_name gives it back when no name is left)
            name, reserved = safe_name(part.filename, "") or fallback_name(index, part.content_type), False
        written, sha256, digest = _write_hashed(target, name, part.data, settings.identity, reserved)
        files.append((target.join(written), part.kind, part.filename,
                      part.content_type, part.disposition, part.content_id, digest, len(part.data)))
        entry = _entry(part, written, sha256)
        if part.not_decoded:
            entry["status"] = "raw" if part.kind == "raw" else "not-decoded"
            entry["reason"] = part.not_decoded
        if part.message is not None:
            with target.mkdir(parts_dir_name(written)) as child:  # closed at once: bounded fds
                entry["decodedInto"] = os.path.basename(child.path)
                entry["status"] = _write_message(part.message, child, written, settings, None,
                                                 "%s%s: " % (prefix, written), files, defects)
        entries.append(entry)
    status = "partial" if decoded.partial or any(e.get("status") == "partial" for e in entries) \
        else "decoded"
    meta: dict[str, object] = {"schema": SCHEMA, "source": source, "status": status,
            "mail": dict(mail) if mail is not None else None,
            "messageId": decoded.message_id, "from": decoded.from_, "to": list(decoded.to),
            "cc": list(decoded.cc), "subject": decoded.subject, "date": decoded.date,
            "parts": entries, "defects": list(decoded.defects)}
    if decoded.partial:
        meta["bounds"] = list(decoded.partial)
    for key in TRUST_KEYS:  # the poll's sender check (docs/trust.md), also at the top for readers
        if mail is not None and key in mail:
            meta[key] = mail[key]
    if decoded.smime:
        meta["smime"] = [dict(v) for v in decoded.smime]
    data = metadata_json(meta).encode("utf-8", "backslashreplace")
    target.write(meta_name, data, reserved=True)
    files.append((target.join(meta_name), "metadata", None, "application/json", None, None,
                  _digest(settings.identity, data), len(data)))
    return status


_JSON = json.JSONEncoder(ensure_ascii=False, default=str)  # indent=None: the C encoder
_TEXT = json.encoder.encode_basestring  # what _JSON.encode does with a str
#: ``_JSON.encode`` without its per-call set-up (a new C encoder object per value): the C
#: encoder made once with _JSON's settings; no check for circular references (metadata.json
#: is a tree of dicts, lists and scalars built here)
_ENCODER = (json.encoder.c_make_encoder(None, _JSON.default, _TEXT, None, _JSON.key_separator,  # type: ignore[attr-defined]
                                        _JSON.item_separator, False, False, True)
            if getattr(json.encoder, "c_make_encoder", None) is not None else None)


def _json(value: object) -> str:
    if type(value) is str:
        return _TEXT(value)  # type: ignore[no-any-return]
    if _ENCODER is None:  # pragma: no cover - CPython has the C encoder
        return _JSON.encode(value)
    return "".join(_ENCODER(value, 0))


def metadata_json(meta: Mapping[str, object]) -> str:
    """*meta* as metadata.json's text: one key per line, and one item per line in a list, each
    written as compact JSON by the C encoder (``indent`` makes ``json`` use its pure-Python
    encoder, a fifth of the decode of a small message); ends with a line end."""
    lines = []
    for key, value in meta.items():
        if isinstance(value, list) and value:
            items = ",\n  ".join([_json(item) for item in value])
            lines.append(" %s: [\n  %s\n ]" % (_TEXT(key), items))
        else:
            lines.append(" %s: %s" % (_TEXT(key), _json(value)))
    return "{\n%s\n}\n" % ",\n".join(lines)


def _digest(method: str | None, data: bytes | memoryview) -> bytes | None:
    return hashlib.new(method, data).digest() if method else None


def _write_hashed(target: OutputDir, name: str, data: bytes | memoryview | DecodedStream,
                  identity: str | None, reserved: bool) -> tuple[str, str, bytes | None]:
    """Write *data* as *name*; (the name used, its SHA-256 in hex, its *identity* digest).
    A :py:class:`DecodedStream` is decoded, hashed and written a piece at a time."""
    if not isinstance(data, DecodedStream):
        written = target.write(name, data, reserved=reserved)
        return written, hashlib.sha256(data).hexdigest(), _digest(identity, data)
    sha256 = hashlib.sha256()
    other = hashlib.new(identity) if identity else None

    def hashed() -> Iterator[bytes]:
        for piece in data.chunks():
            sha256.update(piece)
            if other is not None:
                other.update(piece)
            yield piece

    written = target.write(name, hashed(), reserved=reserved)
    return written, sha256.hexdigest(), other.digest() if other is not None else None


def _entry(part: Part, written: str, sha256: str) -> dict[str, object]:
    return {"file": written, "kind": part.kind, "originalName": part.filename,
            "contentType": part.content_type, "charset": part.charset,
            "disposition": part.disposition, "contentId": part.content_id,
            "mimePart": part.number, "size": len(part.data), "sha256": sha256,
            **({"container": dict(part.container)} if part.container is not None else {})}
