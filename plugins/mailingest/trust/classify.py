"""Machine mail: tell delivery reports, feedback reports, auto-replies and the pump's own mail from
people's mail, by header fields alone.  docs/trust.md lists the heuristics and their false
positives.

Classes: ``person`` (the default: nothing says a machine wrote it), ``loop`` (the pump's own mail
came back), ``bounce`` (RFC 3464 delivery-status report, or a non-standard bounce), ``feedback``
(ARF, RFC 5965), ``receipt`` (RFC 8098 read receipt), ``report`` (any other multipart/report),
``autoreply`` (RFC 3834 ``Auto-Submitted: auto-replied``, ``X-Autoreply``, ``X-Autorespond``, or a
vacation reply by ``Precedence: bulk|junk`` *and* an auto-reply subject), ``automatic``
(``Auto-Submitted: auto-generated`` and other non-``no`` values: cron mail, notifications; with an
auto-reply subject, as Exchange writes its out-of-office replies, ``autoreply``).
``Precedence: list`` (and ``List-Id``) is a mailing list: people's mail, never a machine class.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from email.message import Message

from mailingest.mime.headers import decode_raw, to_bytes
from mailingest.trust.addresses import parse_addresses
from mailingest.trust.authres import strip_comments

MACHINE_CLASSES = ("loop", "bounce", "feedback", "receipt", "report", "autoreply", "automatic")
CLASSES = ("person",) + MACHINE_CLASSES
#: header values longer than this are cut before they are read (bounded work)
MAX_VALUE = 4096

_REPORT_TYPES = {"delivery-status": "bounce", "feedback-report": "feedback", "disposition-notification": "receipt"}
_BOUNCE_SENDERS = ("mailer-daemon", "postmaster", "mail-daemon", "mailer_daemon")
_AUTOREPLY_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|antwort)|auto:|out of (the )?office|abwesenheit|absence|"
    r"r[ée]ponse automatique|vacation|away from)", re.IGNORECASE)
_NO_WORDS = ("", "no", "false", "0", "off")


@dataclass(frozen=True)
class MachineClass:
    kind: str
    #: why, in a few words, for the log and metadata.json ("Auto-Submitted: auto-replied")
    reason: str = ""

    @property
    def machine(self) -> bool:
        return self.kind != "person"


Headers = Sequence[tuple[str, str]]


def _values(headers: Headers, name: str) -> list[str]:
    name = name.lower()
    return [value[:MAX_VALUE] for key, value in headers if key.lower() == name]


def _first(headers: Headers, name: str) -> str | None:
    found = _values(headers, name)
    return " ".join(found[0].split()) if found else None


def _addresses(headers: Headers, *names: str) -> list[str]:
    values = [v for name in names for v in _values(headers, name)]
    return [addr.lower() for _, addr in parse_addresses(values) if addr]


def _subject(headers: Headers) -> str:
    """The Subject, RFC 2047 decoded (``=?UTF-8?Q?Automatische_Antwort?=``)."""
    value = _first(headers, "Subject") or ""
    return decode_raw(to_bytes(value)) if "=?" in value or not value.isascii() else value


def _content_type(headers: Headers) -> tuple[str, str]:
    """``(type/subtype, report-type)`` of the top-level Content-Type, lower case."""
    value = _first(headers, "Content-Type")
    if value is None:
        return "text/plain", ""
    message = Message()
    message["Content-Type"] = value
    return message.get_content_type(), str(message.get_param("report-type", "") or "").lower().strip()


def classify(headers: Headers, own_addresses: AbstractSet[str] = frozenset()) -> MachineClass:
    """The class of a message from its top-level header fields (name, value) in order; never raises
    on hostile values (each is read up to :data:`MAX_VALUE` characters)."""
    if own_addresses:
        for address in _addresses(headers, "From", "Sender", "Return-Path"):
            if address in own_addresses:
                return MachineClass("loop", f"sent by {address} (mailLoopAddresses)")
        for value in _values(headers, "X-Loop"):
            if value.strip().lower() in own_addresses:
                return MachineClass("loop", f"X-Loop: {value.strip().lower()}")
    content_type, report_type = _content_type(headers)
    if content_type == "multipart/report":
        kind = _REPORT_TYPES.get(report_type, "report")
        return MachineClass(kind, f"multipart/report; report-type={report_type or '(none)'}")
    if _values(headers, "X-Failed-Recipients"):
        return MachineClass("bounce", "X-Failed-Recipients")
    null_sender = any(strip_comments(v).strip() in ("<>", "") for v in _values(headers, "Return-Path"))
    senders = _addresses(headers, "From")
    if null_sender and any(a.partition("@")[0] in _BOUNCE_SENDERS for a in senders):
        return MachineClass("bounce", f"null Return-Path from {senders[0]}")
    auto = _first(headers, "Auto-Submitted")
    if auto is not None:
        word = strip_comments(auto).split(";", 1)[0].strip().lower()
        if word == "auto-replied":
            return MachineClass("autoreply", "Auto-Submitted: auto-replied")
        if word not in _NO_WORDS:
            if _AUTOREPLY_SUBJECT.match(_subject(headers)):  # Exchange's out-of-office
                return MachineClass("autoreply", f"Auto-Submitted: {word[:40]} with an auto-reply subject")
            return MachineClass("automatic", f"Auto-Submitted: {word[:40]}")
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder"):
        found = _first(headers, name)
        if found is not None and found.strip().lower() not in _NO_WORDS:
            return MachineClass("autoreply", name)
    precedence = (_first(headers, "Precedence") or "").strip().lower()
    if precedence in ("bulk", "junk", "auto_reply") and not _values(headers, "List-Id"):
        if precedence == "auto_reply" or _AUTOREPLY_SUBJECT.match(_subject(headers)):
            return MachineClass("autoreply", f"Precedence: {precedence} with an auto-reply subject")
    return MachineClass("person")
