"""DKIM signatures and the ARC chain of one message, verified with dkimpy through a
:class:`~mailingest.verify.dns.TxtResolver`, as ``pass``/``fail``/``permerror``/``temperror``.

dkimpy answers False both for a signature that does not verify and for a key it could not fetch;
the lookup function handed to it records what DNS said, so a timeout becomes ``temperror`` and a
missing key ``permerror`` (RFC 6376 §6.1.2), and only a real mismatch is ``fail``.
"""

from __future__ import annotations

import logging
from typing import Any

from mailingest.trust.dmarc import LookupTempError
from mailingest.trust.verdict import SignatureResult
from mailingest.verify.dns import TxtResolver

logger = logging.getLogger(__name__)

#: signatures verified per message (each costs a DNS lookup and a hash of the body)
MAX_SIGNATURES = 8
MIN_KEY_BITS = 1024


class _Quiet:
    """dkimpy's logger: its errors are expected outcomes here, so they go to debug."""

    def _log(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        logger.debug("dkimpy: %s", msg)

    debug = info = warning = error = exception = _log


class _KeyLookup:
    """dkimpy's ``dnsfunc``: the key record, with what DNS said remembered for the verdict."""

    def __init__(self, resolver: TxtResolver) -> None:
        self.resolver = resolver
        self.reset()

    def reset(self) -> None:
        self.temp: str | None = None
        self.missing: str | None = None
        self.bad_key: str | None = None

    def __call__(self, name: bytes, timeout: float = 5) -> bytes | None:
        import dkim

        try:
            text = name.decode("ascii").rstrip(".")
        except UnicodeDecodeError:
            self.missing = repr(name)
            return None
        try:
            record = self.resolver.first(text, "v=DKIM1")
        except LookupTempError as exc:
            self.temp = str(exc)
            raise dkim.DnsTimeoutError(str(exc)) from None
        if record is None:
            self.missing = text
            return None
        try:
            dkim.evaluate_pk(name, record.encode("utf-8"))
        except (dkim.KeyFormatError, dkim.UnknownKeyTypeError, ValueError, TypeError) as exc:
            self.bad_key = f"{text}: {exc}"
        return record.encode("utf-8")

    def outcome(self, ok: bool) -> tuple:
        if ok:
            return "pass", ""
        if self.temp:
            return "temperror", self.temp
        if self.missing:
            return "permerror", f"no key at {self.missing}"
        if self.bad_key:
            return "permerror", f"unusable key {self.bad_key}"
        return "fail", "signature does not verify"


def _text(value: Any) -> str:
    return value.decode("ascii", "replace").lower() if isinstance(value, bytes) else ""


def verify_dkim(message: bytes, resolver: TxtResolver) -> list[SignatureResult]:
    """One result per DKIM-Signature (the first :data:`MAX_SIGNATURES`)."""
    import dkim  # with dnspython, ~25 ms: loaded by the first message screened, not by every sr3 start

    lookup = _KeyLookup(resolver)
    try:
        verifier = dkim.DKIM(message, logger=_Quiet(), minkey=MIN_KEY_BITS, timeout=resolver.timeout)
    except Exception as exc:  # dkimpy on a hostile message: nothing can be verified
        return [SignatureResult("", "permerror", reason=f"message not parsable for DKIM: {exc}")]
    count = sum(1 for name, _ in verifier.headers if name.lower() == b"dkim-signature")
    results = []
    for index in range(min(count, MAX_SIGNATURES)):
        lookup.reset()
        verifier.domain = verifier.selector = None
        try:
            result, reason = lookup.outcome(bool(verifier.verify(index, dnsfunc=lookup)))
            if result == "pass":
                result, reason = _whole_body(verifier)
        except dkim.ValidationError as exc:
            result = "fail" if "body hash mismatch" in str(exc) else "permerror"
            reason = "body hash mismatch (the body was altered)" if result == "fail" else str(exc)
        except Exception as exc:  # dkimpy on a hostile signature: this signature's permerror
            result, reason = "permerror", f"{type(exc).__name__}: {exc}"
        results.append(SignatureResult(_text(verifier.domain), result, _text(verifier.selector), reason[:200]))
    return results


def _whole_body(verifier: Any) -> tuple:
    """A verified signature with ``l=`` shorter than the body vouches for only part of it: whatever
    follows was added after signing (by anyone), so it does not authenticate the message."""
    from dkim.canonicalization import CanonicalizationPolicy

    fields = getattr(verifier, "signature_fields", None) or {}
    if b"l" not in fields:
        return "pass", ""
    policy = CanonicalizationPolicy.from_c_value(fields.get(b"c", b"simple/simple"))
    signed, total = int(fields[b"l"]), len(policy.canonicalize_body(verifier.body))
    if signed < total:
        return "fail", f"l={signed} signs only {signed} of {total} body bytes: the rest was added after signing"
    return "pass", ""


def verify_arc(message: bytes, resolver: TxtResolver) -> SignatureResult | None:
    """The ARC chain's validation (``pass``, ``fail``, ``temperror``), None without ARC headers."""
    import dkim

    lookup = _KeyLookup(resolver)
    try:
        verifier = dkim.ARC(message, logger=_Quiet(), minkey=MIN_KEY_BITS, timeout=resolver.timeout)
        cv, results, reason = verifier.verify(dnsfunc=lookup)
    except Exception as exc:  # dkimpy on a hostile chain
        return SignatureResult("", "fail", reason=f"{type(exc).__name__}: {exc}"[:200])
    if cv == dkim.CV_None and not results:
        return None
    if lookup.temp:
        return SignatureResult("", "temperror", reason=lookup.temp[:200])
    domain = ""
    if results:
        domain = _text(results[-1].get("as-domain")) if isinstance(results[-1], dict) else ""
    return SignatureResult(domain, "pass" if cv == dkim.CV_Pass else "fail", reason=str(reason)[:200])
