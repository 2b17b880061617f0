"""The assessment of one message: its sender verdict and its class, from its bytes.

Given the whole message, DKIM signatures and the ARC chain are verified here (when
``dkim`` is on); given only its header (a message over the size limit, or ``mailDkimVerify
off``), only the trusted (ARC-)Authentication-Results count.  Either way every DNS question goes
through one :class:`~mailingest.verify.dns.TxtResolver`.
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesHeaderParser
from typing import Any

from mailingest.trust import authres
from mailingest.trust.addresses import from_address
from mailingest.trust.classify import MachineClass, classify
from mailingest.trust.dmarc import Alignment, LookupTempError
from mailingest.trust.verdict import SenderVerdict, SignatureResult, combine
from mailingest.verify.dns import TxtResolver
from mailingest.verify.signatures import verify_arc, verify_dkim

#: (ARC-)Authentication-Results headers read per message
MAX_AUTHRES = 50
_PARSER = BytesHeaderParser(policy=policy.compat32)


@dataclass(frozen=True)
class VerifySettings:
    #: authserv-ids whose Authentication-Results count (lower case)
    trusted_authserv: AbstractSet[str] = frozenset()
    #: the topmost Authentication-Results counts when it has no authserv-id (Exchange Online)
    trust_unnamed: bool = False
    #: verify DKIM signatures and the ARC chain here (needs the whole message)
    dkim: bool = True
    #: the pump's own sender addresses (loop guard), lower case
    own_addresses: AbstractSet[str] = frozenset()


@dataclass(frozen=True)
class Assessment:
    verdict: SenderVerdict
    machine: MachineClass
    #: false when only the header was read (no direct DKIM verification)
    whole: bool = True
    notes: tuple[str, ...] = field(default_factory=tuple)

    def fields(self) -> dict[str, Any]:
        sender = self.verdict.fields()
        if self.notes:
            sender["evidence"] = list(self.notes) + sender["evidence"]
        out: dict[str, Any] = {"sender": sender, "class": self.machine.kind}
        if self.machine.reason:
            out["classReason"] = self.machine.reason
        return out


def header_fields(message: bytes) -> list[tuple[str, str]]:
    """The top-level header fields of *message* (name, raw value), in order."""
    end = message.find(b"\r\n\r\n")
    if end < 0:
        end = message.find(b"\n\n")
    block = message if end < 0 else message[:end + 2]
    return [(str(name), str(value)) for name, value in _PARSER.parsebytes(block).raw_items()]


def trusted_headers(headers: Sequence[tuple[str, str]],
                    settings: VerifySettings) -> tuple[list[authres.AuthResults], list[authres.AuthResults], list[str]]:
    """The Authentication-Results and ARC-Authentication-Results written by a trusted authserv-id
    (and the topmost unnamed one with ``trust_unnamed``), and a note per header ignored."""
    plain: list[authres.AuthResults] = []
    arc: list[authres.AuthResults] = []
    ignored: list[str] = []
    seen = 0
    first_plain = True
    for name, value in headers:
        lower = name.lower()
        if lower not in ("authentication-results", "arc-authentication-results"):
            continue
        seen += 1
        if seen > MAX_AUTHRES:
            break
        is_arc = lower.startswith("arc-")
        parsed = authres.parse(value, arc=is_arc)
        topmost = first_plain and not is_arc
        if not is_arc:
            first_plain = False
        if parsed is None:
            ignored.append(f"{name} not readable: ignored")
            continue
        if parsed.authserv_id is None:
            if topmost and settings.trust_unnamed:
                plain.append(parsed)
            else:
                ignored.append(f"{name} without authserv-id ignored"
                               + ("" if settings.trust_unnamed else " (mailTrustUnnamedAuthserv off)"))
            continue
        if parsed.authserv_id not in settings.trusted_authserv:
            ignored.append(f"{name} by untrusted authserv-id {parsed.authserv_id[:80]} ignored")
            continue
        (arc if is_arc else plain).append(parsed)
    return plain, arc, ignored


def assess(message: bytes, settings: VerifySettings, resolver: TxtResolver, whole: bool = True) -> Assessment:
    """Verdict and class of *message* (``whole`` false: only its header is given)."""
    headers = header_fields(message)
    address, domain = from_address([v for n, v in headers if n.lower() == "from"])
    plain, arc_headers, notes = trusted_headers(headers, settings)
    signatures: list[SignatureResult] = []
    arc: SignatureResult | None = None
    if settings.dkim and whole:
        signatures = verify_dkim(message, resolver)
        arc = verify_arc(message, resolver)
    elif settings.dkim:
        notes.append("message over mailTrustMaxSize: DKIM not verified here, only trusted headers count")

    def lookup(name: str) -> str | None:
        return resolver.first(name, "v=DMARC1")

    alignment = Alignment(domain, lookup) if domain else None
    try:
        verdict = combine(address, domain, signatures, plain, arc_headers, arc, alignment)
    except LookupTempError as exc:  # pragma: no cover - combine turns lookups into temperror itself
        verdict = SenderVerdict("temperror", address, evidence=(str(exc),))
    return Assessment(verdict, classify(headers, settings.own_addresses), whole, tuple(notes))
