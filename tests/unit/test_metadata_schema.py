"""Specification of metadata.json: every file the decoder writes validates against the JSON Schema
shipped in the package (plugins/mailingest/mime/metadata.schema.json, draft 2020-12)."""

from __future__ import annotations

import binascii
import json
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from mailingest.errors import MimeError
from mailingest.mime.layout import SCHEMA, DecodeSettings, decode_file, metadata_json
from mailingest.mime.parse import DecodeLimits
from tests.mailgen import eight_bit_message, sample_message
from tests.unit.test_decode_hardening import multipart, text
from tests.unit.test_mime import PDF, crlf, mixed, named_part, text_part

CORPUS = Path("/work/shared/corpus/messages")


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(resources.files("mailingest.mime").joinpath("metadata.schema.json").read_text("utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def decoded_metadata(tmp_path: Path, raw: bytes, name: str = "x.eml", **settings) -> list[Path]:
    """Decode *raw* as the flow does (x.eml -> x.parts/) and return every metadata.json written."""
    path = tmp_path / name
    path.write_bytes(raw)
    result = decode_file(str(path), settings=DecodeSettings(fsync=False, **settings),
                         mail={"folder": "INBOX", "uidvalidity": 1700000000, "uid": 101, "size": len(raw)})
    found = sorted(Path(result.directory).rglob("metadata.json"))
    assert found, "every decoded message level has a metadata.json"
    return found


def assert_valid(validator: Draft202012Validator, path: Path) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
              for e in validator.iter_errors(json.loads(path.read_text("utf-8")))]
    assert not errors, f"{path} does not match metadata.schema.json: {errors[:5]}"


UUENCODED = b"begin 644 data.bin\n" + b"".join(binascii.b2a_uu(bytes(range(i, i + 45))) for i in range(0, 180, 45)) \
    + b"`\nend\n"
ATTACHED = (b"Content-Type: message/rfc822\nContent-Disposition: attachment; filename=fwd.eml\n\n"
            b"From: b@example.org\nSubject: inner\n\ninner body\n")
HTML = b"Content-Type: text/html; charset=iso-8859-1\n\n<p>caf\xe9</p>\n"

MESSAGES = {
    "a generated message with attachments": (sample_message(7), {}),
    "a generated message without attachments": (sample_message(8, attachments=False), {}),
    "an 8-bit message": (eight_bit_message(3), {}),
    "bodies, a named attachment and an inline part": (mixed(text_part("héllo\n"), named_part(
        b"Content-Disposition: attachment; filename=\"report.pdf\"\n"), named_part(
        b"Content-Disposition: inline\nContent-ID: <logo@x>\n")), {}),
    "an attached message, decoded in turn": (multipart(text(b"see attached"), ATTACHED), {}),
    "an html body and a uuencoded block": (multipart(text(b"here:\n" + UUENCODED), HTML), {}),
    "a partial decode past max_parts": (multipart(text(b"x"), *[
        b"Content-Type: application/octet-stream\nContent-Disposition: attachment; filename=f%d.bin\n\nd%d" % (i, i)
        for i in range(6)], ATTACHED), {"limits": DecodeLimits(max_parts=3)}),
    "a message with parser defects": (crlf("From: a@example.org\nContent-Type: multipart/mixed\n\nno boundary\n"),
                                      {}),
    "a message without headers": (b"\n\njust a body\n", {}),
    "a binary attachment with an 8-bit name": (mixed(named_part(
        "Content-Disposition: attachment; filename=\"données.bin\"\n".encode("latin-1"), PDF)), {}),
}


@pytest.mark.parametrize("shape", sorted(MESSAGES))
def test_every_metadata_json_the_decoder_writes_matches_the_schema(tmp_path, validator, shape):
    raw, settings = MESSAGES[shape]
    for path in decoded_metadata(tmp_path, raw, **settings):
        assert_valid(validator, path)


def test_the_schema_names_the_schema_string_the_decoder_writes(validator):
    assert validator.schema["properties"]["schema"] == {"const": SCHEMA}


def test_the_schema_is_not_vacuous(tmp_path, validator):
    (path,) = decoded_metadata(tmp_path, sample_message(1, attachments=False))
    good = json.loads(path.read_text("utf-8"))
    for broken in ({**good, "schema": "mailingest-decode/2"},
                   {**good, "parts": [{**good["parts"][0], "kind": "picture"}]},
                   {**good, "parts": [{**good["parts"][0], "file": "../escape"}]},
                   {**good, "status": "decoded", "bounds": ["max_parts (3) reached"]},
                   {key: value for key, value in good.items() if key != "defects"},
                   {**good, "surprise": True}):
        assert not validator.is_valid(broken), broken


def corpus_messages() -> list[Path]:
    return sorted(CORPUS.rglob("*.eml")) if CORPUS.is_dir() else []


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"the shared MIME corpus is not on this machine ({CORPUS})")
def test_the_metadata_json_of_every_corpus_message_matches_the_schema(tmp_path, validator):
    checked = 0
    for index, eml in enumerate(corpus_messages()):
        work = tmp_path / str(index)
        work.mkdir()
        try:
            found = decoded_metadata(work, eml.read_bytes(), name=eml.name)
        except MimeError:  # not decodable at all: no metadata.json is written, by design
            continue
        for path in found:
            assert_valid(validator, path)
            checked += 1
    assert checked >= len(corpus_messages())


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),  # text: lone surrogates included
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10)


@given(st.dictionaries(st.text(max_size=8), _JSON_VALUES, max_size=6))
def test_metadata_json_reads_back_as_the_indented_json_it_replaces(meta):
    def written(text: str) -> bytes:
        return text.encode("utf-8", "backslashreplace")

    indented = written(json.dumps(meta, ensure_ascii=False, indent=1, default=str) + "\n")
    assert json.loads(written(metadata_json(meta))) == json.loads(indented)


def test_metadata_json_has_one_key_and_one_list_item_per_line():
    text = metadata_json({"schema": SCHEMA, "to": ["a@x", "b@x"], "cc": [], "parts": [{"file": "a", "size": 1}],
                          "mail": {"uid": 1}})
    assert text == ('{\n "schema": "mailingest-decode/1",\n "to": [\n  "a@x",\n  "b@x"\n ],\n "cc": [],\n'
                    ' "parts": [\n  {"file": "a", "size": 1}\n ],\n "mail": {"uid": 1}\n}\n')
