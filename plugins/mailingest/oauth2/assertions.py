"""Signed JWTs for app-only OAuth2 (RFC 7523): keys, certificates, client assertions and grants.

Two uses, both a JWT signed with a private key the app holds (PyJWT signs, ``cryptography``
reads the PEM and the certificate):

* a **client assertion** (RFC 7523 section 2.2): the app authenticates with a certificate
  instead of a client secret (Microsoft Entra client credentials).  ``iss`` = ``sub`` = the
  client id, ``aud`` = the token URL, a fresh ``jti``; the header names the certificate by its
  SHA-1 thumbprint (``x5t``), which is how Entra finds the key to check;
* an **authorization grant** (RFC 7523 section 2.1): a Google service account asks for a token
  on behalf of a user of its domain (domain-wide delegation).  ``iss`` = the service account's
  e-mail, ``sub`` = the mailbox, ``scope``, ``aud`` = the token URL; the header's ``kid`` is
  the key's id.

No I/O but reading the files named in the options.  PyJWT is imported when a JWT is first
signed or read, so a host without it loses only the app-only flows (``cryptography`` comes
with sr3's paramiko).  Keys never show in ``repr``; error
messages name files and thumbprints, never key material.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import stat
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mailingest.errors import ConfigError

if TYPE_CHECKING:  # cryptography.x509 costs ~10 ms to import: loaded when a key or certificate is read
    from cryptography import x509

#: lifetime of an assertion we sign (Entra accepts up to 10 min of clock skew; Google at most 1 h)
ASSERTION_LIFETIME = 600
#: the grant type of RFC 7523 section 2.1 (service accounts)
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: the client assertion type of RFC 7523 section 2.2 (certificate credentials)
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass(frozen=True)
class SigningKey:
    """A private key, the certificate that goes with it (if any) and where both came from."""

    private_key: Any = field(repr=False, compare=False)
    #: where the key came from, for messages (a file name, or "the keyring (service ...)")
    origin: str = ""
    certificate: x509.Certificate | None = field(default=None, repr=False, compare=False)
    #: Google's private_key_id (the JWT header's ``kid``)
    key_id: str = ""

    @property
    def algorithm(self) -> str:
        from cryptography.hazmat.primitives.asymmetric import ec

        return "ES256" if isinstance(self.private_key, ec.EllipticCurvePrivateKey) else "RS256"

    @property
    def thumbprint(self) -> str:
        """The certificate's SHA-1 thumbprint in hex, as Entra shows it (empty without certificate)."""
        from cryptography.hazmat.primitives import hashes

        return self.certificate.fingerprint(hashes.SHA1()).hex().upper() if self.certificate else ""  # noqa: S303

    def headers(self) -> dict[str, str]:
        headers = {"typ": "JWT"}
        if self.certificate is not None:
            from cryptography.hazmat.primitives import hashes

            digest = self.certificate.fingerprint(hashes.SHA1())  # noqa: S303 - x5t is SHA-1 by definition
            headers["x5t"] = _b64url(digest)
        if self.key_id:
            headers["kid"] = self.key_id
        return headers

    def describe(self) -> str:
        """The key for messages: its certificate's thumbprint, or where it came from."""
        if self.certificate is not None:
            return f"certificate {self.thumbprint}"
        return f"key from {self.origin}" if self.origin else "key"


@dataclass(frozen=True)
class ServiceAccount:
    """A Google service account key file (``"type": "service_account"``)."""

    client_email: str
    client_id: str
    token_url: str
    key: SigningKey = field(repr=False, compare=False)
    path: str = ""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _utc(value: datetime.datetime) -> datetime.datetime:
    return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)


def not_valid_after(certificate: x509.Certificate) -> datetime.datetime:
    return _utc(getattr(certificate, "not_valid_after_utc", None) or certificate.not_valid_after)


def not_valid_before(certificate: x509.Certificate) -> datetime.datetime:
    return _utc(getattr(certificate, "not_valid_before_utc", None) or certificate.not_valid_before)


# -- reading keys ---------------------------------------------------------------------------------

def _read_private_file(path: str, what: str) -> bytes:
    """The bytes of a file that holds a private key: readable by its owner only."""
    try:
        mode = os.stat(path).st_mode
        with open(path, "rb") as handle:
            data = handle.read(1 << 20)
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{what} {path} is readable by others (mode {stat.S_IMODE(mode):04o}): "
                          f"run 'chmod 600 {path}'")
    return data


def private_key_from_pem(data: bytes, origin: str) -> Any:
    """The private key in PEM *data* (other PEM blocks, such as certificates, are skipped).

    :raises ConfigError: no private key, an encrypted one, or a kind JWTs cannot use.
    """
    if b"PRIVATE KEY-----" not in data:
        raise ConfigError(f"{origin} holds no PEM private key (-----BEGIN PRIVATE KEY-----)")
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ConfigError(f"the private key in {origin} is encrypted: store it unencrypted, readable by the "
                          f"feeder only (openssl pkey -in KEY -out KEY.pem; chmod 600 KEY.pem)") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(f"{origin} holds a private key that cannot be read (expected PEM, RSA or EC)") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise ConfigError(f"the private key in {origin} is neither RSA nor EC: JWT assertions need one of those")
    return key


def certificate_from_pem(data: bytes, origin: str) -> x509.Certificate:
    """The first certificate in PEM *data*.

    :raises ConfigError: none there.
    """
    start = data.find(b"-----BEGIN CERTIFICATE-----")
    if start < 0:
        raise ConfigError(f"{origin} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificate(data[start:])
    except ValueError:
        raise ConfigError(f"the certificate in {origin} cannot be read (expected PEM)") from None


def load_certificate(certificate_file: str) -> x509.Certificate:
    try:
        with open(certificate_file, "rb") as handle:
            data = handle.read(1 << 20)
    except OSError as exc:
        raise ConfigError(f"cannot read mailOAuth2CertificateFile {certificate_file}: {exc.strerror}") from None
    return certificate_from_pem(data, f"mailOAuth2CertificateFile {certificate_file}")


def load_signing_key(certificate_file: str | None, private_key_file: str | None) -> SigningKey | None:
    """The key (and certificate) the options name, or None when the key is not in a file
    (then it is looked up in the keyring when a token is needed: :func:`signing_key_from_pem`).

    The certificate file may also hold the key (one PEM with both, as ``openssl req -x509 -nodes``
    writes it); then it must be readable by its owner only, like the key file.

    :raises ConfigError: an unreadable file, no certificate or key where one is named, a key
        that does not belong to the certificate.
    """
    certificate = load_certificate(certificate_file) if certificate_file else None
    if private_key_file:
        origin = f"mailOAuth2PrivateKeyFile {private_key_file}"
        key = private_key_from_pem(_read_private_file(private_key_file, "mailOAuth2PrivateKeyFile"), origin)
    elif certificate_file:
        with open(certificate_file, "rb") as handle:
            data = handle.read(1 << 20)
        if b"PRIVATE KEY-----" not in data:
            return None
        origin = f"mailOAuth2CertificateFile {certificate_file}"
        key = private_key_from_pem(_read_private_file(certificate_file, "mailOAuth2CertificateFile"), origin)
    else:
        return None
    signing_key = SigningKey(key, origin, certificate)
    check_pair(signing_key)
    return signing_key


def signing_key_from_pem(pem: str, origin: str, certificate: x509.Certificate | None) -> SigningKey:
    """A key kept as PEM text (in the keyring), with the certificate of the options.

    :raises ConfigError: no usable key, or one that does not belong to the certificate.
    """
    data = pem.encode("utf-8", "replace")
    if certificate is None and b"-----BEGIN CERTIFICATE-----" in data:
        certificate = certificate_from_pem(data, origin)
    signing_key = SigningKey(private_key_from_pem(data, origin), origin, certificate)
    check_pair(signing_key)
    return signing_key


def check_pair(signing_key: SigningKey) -> None:
    """:raises ConfigError: the key is not the certificate's (a copy-and-paste slip made at rotation)."""
    if signing_key.certificate is None:
        return
    from cryptography.hazmat.primitives import serialization

    ours = signing_key.private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    theirs = signing_key.certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if ours != theirs:
        raise ConfigError(f"the private key from {signing_key.origin} does not belong to certificate "
                          f"{signing_key.thumbprint}: give the key that was created with that certificate")


def load_service_account(path: str) -> ServiceAccount:
    """The service account key file Google issues (IAM -> Service accounts -> Keys -> JSON).

    :raises ConfigError: unreadable, readable by others, not JSON, not a service account key.
    """
    what = "mailOAuth2ServiceAccountFile"
    data = _read_private_file(path, what)
    try:
        decoded = json.loads(data)
    except ValueError:
        raise ConfigError(f"{what} {path} is not valid JSON") from None
    if not isinstance(decoded, dict) or decoded.get("type") != "service_account":
        raise ConfigError(f"{what} {path} is not a service account key (expected the JSON key file Google "
                          f"issues, with \"type\": \"service_account\")")
    missing = [name for name in ("client_email", "private_key") if not decoded.get(name)]
    if missing:
        raise ConfigError(f"{what} {path} has no {' and no '.join(missing)}")
    key = private_key_from_pem(str(decoded["private_key"]).encode("utf-8", "replace"), f"{what} {path}")
    return ServiceAccount(
        client_email=str(decoded["client_email"]), client_id=str(decoded.get("client_id") or ""),
        token_url=str(decoded.get("token_uri") or ""),
        key=SigningKey(key, f"{what} {path}", key_id=str(decoded.get("private_key_id") or "")), path=path)


# -- signing --------------------------------------------------------------------------------------

def _jwt() -> Any:
    try:
        import jwt
    except ImportError:
        raise ConfigError("app-only OAuth2 needs the PyJWT package: pip install PyJWT (into sr3's Python)") from None
    return jwt


def _sign(signing_key: SigningKey, claims: dict[str, Any]) -> str:
    return str(_jwt().encode(claims, signing_key.private_key, algorithm=signing_key.algorithm,
                             headers=signing_key.headers()))


def client_assertion(signing_key: SigningKey, client_id: str, audience: str, now: float) -> str:
    """A client assertion (RFC 7523 section 2.2) for *client_id* at the token URL *audience*."""
    issued = int(now)
    return _sign(signing_key, {"iss": client_id, "sub": client_id, "aud": audience, "jti": str(uuid.uuid4()),
                               "iat": issued, "nbf": issued, "exp": issued + ASSERTION_LIFETIME})


def grant_assertion(account: ServiceAccount, subject: str, scope: str, audience: str, now: float) -> str:
    """An authorization grant (RFC 7523 section 2.1): *account* acting as the user *subject*."""
    issued = int(now)
    return _sign(account.key, {"iss": account.client_email, "sub": subject, "scope": scope, "aud": audience,
                               "iat": issued, "exp": issued + ASSERTION_LIFETIME})


def token_claims(token: str) -> dict[str, Any]:
    """The claims of an access token that is a JWT (Entra's are), unverified: only to *show* what
    the provider granted (``roles``, ``aud``, ``tid``); {} for an opaque token."""
    jwt = _jwt()
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
    return claims if isinstance(claims, dict) else {}
