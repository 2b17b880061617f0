"""The sender verdict: what the evidence of one message says about its ``From:``.

Results, best first (the verdict is the best any evidence reaches):

* ``pass``: a domain aligned with the ``From:`` domain is authenticated, by a DKIM signature
  verified here, or by an ``Authentication-Results`` (or, with a valid ARC chain, an
  ``ARC-Authentication-Results``) written by a trusted authserv-id;
* ``temperror``: DNS could not answer now (a key, a DMARC record): try again later;
* ``fail``: a signature does not verify, a trusted header says ``dmarc=fail``/``dkim=fail``, or
  the domains that do authenticate are not aligned with ``From:`` (a forged ``From:``);
* ``permerror``: a signature cannot be checked (no key at its selector, a malformed signature or
  key), or ``From:`` is missing or names several authors;
* ``none``: no signature and no trusted header.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mailingest.trust.authres import AuthResults, domain_of
from mailingest.trust.dmarc import Alignment, LookupTempError

RESULTS = ("pass", "temperror", "fail", "permerror", "none")
_RANK = {name: index for index, name in enumerate(RESULTS)}


@dataclass(frozen=True)
class SignatureResult:
    """One DKIM signature (or the ARC chain) as verified here."""

    domain: str
    result: str  # pass, fail, permerror, temperror
    selector: str = ""
    reason: str = ""


@dataclass(frozen=True)
class SenderVerdict:
    result: str
    from_address: str | None = None
    #: the authenticated domain aligned with From: (pass only)
    domain: str | None = None
    #: how: "dkim", "authres <authserv-id>", "arc <authserv-id>"
    method: str | None = None
    evidence: Sequence[str] = field(default_factory=tuple)
    #: the DMARC policy of the From domain (p=), when it was looked up
    dmarc_policy: str | None = None

    def fields(self) -> dict[str, Any]:
        """For the notice's ``mail.sender`` and metadata.json (JSON-serialisable)."""
        out: dict[str, Any] = {"result": self.result, "from": self.from_address, "evidence": list(self.evidence)}
        if self.domain:
            out["domain"] = self.domain
        if self.method:
            out["method"] = self.method
        if self.dmarc_policy:
            out["dmarcPolicy"] = self.dmarc_policy
        return out


class _Best:
    def __init__(self) -> None:
        self.result = "none"
        self.domain: str | None = None
        self.method: str | None = None

    def offer(self, result: str, domain: str | None = None, method: str | None = None) -> None:
        if _RANK[result] < _RANK[self.result]:
            self.result, self.domain, self.method = result, domain, method


def combine(from_address: str | None, from_domain: str | None, signatures: Sequence[SignatureResult],
            trusted: Sequence[AuthResults], trusted_arc: Sequence[AuthResults], arc: SignatureResult | None,
            alignment: Alignment | None) -> SenderVerdict:
    """The verdict from the signatures verified here, the trusted (ARC-)Authentication-Results
    headers and the ARC chain's own result; *alignment* answers for the From domain."""
    evidence: list[str] = []
    best = _Best()
    if from_domain is None or alignment is None:
        evidence.append("From: missing, unreadable or naming several authors")
        return SenderVerdict("permerror", from_address, evidence=tuple(evidence))

    def aligned(domain: str, method: str) -> bool | None:
        try:
            return alignment.aligned(domain, method)
        except LookupTempError as exc:
            evidence.append(f"alignment of {domain}: DNS temperror ({exc})")
            best.offer("temperror")
            return None

    for sig in signatures:
        text = f"dkim={sig.result} d={sig.domain}" + (f" s={sig.selector}" if sig.selector else "")
        if sig.reason:
            text += f" ({sig.reason})"
        if sig.result == "pass":
            ok = aligned(sig.domain, "dkim")
            if ok:
                best.offer("pass", sig.domain, "dkim")
            elif ok is False:
                text += f"; not aligned with From: {from_domain}"
                best.offer("fail")
        else:
            best.offer(sig.result)
        evidence.append(text)
    if arc is not None:
        evidence.append(f"arc={arc.result}" + (f" ({arc.reason})" if arc.reason else ""))
    headers = list(trusted)
    if arc is None or arc.result == "pass":
        headers += list(trusted_arc)
    elif trusted_arc:
        evidence.append("ARC-Authentication-Results of a trusted authserv-id ignored: the ARC chain is not valid")
    for header in headers:
        label = f"{'arc' if header.instance is not None else 'authres'} {header.authserv_id or '(no authserv-id)'}"
        for res in header.results:
            if res.method not in ("dkim", "spf", "dmarc"):
                continue
            domain = domain_of(res)
            evidence.append(f"{label}: {res.describe()}")
            if res.result == "pass" and domain:
                ok = True if res.method == "dmarc" and domain == from_domain else \
                    (False if res.method == "dmarc" else aligned(domain, res.method))
                if ok:
                    best.offer("pass", domain, label)
            elif res.method in ("dkim", "dmarc") and res.result == "fail":
                best.offer("fail")
    policy: str | None = None
    try:
        record = alignment.record()
        policy = record.policy if record else None
    except LookupTempError:
        pass  # the policy is information only
    if best.result != "pass" and not signatures and not headers:
        evidence.append("no DKIM signature and no trusted Authentication-Results")
    return SenderVerdict(best.result, from_address, best.domain if best.result == "pass" else None,
                         best.method if best.result == "pass" else None, tuple(evidence), policy)
