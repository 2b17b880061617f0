"""S/MIME: open ``application/pkcs7-mime`` parts and check signatures ([RFC 8551], CMS [RFC 5652]).

What the libraries can do, and who does what:

* **Decryption** (enveloped-data) is in-process: ``cryptography``'s
  ``pkcs7_decrypt_der`` with the operator's key and certificate (RSA key transport).
* **Signed data** (opaque ``signed-data`` and detached ``multipart/signed``): ``cryptography``
  can build signatures and read the certificates of a signed-data blob, but it has no public
  API to verify one or to take its content out.  That is done by ``openssl cms`` (the OpenSSL
  command line, same library family; bounded by a timeout, fed through a private temporary
  directory): once with ``-nosigs -noverify`` to take the content out (so a message whose
  signature fails still gives up its parts), once to verify against the operator's trust file
  only (``-CAfile``, never the system store).  No ASN.1 is parsed here.

A verdict never stops decoding: the ``.p7m``/``.p7s`` part is always written as it came, the
verdict goes to ``metadata.json`` (``smime``) and the notice.  Verdicts:

=================  ==============================================================================
``good``           the signature matches the content and the signer chains to a trusted certificate
``tampered``       the content (or the signed attributes) does not match the signature
``unknown-ca``     the signature matches but the signer does not chain to a trusted certificate
``expired``        the signature matches but a certificate of the chain is outside its validity
``unverified``     no trust file is configured: only the signature itself was checked (``signatureValid``)
``decrypted``      enveloped data opened with the configured key
``no-key``         enveloped data, and no key is configured
``wrong-key``      enveloped data not addressed to the configured key (or not decryptable with it)
``invalid``        not readable as CMS (or ``openssl`` missing / timed out: ``reason`` says which)
``skipped``        not opened: more S/MIME parts in the message than the decoder opens (16)
=================  ==============================================================================

Key material is read from the files the operator names, held in memory, and never logged,
written or put in a verdict.
"""
from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mailingest.errors import ConfigError

if TYPE_CHECKING:  # cryptography costs ~40 ms to import: only S/MIME work loads it
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import rsa

#: seconds one ``openssl cms`` run may take
OPENSSL_TIMEOUT = 20.0
_SIGNED_TYPES = ("signed-data", "signeddata")
_ENVELOPED_TYPES = ("enveloped-data", "envelopeddata", "authenveloped-data")
#: the DER of the CMS content type identifiers id-signedData and id-envelopedData (RFC 5652)
_OID_SIGNED_DATA = bytes.fromhex("06092a864886f70d010702")
_OID_ENVELOPED_DATA = bytes.fromhex("06092a864886f70d010703")


@dataclass(frozen=True)
class SmimeSettings:
    """Where the operator's S/MIME material is.

    :param trust_file: PEM file of trusted certificates (CAs, or pinned signer certificates);
        None: signatures are checked but not trusted (verdict ``unverified``).
    :param key_file: PEM file holding the private key (unencrypted) and its certificate, for
        enveloped (encrypted) messages; None: they stay encrypted (verdict ``no-key``).
    :param key_pem: instead of a file, that PEM itself (read by the caller, e.g. from the system
        keyring), with *key_source* naming where it came from in errors.
    """

    trust_file: str | None = None
    key_file: str | None = None
    key_pem: bytes | None = field(default=None, repr=False)
    key_source: str = "the S/MIME key"
    openssl: str = "openssl"


@dataclass(frozen=True)
class _Recipient:
    certificate: x509.Certificate
    key: rsa.RSAPrivateKey = field(repr=False)


class Smime:
    """The loaded S/MIME material of one decoder (built once; files read on creation)."""

    def __init__(self, settings: SmimeSettings) -> None:
        self.settings = settings
        self.recipient: _Recipient | None = None
        if settings.key_file:
            self.recipient = _load_recipient(settings.key_file)
        elif settings.key_pem:
            self.recipient = _recipient_from_pem(settings.key_pem, settings.key_source)
        if settings.trust_file:
            _load_trust(settings.trust_file)  # fail at start-up, not per message
        self.openssl = shutil.which(settings.openssl)

    def __reduce__(self) -> tuple[Any, tuple[SmimeSettings]]:
        """Pickled as its settings (the decode process loads the same files again): loaded keys
        do not pickle."""
        return (Smime, (self.settings,))

    # enveloped data --------------------------------------------------------------------------
    def decrypt(self, der: bytes) -> tuple[bytes | None, dict[str, Any]]:
        """Decrypt the enveloped-data *der*: ``(content or None, verdict)``."""
        verdict: dict[str, Any] = {"type": "enveloped-data"}
        if self.recipient is None:
            verdict.update(verdict="no-key", reason="no mailSmimeKeyFile or mailSmimeKeyring configured")
            return None, verdict
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives.serialization import pkcs7

        try:
            with warnings.catch_warnings():  # a BER fallback warning is no reason to stop
                warnings.simplefilter("ignore")
                content = pkcs7.pkcs7_decrypt_der(der, self.recipient.certificate, self.recipient.key, [])
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            text = str(exc)
            wrong = "recipient" in text.lower() or "decrypt" in text.lower()
            verdict.update(verdict="wrong-key" if wrong else "invalid", reason=text[:200])
            return None, verdict
        verdict.update(verdict="decrypted",
                       recipient=describe(self.recipient.certificate))
        return content, verdict

    # signed data -----------------------------------------------------------------------------
    def open_signed(self, der: bytes) -> tuple[bytes | None, dict[str, Any]]:
        """The content of the opaque signed-data *der* and its verdict."""
        verdict: dict[str, Any] = {"type": "signed-data"}
        with tempfile.TemporaryDirectory(prefix="mailingest-smime-") as work:
            sig = _put(work, "sig.der", der)
            content_path = os.path.join(work, "content")
            ran = self._cms(["-verify", "-nosigs", "-noverify", "-binary", "-inform", "DER", "-in", sig,
                             "-out", content_path])
            if ran is not None and ran.returncode == 0 and os.path.exists(content_path):
                with open(content_path, "rb") as fh:
                    content: bytes | None = fh.read()
            else:
                content = None
                verdict.update(verdict="invalid", reason=_why(ran, "not readable as CMS signed-data"))
                return None, verdict
            verdict.update(self._verify(work, sig, None, der))
        return content, verdict

    def verify_detached(self, content: bytes, signature: bytes) -> dict[str, Any]:
        """The verdict on a ``multipart/signed`` part: *content* is the first part's bytes as
        they came (headers included, line ends made CRLF here), *signature* the decoded .p7s."""
        return self._detached(content, signature, _described_signer(signature))

    def start_detached(self, content: bytes, signature: bytes) -> Verification:
        """:py:meth:`verify_detached`, its openssl runs made in a thread of its own while the
        caller goes on (the decoder walks the rest of the message meanwhile); the verdict is
        :py:meth:`Verification.result`.  The signer is read here, in the caller's thread: it
        silences a warning, and the warning filters are not thread-safe."""
        return Verification(self._detached, content, signature, _described_signer(signature))

    def _detached(self, content: bytes, signature: bytes, signer: dict[str, Any] | None) -> dict[str, Any]:
        verdict: dict[str, Any] = {"type": "detached-signature"}
        canonical = content.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        with tempfile.TemporaryDirectory(prefix="mailingest-smime-") as work:
            sig = _put(work, "sig.der", signature)
            verdict.update(self._verify(work, sig, _put(work, "content", canonical), signature,
                                        signer=signer, signer_read=True))
        return verdict

    def _verify(self, work: str, sig: str, content: str | None, der: bytes, *,
                signer: dict[str, Any] | None = None, signer_read: bool = False) -> dict[str, Any]:
        """*signer*: the signer's description (:py:func:`_described_signer` of *der*), if *signer_read*."""
        found: dict[str, Any] = {}
        described = signer if signer_read else _described_signer(der)
        if described is not None:
            found["signer"] = described
        args = ["-verify", "-binary", "-inform", "DER", "-in", sig, "-out", os.devnull]
        if content is not None:
            args += ["-content", content]
        math = self._cms(args + ["-noverify"])
        if math is None or math.returncode != 0:
            found.update(verdict=_classify(math) if math is not None else "invalid",
                         signatureValid=False, reason=_why(math, "signature not checked"))
            if found["verdict"] not in ("tampered", "invalid"):
                found["verdict"] = "tampered"
            return found
        found["signatureValid"] = True
        if not self.settings.trust_file:
            found.update(verdict="unverified", reason="no mailSmimeTrustFile configured")
            return found
        trusted = self._cms(args + ["-CAfile", self.settings.trust_file, "-no-CApath", "-no-CAstore",
                                    "-partial_chain"])  # a pinned signer certificate is an anchor too
        if trusted is not None and trusted.returncode == 0:
            found["verdict"] = "good"
        else:
            found.update(verdict=_classify(trusted) if trusted is not None else "invalid",
                         reason=_why(trusted, "chain not checked"))
            if found["verdict"] == "tampered":  # the signature itself was fine: a chain problem
                found["verdict"] = "unknown-ca"
        return found

    def _cms(self, args: list[str]) -> subprocess.CompletedProcess[bytes] | None:
        if self.openssl is None:
            return None
        try:
            return subprocess.run([self.openssl, "cms", *args], stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=OPENSSL_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None


def smime_type(content_type: str, params: Mapping[str, str], head: bytes) -> str | None:
    """``signed`` or ``enveloped`` for an ``application/(x-)pkcs7-mime`` part, from its
    ``smime-type``; older senders leave that out, then the content type object identifier near
    the start of the DER (*head*: its first bytes) tells.  None for anything else (certs-only,
    compressed-data)."""
    if content_type not in ("application/pkcs7-mime", "application/x-pkcs7-mime"):
        return None
    kind = str(params.get("smime-type", "")).strip().lower()
    if kind in _SIGNED_TYPES:
        return "signed"
    if kind in _ENVELOPED_TYPES:
        return "enveloped"
    if not kind and _OID_SIGNED_DATA in head:
        return "signed"
    if not kind and _OID_ENVELOPED_DATA in head:
        return "enveloped"
    return None


def describe(cert: x509.Certificate) -> dict[str, Any]:
    """What metadata.json says about a certificate (public data only)."""
    from cryptography import x509

    try:
        emails = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
            .get_values_for_type(x509.RFC822Name)
    except (x509.ExtensionNotFound, ValueError):
        emails = []
    return {"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
            "serial": format(cert.serial_number, "x"), "emails": list(emails),
            "notBefore": cert.not_valid_before_utc.isoformat(), "notAfter": cert.not_valid_after_utc.isoformat(),
            "validNow": cert.not_valid_before_utc <= datetime.datetime.now(datetime.timezone.utc)
            <= cert.not_valid_after_utc}


def _described_signer(der: bytes) -> dict[str, Any] | None:
    """What metadata.json says about the signer of *der* (:py:func:`describe`), None when none is found."""
    signer = _signer(der)
    return describe(signer) if signer is not None else None


class Verification:
    """``function(*args)`` run in a daemon thread; :py:meth:`result` waits for it and gives its
    result (or raises what it raised).  openssl runs in a child process: the thread waits on
    it without holding the interpreter."""

    def __init__(self, function: Callable[..., dict[str, Any]], *args: Any) -> None:
        self._result: dict[str, Any] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(function, args), daemon=True,
                                        name="mailingest-smime-verify")
        self._thread.start()

    def _run(self, function: Callable[..., dict[str, Any]], args: tuple[Any, ...]) -> None:
        try:
            self._result = function(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by result()
            self._error = exc

    def result(self) -> dict[str, Any]:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


def _signer(der: bytes) -> x509.Certificate | None:
    """The signer's certificate among those the signed-data carries: the one that issued no
    other (a leaf); None when there is none or the blob is unreadable."""
    from cryptography.exceptions import UnsupportedAlgorithm

    try:
        with warnings.catch_warnings():  # "falling back to parsing as BER" on odd input
            warnings.simplefilter("ignore")
            certs = pkcs7_certificates_reader()(der)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None
    issuers = {c.issuer.rfc4514_string() for c in certs if c.issuer != c.subject}
    leaves = [c for c in certs if c.subject.rfc4514_string() not in issuers]
    found = leaves or certs
    return found[0] if found else None


def pkcs7_certificates_reader() -> Callable[[bytes], list[x509.Certificate]]:
    """``cryptography``'s ``pkcs7.load_der_pkcs7_certificates``, taken from the compiled binding
    that its public module re-exports it from: reading a signer's certificate then does not load
    ``cryptography.hazmat.primitives.serialization`` (SSH keys, ciphers, ...), ~15 ms of every
    process's first signed message.  The public module is the fallback; a unit test holds the
    two to be one function."""
    try:
        from cryptography.hazmat.bindings._rust import pkcs7 as compiled

        return compiled.load_der_pkcs7_certificates
    except (ImportError, AttributeError):  # pragma: no cover - a cryptography laid out otherwise
        from cryptography.hazmat.primitives.serialization import pkcs7

        return pkcs7.load_der_pkcs7_certificates


def _classify(ran: subprocess.CompletedProcess[bytes]) -> str:
    text = ran.stderr.decode("utf-8", "replace").lower()
    if "expired" in text or "not yet valid" in text:
        return "expired"
    if any(s in text for s in ("local issuer", "self-signed", "self signed", "issuer certificate",
                               "unable to verify", "untrusted", "certificate verify error")):
        return "unknown-ca"
    if any(s in text for s in ("content verify error", "verification failure", "digest failure",
                               "signature failure", "bad signature")):
        return "tampered"
    return "invalid"


def _why(ran: subprocess.CompletedProcess[bytes] | None, default: str) -> str:
    if ran is None:
        return "%s: openssl not found or timed out" % default
    lines = [line.strip() for line in ran.stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    useful = [line for line in lines if "error" in line.lower()] or lines
    return (useful[-1] if useful else default)[:300]


def _put(work: str, name: str, data: bytes) -> str:
    path = os.path.join(work, name)
    with open(path, "xb") as fh:
        fh.write(data)
    return path


def _load_trust(path: str) -> list[x509.Certificate]:
    from cryptography import x509

    try:
        with open(path, "rb") as fh:
            certs = x509.load_pem_x509_certificates(fh.read())
    except (OSError, ValueError) as exc:
        raise ConfigError("mailSmimeTrustFile %s: not a readable PEM certificate file (%s)"
                          % (path, type(exc).__name__)) from None
    return certs


def _load_recipient(path: str) -> _Recipient:
    """The key and certificate in *path*; errors name the file, never its content."""
    try:
        with open(path, "rb") as fh:
            pem = fh.read()
    except OSError as exc:
        raise ConfigError("mailSmimeKeyFile %s cannot be read: %s" % (path, exc.strerror)) from None
    return _recipient_from_pem(pem, "mailSmimeKeyFile %s" % path)


def _recipient_from_pem(pem: bytes, where: str) -> _Recipient:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    path = where  # named in every error; the PEM itself never is
    try:
        key = serialization.load_pem_private_key(pem, password=None)
        certs = x509.load_pem_x509_certificates(pem)
    except (ValueError, TypeError):
        raise ConfigError("%s must hold an unencrypted PEM private key and its PEM certificate" % path) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError("%s: only RSA keys can decrypt S/MIME here" % path)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    wanted = key.public_key().public_bytes(serialization.Encoding.DER, spki)
    mine = [c for c in certs if c.public_key().public_bytes(serialization.Encoding.DER, spki) == wanted]
    if not mine:
        raise ConfigError("%s: no certificate in it matches the private key" % path)
    return _Recipient(mine[0], key)
