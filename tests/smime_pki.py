"""Test-only S/MIME material, made fresh in memory with ``cryptography`` (nothing is committed):
a CA, a second CA nobody trusts, signers (good, expired, from the other CA), recipients, and
builders for opaque-signed, detached-signed, encrypted and signed-then-encrypted messages."""

from __future__ import annotations

import base64
import datetime
import os
from dataclasses import dataclass
from email.message import EmailMessage

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime.datetime.now(datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Identity:
    cert: x509.Certificate
    key: rsa.RSAPrivateKey

    def pem(self) -> bytes:
        """Key and certificate in one PEM file (the mailSmimeKeyFile format)."""
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()) + self.cert_pem()

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_ca(name: str) -> Identity:
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - 30 * DAY).not_valid_after(NOW + 365 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return Identity(cert, key)


def make_person(ca: Identity, email: str, *, expired: bool = False) -> Identity:
    key = _key()
    start, end = (NOW - 60 * DAY, NOW - 10 * DAY) if expired else (NOW - DAY, NOW + 90 * DAY)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, email.split("@")[0]),
                                     x509.NameAttribute(NameOID.EMAIL_ADDRESS, email)]))
            .issuer_name(ca.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
            .sign(ca.key, hashes.SHA256()))
    return Identity(cert, key)


@dataclass(frozen=True)
class Pki:
    ca: Identity
    other_ca: Identity
    signer: Identity
    expired_signer: Identity
    stranger: Identity  # issued by other_ca
    recipient: Identity
    other_recipient: Identity


def make_pki() -> Pki:
    ca, other = make_ca("Mailingest Test CA"), make_ca("Somebody Else's CA")
    return Pki(ca, other, make_person(ca, "signer@example.org"),
               make_person(ca, "old@example.org", expired=True), make_person(other, "stranger@example.org"),
               make_person(ca, "ingest@example.net"), make_person(ca, "someone@example.net"))


PDF = b"%PDF-1.4\n" + os.urandom(3000) + b"\n%%EOF\n\x00\x00"
CSV = b"station,temp\r\nYUL,-3.5\r\n"


def inner_entity() -> bytes:
    """The MIME entity that gets signed/encrypted: a text body and two attachments (CRLF)."""
    m = EmailMessage()
    m.set_content("Observations attached.\n")
    m.add_attachment(PDF, maintype="application", subtype="pdf", filename="report.pdf")
    m.add_attachment(CSV, maintype="text", subtype="csv", filename="obs.csv")
    raw = m.as_bytes(policy=m.policy.clone(linesep="\r\n"))
    return raw.split(b"\r\n", 1)[1] if raw.startswith(b"MIME-Version") else raw


def _envelope(headers: str, body: bytes) -> bytes:
    top = ("From: Signer <signer@example.org>\r\nTo: ingest@example.net\r\nSubject: obs\r\n"
           "Date: Mon, 02 Nov 2026 10:00:00 +0000\r\nMessage-ID: <smime-1@example.org>\r\nMIME-Version: 1.0\r\n")
    return (top + headers + "\r\n").encode() + body


def _b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def sign_opaque_der(content: bytes, signer: Identity) -> bytes:
    return (pkcs7.PKCS7SignatureBuilder().set_data(content).add_signer(signer.cert, signer.key, hashes.SHA256())
            .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary]))


def opaque_signed(signer: Identity, content: bytes | None = None, der: bytes | None = None) -> bytes:
    der = der if der is not None else sign_opaque_der(content or inner_entity(), signer)
    return _envelope('Content-Type: application/pkcs7-mime; smime-type=signed-data; name="smime.p7m"\r\n'
                     'Content-Transfer-Encoding: base64\r\n'
                     'Content-Disposition: attachment; filename="smime.p7m"\r\n', _b64(der))


def detached_signed(signer: Identity, content: bytes | None = None, *, tamper: bool = False,
                    linesep: bytes = b"\r\n") -> bytes:
    content = content or inner_entity()
    sig = (pkcs7.PKCS7SignatureBuilder().set_data(content).add_signer(signer.cert, signer.key, hashes.SHA256())
           .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary]))
    shown = content.replace(b"Observations attached.", b"Observations altered!!") if tamper else content
    body = (b"This is an S/MIME signed message\r\n--SIG\r\n" + shown + b"\r\n--SIG\r\n"
            b"Content-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n"
            b"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"smime.p7s\"\r\n\r\n"
            + _b64(sig) + b"\r\n--SIG--\r\n")
    raw = _envelope('Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; '
                    'boundary="SIG"\r\n', body)
    return raw.replace(b"\r\n", linesep)


def encrypt_der(content: bytes, recipient: Identity) -> bytes:
    return (pkcs7.PKCS7EnvelopeBuilder().set_data(content).add_recipient(recipient.cert)
            .encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary]))


def encrypted(recipient: Identity, content: bytes | None = None) -> bytes:
    der = encrypt_der(content or inner_entity(), recipient)
    return _envelope('Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"\r\n'
                     'Content-Transfer-Encoding: base64\r\n'
                     'Content-Disposition: attachment; filename="smime.p7m"\r\n', _b64(der))


def signed_then_encrypted(signer: Identity, recipient: Identity) -> bytes:
    signed_entity = (b'Content-Type: application/pkcs7-mime; smime-type=signed-data; name="smime.p7m"\r\n'
                     b"Content-Transfer-Encoding: base64\r\n\r\n" + _b64(sign_opaque_der(inner_entity(), signer)))
    return encrypted(recipient, signed_entity)
