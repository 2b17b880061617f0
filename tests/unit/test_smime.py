"""Specification of S/MIME in the decoder (mailingest.mime.smime, mailingest.mime.containers).

Certificates and keys are made fresh by :py:mod:`tests.smime_pki` (nothing committed)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from mailingest.errors import ConfigError
from mailingest.mime.containers import Formats
from mailingest.mime.layout import DecodeSettings, decode_file
from mailingest.mime.parse import DecodedMail, decode_bytes
from mailingest.mime.smime import Smime, SmimeSettings
from tests import smime_pki as pki_mod
from tests.smime_pki import CSV, PDF

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None,
                                   reason="the openssl command (signature checks) is not installed")


@pytest.fixture(scope="module")
def pki() -> pki_mod.Pki:
    return pki_mod.make_pki()


@pytest.fixture(scope="module")
def material(pki, tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("smime")
    files = {"trust": pki.ca.cert_pem(), "key": pki.recipient.pem(), "pinned": pki.signer.cert_pem(),
             "other-key": pki.other_recipient.pem()}
    paths = {}
    for name, data in files.items():
        path = folder / (name + ".pem")
        path.write_bytes(data)
        path.chmod(0o600)
        paths[name] = str(path)
    return paths


def formats(material, *, trust: str | None = "trust", key: str | None = "key") -> Formats:
    return Formats(smime=Smime(SmimeSettings(trust_file=material[trust] if trust else None,
                                             key_file=material[key] if key else None)))


def attachments(decoded: DecodedMail) -> dict[str, bytes]:
    return {p.filename: bytes(p.data) for p in decoded.parts if p.filename in ("report.pdf", "obs.csv")}


def verdicts(decoded: DecodedMail) -> list[str]:
    return [str(v["verdict"]) for v in decoded.smime]


# -- opaque signed ----------------------------------------------------------------------------------
@needs_openssl
def test_an_opaque_signed_message_gives_its_attachments_byte_exact_and_a_good_verdict(pki, material):
    decoded = decode_bytes(pki_mod.opaque_signed(pki.signer), formats=formats(material))
    assert attachments(decoded) == {"report.pdf": PDF, "obs.csv": CSV}
    assert [p.kind for p in decoded.parts if p.number.startswith("1.smime")][0] == "body-text"
    assert any(p.filename == "smime.p7m" for p in decoded.parts)  # the signed blob is kept as it came
    (verdict,) = decoded.smime
    assert verdict["verdict"] == "good" and verdict["type"] == "signed-data" and verdict["signatureValid"] is True
    assert verdict["signer"]["emails"] == ["signer@example.org"]
    assert "Mailingest Test CA" in verdict["signer"]["issuer"]


@needs_openssl
def test_an_opaque_signed_message_with_altered_content_is_tampered_but_still_decoded(pki, material):
    der = pki_mod.sign_opaque_der(pki_mod.inner_entity(), pki.signer)
    altered = der.replace(b"Observations attached.", b"Observations ALTERED!!")
    assert altered != der
    decoded = decode_bytes(pki_mod.opaque_signed(pki.signer, der=altered), formats=formats(material))
    assert verdicts(decoded) == ["tampered"]
    assert decoded.smime[0]["signatureValid"] is False
    assert attachments(decoded) == {"report.pdf": PDF, "obs.csv": CSV}


@needs_openssl
def test_a_signer_from_an_unknown_ca_is_unknown_ca(pki, material):
    decoded = decode_bytes(pki_mod.opaque_signed(pki.stranger), formats=formats(material))
    assert verdicts(decoded) == ["unknown-ca"] and decoded.smime[0]["signatureValid"] is True


@needs_openssl
def test_an_expired_signer_certificate_is_expired(pki, material):
    decoded = decode_bytes(pki_mod.opaque_signed(pki.expired_signer), formats=formats(material))
    assert verdicts(decoded) == ["expired"]
    assert decoded.smime[0]["signer"]["validNow"] is False


@needs_openssl
def test_without_a_trust_file_the_signature_is_checked_but_unverified(pki, material):
    decoded = decode_bytes(pki_mod.opaque_signed(pki.stranger), formats=formats(material, trust=None))
    assert verdicts(decoded) == ["unverified"] and decoded.smime[0]["signatureValid"] is True


@needs_openssl
def test_a_pinned_signer_certificate_is_trusted_without_its_ca(pki, material):
    decoded = decode_bytes(pki_mod.opaque_signed(pki.signer), formats=formats(material, trust="pinned"))
    assert verdicts(decoded) == ["good"]


def test_an_unreadable_signed_blob_is_kept_with_the_verdict_invalid(pki, material):
    raw = pki_mod.opaque_signed(pki.signer, der=b"\x30\x03\x02\x01\x01 not cms")
    decoded = decode_bytes(raw, formats=formats(material))
    assert verdicts(decoded) == ["invalid"]
    assert [p.filename for p in decoded.parts] == ["smime.p7m"]


# -- detached signatures ----------------------------------------------------------------------------
@needs_openssl
@pytest.mark.parametrize("linesep", [b"\r\n", b"\n"], ids=["CRLF", "LF"])
def test_a_detached_signature_is_verified_against_the_signed_part_as_it_came(pki, material, linesep):
    decoded = decode_bytes(pki_mod.detached_signed(pki.signer, linesep=linesep), formats=formats(material))
    assert verdicts(decoded) == ["good"]
    assert decoded.smime[0]["type"] == "detached-signature"
    assert attachments(decoded) == {"report.pdf": PDF, "obs.csv": CSV}
    assert any(p.filename == "smime.p7s" for p in decoded.parts)


@needs_openssl
def test_a_detached_signature_over_altered_content_is_tampered(pki, material):
    decoded = decode_bytes(pki_mod.detached_signed(pki.signer, tamper=True), formats=formats(material))
    assert verdicts(decoded) == ["tampered"]


@needs_openssl
def test_detached_signatures_checked_during_the_walk_give_the_verdicts_of_checks_made_in_place(pki, material):
    """openssl checks a detached signature in a thread while the walk goes on: the verdicts,
    their order and their fields are those of Smime.verify_detached, and no check outlives
    the decode."""
    import re
    import threading

    outer = pki_mod.detached_signed(pki.signer)
    tampered = pki_mod.detached_signed(pki.signer, tamper=True)
    raw = (b"Content-Type: multipart/mixed; boundary=outer\n\n--outer\n" + outer + b"\n--outer\n"
           + tampered + b"\n--outer--\n")
    smime = formats(material)
    before = threading.active_count()
    decoded = decode_bytes(raw, formats=smime)
    assert threading.active_count() == before
    assert verdicts(decoded) == ["good", "tampered"]
    in_place = []
    real_start = Smime.start_detached

    class Done:
        def __init__(self, verdict):
            self.verdict = verdict

        def result(self):
            return self.verdict

    try:
        Smime.start_detached = lambda self, content, signature: Done(self.verify_detached(content, signature))
        in_place = [dict(v) for v in decode_bytes(raw, formats=smime).smime]
    finally:
        Smime.start_detached = real_start
    def comparable(verdict):  # OpenSSL starts its messages with the address of its thread
        return [(k, re.sub(r"\b[0-9A-F]{8,16}:error:", ":error:", v) if isinstance(v, str) else v)
                for k, v in dict(verdict).items()]

    assert [comparable(d) for d in in_place] == [comparable(d) for d in decoded.smime]  # fields in order


def test_a_failing_background_check_fails_the_decode_as_a_check_in_place_did(pki, material, monkeypatch):
    def broken(self, content, signature, signer):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Smime, "_detached", broken)
    with pytest.raises(OSError, match="No space left"):
        decode_bytes(pki_mod.detached_signed(pki.signer), formats=formats(material))


# -- encrypted ----------------------------------------------------------------------------------------
def test_an_encrypted_message_is_decrypted_with_the_configured_key(pki, material):
    decoded = decode_bytes(pki_mod.encrypted(pki.recipient), formats=formats(material))
    assert verdicts(decoded) == ["decrypted"]
    assert decoded.smime[0]["recipient"]["emails"] == ["ingest@example.net"]
    assert attachments(decoded) == {"report.pdf": PDF, "obs.csv": CSV}


def test_a_message_for_another_recipient_is_wrong_key_and_kept_encrypted(pki, material):
    raw = pki_mod.encrypted(pki.other_recipient)
    decoded = decode_bytes(raw, formats=formats(material))
    assert verdicts(decoded) == ["wrong-key"]
    assert [p.filename for p in decoded.parts] == ["smime.p7m"]
    assert decoded.parts[0].data  # the encrypted blob itself


def test_without_a_key_an_encrypted_message_is_no_key(pki, material):
    decoded = decode_bytes(pki_mod.encrypted(pki.recipient), formats=formats(material, key=None))
    assert verdicts(decoded) == ["no-key"]


@needs_openssl
def test_a_signed_then_encrypted_message_gives_both_verdicts_and_the_attachments(pki, material):
    decoded = decode_bytes(pki_mod.signed_then_encrypted(pki.signer, pki.recipient), formats=formats(material))
    assert verdicts(decoded) == ["decrypted", "good"]
    assert [v["mimePart"] for v in decoded.smime] == ["1", "1.smime"]
    assert attachments(decoded) == {"report.pdf": PDF, "obs.csv": CSV}


def test_with_smime_off_the_parts_are_written_as_they_are_without_verdict(pki):
    decoded = decode_bytes(pki_mod.encrypted(pki.recipient), formats=Formats(smime=None))
    assert decoded.smime == () and [p.filename for p in decoded.parts] == ["smime.p7m"]


# -- on disk, and the key material --------------------------------------------------------------------
@needs_openssl
def test_metadata_json_lists_the_verdicts(pki, material, tmp_path):
    eml = tmp_path / "x.eml"
    eml.write_bytes(pki_mod.signed_then_encrypted(pki.signer, pki.recipient))
    result = decode_file(str(eml), settings=DecodeSettings(fsync=False, formats=formats(material)))
    meta = json.loads((tmp_path / "x.parts" / "metadata.json").read_text(encoding="utf-8"))
    assert [v["verdict"] for v in meta["smime"]] == ["decrypted", "good"]
    assert [v["verdict"] for v in result.smime] == ["decrypted", "good"]
    assert (tmp_path / "x.parts" / "report.pdf").read_bytes() == PDF


def test_the_private_key_never_reaches_a_log_a_verdict_or_a_file(pki, material, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    eml = tmp_path / "x.eml"
    eml.write_bytes(pki_mod.encrypted(pki.recipient))
    decode_file(str(eml), settings=DecodeSettings(fsync=False, formats=formats(material)))
    secret = Path(material["key"]).read_text().split("-----")[2].strip().splitlines()[0]
    assert secret and secret not in caplog.text
    for written in (tmp_path / "x.parts").iterdir():
        assert secret.encode() not in written.read_bytes()
    assert "RSAPrivateKey" not in repr(formats(material).smime.recipient)


def test_a_bad_key_file_is_a_config_error_naming_the_file_not_its_content(tmp_path):
    bad = tmp_path / "key.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError) as caught:
        Smime(SmimeSettings(key_file=str(bad)))
    assert str(bad) in str(caught.value) and "c2VjcmV0" not in str(caught.value)
    with pytest.raises(ConfigError, match="cannot be read"):
        Smime(SmimeSettings(key_file=str(tmp_path / "missing.pem")))
    with pytest.raises(ConfigError, match="mailSmimeTrustFile"):
        Smime(SmimeSettings(trust_file=str(bad)))


def test_a_key_file_whose_certificate_does_not_match_is_refused(pki, tmp_path):
    mixed = tmp_path / "mixed.pem"
    mixed.write_bytes(pki.recipient.pem().split(b"-----BEGIN CERTIFICATE")[0] + pki.signer.cert_pem())
    with pytest.raises(ConfigError, match="matches the private key"):
        Smime(SmimeSettings(key_file=str(mixed)))


@needs_openssl
def test_a_message_signed_by_the_openssl_command_in_streamed_ber_is_unwrapped_and_verified(pki, material, tmp_path):
    """Interoperability: OpenSSL's own S/MIME writer (streaming: BER, indefinite lengths)."""
    import subprocess

    key, cert, content = tmp_path / "k.pem", tmp_path / "c.pem", tmp_path / "in.eml"
    key.write_bytes(pki.signer.pem().split(b"-----BEGIN CERTIFICATE")[0])
    cert.write_bytes(pki.signer.cert_pem())
    content.write_bytes(pki_mod.inner_entity())
    signed = subprocess.run(["openssl", "cms", "-sign", "-nodetach", "-stream", "-binary", "-in", str(content),
                             "-signer", str(cert), "-inkey", str(key), "-outform", "SMIME"],
                            capture_output=True, check=True).stdout
    raw = b"From: signer@example.org\r\nTo: ingest@example.net\r\nSubject: obs\r\n" + signed.replace(b"\r\n", b"\n") \
        .replace(b"\n", b"\r\n")
    decoded = decode_bytes(raw, formats=formats(material))
    assert verdicts(decoded) == ["good"]
    assert decoded.smime[0]["signer"]["emails"] == ["signer@example.org"]
    assert attachments(decoded) == {"report.pdf": PDF, "obs.csv": CSV}


@needs_openssl
def test_without_smime_type_the_kind_is_read_from_the_content_type_identifier(pki, material):
    signed = pki_mod.opaque_signed(pki.signer).replace(b" smime-type=signed-data;", b"")
    sealed = pki_mod.encrypted(pki.recipient).replace(b" smime-type=enveloped-data;", b"")
    assert b"smime-type" not in signed + sealed
    assert verdicts(decode_bytes(signed, formats=formats(material))) == ["good"]
    assert verdicts(decode_bytes(sealed, formats=formats(material))) == ["decrypted"]


def test_only_the_first_16_smime_parts_of_a_message_are_opened_the_rest_kept_with_skipped(pki, material):
    import base64

    from mailingest.mime.containers import MAX_SMIME_PARTS

    blob = base64.encodebytes(pki_mod.encrypt_der(b"Content-Type: text/plain\r\n\r\nsecret\r\n", pki.recipient))
    part = (b"--B\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\n"
            b"Content-Transfer-Encoding: base64\n\n" + blob)
    raw = b"From: a@example.org\nContent-Type: multipart/mixed; boundary=B\n\n" + part * 40 + b"--B--\n"
    decoded = decode_bytes(raw, formats=formats(material))
    assert verdicts(decoded) == ["decrypted"] * MAX_SMIME_PARTS + ["skipped"] * (40 - MAX_SMIME_PARTS)
    assert sum(p.filename == "smime.p7m" for p in decoded.parts) == 40


def test_the_signers_certificates_are_read_by_cryptographys_public_pkcs7_reader_itself():
    """smime.py takes the reader from the compiled binding (sparing the import of
    cryptography's serialization package): it must be the very function the public API names."""
    from cryptography.hazmat.primitives.serialization import pkcs7

    from mailingest.mime.smime import pkcs7_certificates_reader

    assert pkcs7_certificates_reader() is pkcs7.load_der_pkcs7_certificates
