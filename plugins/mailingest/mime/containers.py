"""Parts that hold other parts: TNEF (``winmail.dat``) and S/MIME, opened for the tree walker.

The walker (:py:mod:`mailingest.mime.parse`) calls two hooks:

* :py:func:`open_leaf` for every leaf that is not a body: a TNEF container gives its files
  (``mimePart`` ``<part>.tnef<k>``, each with a ``container`` record) and its bodies (kind
  ``tnef-body``); an ``application/pkcs7-mime`` part is decrypted or unwrapped and the message
  inside is decoded as if it were this part (``mimePart`` ``<part>.smime...``); the verdict is
  recorded.  The container itself is written as it came, except a TNEF container that was
  unpacked completely when ``tnef_keep`` is off (its record still names it, with its sha256).
* :py:func:`check_signed` for every ``multipart/signed`` with a PKCS#7 signature: the verdict.

Everything stays within the walker's bounds: files and bytes are charged like any other part;
past a bound the container is kept whole and the rest is not unpacked.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from email.message import Message
from typing import TYPE_CHECKING, Any, Literal

from mailingest.errors import MimeError
from mailingest.mime import headers, payloads
from mailingest.mime.spans import RawSpans

if TYPE_CHECKING:  # tnef and smime are imported when a container is met: most mail has none
    from mailingest.mime.parse import Part, _Walker
    from mailingest.mime.smime import Smime

logger = logging.getLogger(__name__)

TNEF_TYPES = ("application/ms-tnef", "application/vnd.ms-tnef")
#: most S/MIME parts opened per message (each costs up to three openssl runs); the rest are
#: written as they are, with the verdict ``skipped``
MAX_SMIME_PARTS = 16
_SIGNATURE_TYPES = ("application/pkcs7-signature", "application/x-pkcs7-signature")
_SMIME_TYPES = ("application/pkcs7-mime", "application/x-pkcs7-mime")
_CONTAINER_TYPES = frozenset(TNEF_TYPES + _SMIME_TYPES)
_TNEF_BODY_TYPES = (("text", "text/plain"), ("html", "text/html"), ("rtf", "application/rtf"))


@dataclass(frozen=True)
class Formats:
    """Which containers the decoder opens.

    :param tnef: unpack TNEF containers.
    :param tnef_keep: also write the TNEF container itself when it was unpacked completely.
    :param smime: open S/MIME parts with this material (None: written as they are, no verdict;
        ``"default"``: opened, no trust file, no key).
    """

    tnef: bool = True
    tnef_keep: bool = False
    smime: Smime | None | Literal["default"] = "default"

    def smime_material(self) -> Smime | None:
        """The :py:class:`~mailingest.mime.smime.Smime` to use, or None."""
        if self.smime != "default":
            return self.smime
        if not _DEFAULT_SMIME:
            from mailingest.mime.smime import Smime, SmimeSettings

            _DEFAULT_SMIME.append(Smime(SmimeSettings()))
        return _DEFAULT_SMIME[0]


_DEFAULT_SMIME: list[Smime] = []


@dataclass
class Opened:
    """What :py:func:`open_leaf` found in a leaf."""

    keep_container: bool = True
    parts: list[Part] = field(default_factory=list)
    #: an S/MIME part's content: a MIME entity to decode in place of the part
    inner: bytes | None = None


def may_open(ctype: str, name: str | None) -> bool:
    """Cheap first test (every leaf goes through it): could this leaf be a container?"""
    return ctype in _CONTAINER_TYPES or (name is not None and name.lower() == "winmail.dat")


def open_leaf(walker: _Walker, number: str, ctype: str, part: Message, name: str | None,
              data: bytes | memoryview, defects: list[str]) -> Opened | None:
    """Open the leaf *number* when it is a container the settings ask for; None otherwise."""
    formats: Formats = walker.formats
    if formats.tnef and (ctype in TNEF_TYPES or (name or "").lower() == "winmail.dat"):
        from mailingest.mime import tnef

        if tnef.is_tnef(data):
            return _open_tnef(walker, number, ctype, name, data, defects)
    smime = formats.smime_material() if ctype in _SMIME_TYPES else None
    if smime is None:
        return None
    from mailingest.mime.smime import smime_type

    kind = smime_type(ctype, _params(part), bytes(data[:64]))
    if kind is None:
        return None
    if walker.smime_left <= 0:
        walker.verdicts.append({"mimePart": number, "type": kind, "verdict": "skipped",
                                "reason": "more than %d S/MIME parts in one message" % MAX_SMIME_PARTS})
        return None
    walker.smime_left -= 1
    der = bytes(data)
    if kind == "signed":
        content, verdict = smime.open_signed(der)
    else:
        content, verdict = smime.decrypt(der)
    verdict = {"mimePart": number, **verdict}
    walker.verdicts.append(verdict)
    if content is not None and not walker._fits(len(content)):
        defects.append("%s: S/MIME content not decoded: %s reached" % (number, walker.exhausted))
        content = None
    return Opened(inner=content)


def decode_inner(walker: _Walker, opened: Opened, depth: int, number: str, hints: Any,
                 out: list[Part], defects: list[str]) -> None:
    """Append what *opened* holds: TNEF files, or the S/MIME content decoded as a message."""
    out.extend(opened.parts)
    if opened.inner is None:
        return
    from mailingest.mime.parse import parse

    try:
        msg = parse(opened.inner)
    except MimeError as exc:
        defects.append("%s: S/MIME content not parsed: %s" % (number, exc))
        return
    bodies = walker.bodies_of(msg, number, defects)
    walker._walk(msg, depth + 1, number + ".smime", bodies, hints, out, defects, RawSpans(opened.inner, msg))


def check_signed(walker: _Walker, part: Message, number: str, spans: RawSpans) -> None:
    """Record the verdict on a ``multipart/signed`` part whose signature is PKCS#7."""
    smime = walker.formats.smime_material()
    children = part.get_payload()
    if smime is None or not isinstance(children, list) or len(children) != 2:
        return
    signed, signature = children
    if not isinstance(signed, Message) or not isinstance(signature, Message):
        return
    protocol = _params(part).get("protocol", "").strip().lower()
    try:
        signature_type = signature.get_content_type()
    except headers.HEADER_ERRORS:
        signature_type = ""
    if protocol not in _SIGNATURE_TYPES and signature_type not in _SIGNATURE_TYPES:
        return
    if walker.smime_left <= 0:
        walker.verdicts.append({"mimePart": number or "top", "type": "detached-signature", "verdict": "skipped",
                                "reason": "more than %d S/MIME parts in one message" % MAX_SMIME_PARTS})
        return
    walker.smime_left -= 1
    spans.adopt(part, signed)
    spans.adopt(part, signature)
    content = spans.bytes_of(signed)
    verdict: dict[str, Any] = {"mimePart": number or "top"}
    if content is None:
        verdict.update(type="detached-signature", verdict="invalid",
                       reason="the signed part's original bytes could not be found")
    else:
        # openssl checks it while the walk goes on; the verdict is filled in when the walk is done
        walker.verifying.append((verdict, smime.start_detached(bytes(content), payloads.leaf_bytes(signature))))
    walker.verdicts.append(verdict)


def _params(part: Message) -> dict[str, str]:
    try:
        return {str(k).lower(): str(v) for k, v in part.get_params(failobj=[])[1:]}
    except headers.HEADER_ERRORS:
        return {}


def _open_tnef(walker: _Walker, number: str, ctype: str, name: str | None, data: bytes | memoryview,
               defects: list[str]) -> Opened:
    from mailingest.mime import tnef
    from mailingest.mime.parse import Part

    left_files = max(0, walker.limits.max_parts - walker.entities)
    left_bytes = max(0, walker.limits.max_decoded_bytes - walker.decoded)
    contents = tnef.unpack(data, max_bytes=left_bytes, max_files=left_files)
    defects.extend("%s: %s" % (number, d) for d in contents.defects)
    complete = not contents.defects
    if contents.bound is not None:
        walker.container_bounds.append("%s reached: TNEF container %s kept whole, not all of it unpacked"
                                       % (contents.bound, number))
    record: dict[str, Any] = {"mimePart": number, "contentType": ctype, "originalName": name, "size": len(data),
                              "sha256": hashlib.sha256(data).hexdigest(), "format": "tnef",
                              "messageClass": contents.message_class,
                              "kept": walker.formats.tnef_keep or not complete}
    opened = Opened(keep_container=bool(record["kept"]))
    for found in contents.files:
        walker.entities += 1
        if not walker._fits(len(found.data)):
            defects.append("%s: TNEF attachment %s not unpacked: %s reached" % (number, found.path, walker.exhausted))
            walker.container_bounds.append("%s reached: TNEF container %s kept whole, not all of it unpacked"
                                           % (walker.exhausted, number))
            opened.keep_container = record["kept"] = True
            break
        opened.parts.append(Part("%s.tnef%s" % (number, found.path), "part", found.name,
                                 found.content_type or "application/octet-stream", "attachment",
                                 found.content_id, found.data, container=record))
    for attr, body_type in _TNEF_BODY_TYPES:
        value = getattr(contents, attr)
        if value is None:
            continue
        body = value.encode("utf-8") if isinstance(value, str) else value
        charset = "utf-8" if isinstance(value, str) else (contents.html_charset if attr == "html" else None)
        if not body.strip(b"\0 \r\n\t"):
            continue
        walker.entities += 1
        if not walker._fits(len(body)):
            opened.keep_container = record["kept"] = True
            break
        opened.parts.append(Part("%s.tnef-%s" % (number, attr), "tnef-body", None, body_type, None, None,
                                 body, charset=charset, container=record))
    if not opened.parts:  # it gave nothing: the container alone stands for it
        opened.keep_container = record["kept"] = True
    return opened
