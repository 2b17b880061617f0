"""Specification of TLS contexts (tlsRigour, mailCaFile) and of TLS error messages (no sockets)."""

from __future__ import annotations

import ssl

import pytest
import trustme

from mailingest.errors import ConfigError, TlsError
from mailingest.mailbox.account import MailAccount
from mailingest.mailbox.connection import ConnectionSettings, connection_error
from mailingest.security.tlsconfig import make_ssl_context

ACCOUNT = MailAccount(scheme="imaps", host="mail.example.com", port=993, username="alice")


@pytest.mark.parametrize("rigour", ["normal", "medium", "NORMAL", None])
def test_by_default_the_chain_and_host_name_are_verified(rigour):
    context = make_ssl_context(rigour)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_lax_verifies_nothing_and_says_so(caplog):
    settings = ConnectionSettings(tls_rigour="lax")
    assert settings.ssl_context.verify_mode == ssl.CERT_NONE and not settings.ssl_context.check_hostname
    assert "NOT verified" in caplog.text


def test_strict_adds_x509_strict_checks_and_forward_secret_aead_ciphers():
    context = make_ssl_context("strict")
    assert context.verify_flags & ssl.VERIFY_X509_STRICT
    tls12 = [c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12 and all(name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20" in name) for name in tls12)


def test_unknown_rigour_is_a_config_error():
    with pytest.raises(ConfigError, match="tlsRigour 'paranoid' is not one of lax, normal, medium, strict"):
        make_ssl_context("paranoid")


def test_the_ca_file_is_added_to_the_system_roots(tmp_path):
    ca = trustme.CA(organization_name="private CA for mailingest")
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    base = make_ssl_context("normal").cert_store_stats()["x509_ca"]
    context = make_ssl_context("normal", str(path))
    assert context.cert_store_stats()["x509_ca"] == base + 1
    assert any(("organizationName", "private CA for mailingest") in rdn for cert in context.get_ca_certs()
               for rdn in cert["subject"])


@pytest.mark.parametrize("content", [None, b"not a certificate"])
def test_an_unusable_ca_file_is_a_config_error_naming_it(tmp_path, content):
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=f"cannot load mailCaFile '{path}'"):
        make_ssl_context("normal", str(path))


def verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {message}")
    exc.verify_code, exc.verify_message = code, message
    return exc


@pytest.mark.parametrize("code, message, advice", [
    (19, "self-signed certificate in certificate chain", "set mailCaFile to the CA that signed it"),
    (20, "unable to get local issuer certificate", "set mailCaFile to the CA that signed it"),
    (62, "Hostname mismatch, certificate is not valid for 'mail.example.com'.", "not for this host name"),
    (10, "certificate has expired", "outside its validity period"),
])
def test_certificate_errors_say_what_is_wrong_and_what_to_try(code, message, advice):
    error = connection_error(ACCOUNT, verify_error(code, message))
    assert isinstance(error, TlsError)
    assert str(error).startswith("cannot connect to imaps://alice@mail.example.com:993: ")
    assert message in str(error) and advice in str(error)
