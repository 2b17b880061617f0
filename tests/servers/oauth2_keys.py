"""Keys and certificates for the app-only OAuth2 tests: self-signed certificates (valid, expired,
not yet valid) and Google-style service account key files.

Every private key is registered with *on_secret* (the whole PEM and each of its base64 lines,
so that a partial leak is found too).  Files holding keys are written 0600 and named
``*.secret.pem`` / ``*.secret.json``, which tests/secret_scan.py knows hold secrets on purpose.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


def _register(pem: str, on_secret: Callable[[str], None] | None) -> None:
    if on_secret is None:
        return
    on_secret(pem)
    for line in pem.splitlines():
        if not line.startswith("-----") and len(line) >= 32:
            on_secret(line)


def new_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def key_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@dataclass
class AppCertificate:
    """A self-signed certificate and its key, as an operator uploads to an Entra app registration."""

    certificate: x509.Certificate
    private_key: rsa.RSAPrivateKey = field(repr=False)

    @property
    def cert_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def key_pem(self) -> str:
        return key_pem(self.private_key)

    @property
    def thumbprint(self) -> str:
        return self.certificate.fingerprint(hashes.SHA1()).hex().upper()

    def write(self, path: Path, with_key: bool = True) -> Path:
        """The certificate (and its key) as one PEM file, mode 0600."""
        path.write_text(self.cert_pem + (self.key_pem if with_key else ""))
        path.chmod(0o600)
        return path

    def write_key(self, path: Path) -> Path:
        path.write_text(self.key_pem)
        path.chmod(0o600)
        return path


def new_certificate(common_name: str = "mailingest-test-app", *, valid_from_days: float = -1,
                    valid_days: float = 30, key: rsa.RSAPrivateKey | None = None,
                    on_secret: Callable[[str], None] | None = None) -> AppCertificate:
    """A self-signed certificate valid from now + *valid_from_days* for *valid_days* (negative
    *valid_from_days* and a short *valid_days*: an expired certificate)."""
    key = key or new_private_key()
    now = datetime.datetime.now(datetime.timezone.utc)
    start = now + datetime.timedelta(days=valid_from_days)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(start)
                   .not_valid_after(start + datetime.timedelta(days=valid_days))
                   .sign(key, hashes.SHA256()))
    result = AppCertificate(certificate, key)
    _register(result.key_pem, on_secret)
    return result


@dataclass
class ServiceAccountKey:
    """A Google service account and one of its keys."""

    client_email: str
    client_id: str
    key_id: str
    private_key: rsa.RSAPrivateKey = field(repr=False)

    def json(self, token_uri: str) -> dict:
        return {"type": "service_account", "project_id": "mailingest-test", "private_key_id": self.key_id,
                "private_key": key_pem(self.private_key), "client_email": self.client_email,
                "client_id": self.client_id, "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                "token_uri": token_uri}

    def write(self, path: Path, token_uri: str) -> Path:
        path.write_text(json.dumps(self.json(token_uri), indent=2))
        path.chmod(0o600)
        return path


def new_service_account(name: str, client_id: str, key_id: str,
                        on_secret: Callable[[str], None] | None = None) -> ServiceAccountKey:
    account = ServiceAccountKey(f"{name}@mailingest-test.iam.gserviceaccount.com", client_id, key_id,
                                new_private_key())
    _register(key_pem(account.private_key), on_secret)
    return account
