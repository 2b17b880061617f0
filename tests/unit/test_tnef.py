"""Specification of TNEF (winmail.dat) unpacking: mailingest.mime.tnef and its hook in the decoder."""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path

import pytest

from mailingest.mime import tnef
from mailingest.mime.containers import Formats
from mailingest.mime.layout import DecodeSettings, decode_file
from mailingest.mime.parse import DecodeLimits, decode_bytes
from tests.fuzz.generators import mapi_blob, mapi_props, tnef_attribute, tnef_file, tnef_stream, winmail

REPO = Path(__file__).resolve().parents[2]
TNEF_CORPUS = Path(os.environ.get("MAILINGEST_CORPUS", REPO.parent / "shared" / "corpus")) / "tnef"
NO_FSYNC = DecodeSettings(fsync=False)


def corpus_expectations() -> dict[str, list[str]]:
    """{container stem: attachment names} from SOURCES.md ("bodies only" containers: [])."""
    sources = TNEF_CORPUS.parent / "SOURCES.md"
    if not sources.is_file():
        return {}
    text = " ".join(sources.read_text(encoding="utf-8").split("## tnef/", 1)[-1].split())
    start = text.find("expect them):")
    if start < 0:
        return {}
    listed = text[start + len("expect them):"):].split("Wrap one", 1)[0]
    found: dict[str, list[str]] = {}
    for chunk in re.split(r";\s*", listed):
        if ":" not in chunk:
            continue
        stems, names = chunk.split(":", 1)
        names = names.strip().rstrip(".")
        for stem in stems.split(","):
            found[stem.strip()] = [] if names.startswith("no attachment") else [n.strip() for n in names.split(", ")]
    return found


EXPECTED = corpus_expectations()
needs_tnef_corpus = pytest.mark.skipif(not EXPECTED or not TNEF_CORPUS.is_dir(),
                                       reason="shared TNEF corpus not found at %s" % TNEF_CORPUS)


def decode_winmail(tmp_path: Path, container: bytes, settings: DecodeSettings = NO_FSYNC, **kw: str) -> dict:
    eml = tmp_path / "x.eml"
    eml.write_bytes(winmail(container, **kw))
    decode_file(str(eml), settings=settings)
    return json.loads((tmp_path / "x.parts" / "metadata.json").read_text(encoding="utf-8"))


# -- the real containers ------------------------------------------------------------------------------
@needs_tnef_corpus
@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_every_listed_attachment_of_a_real_container_comes_out_with_its_long_name(stem, tmp_path):
    meta = decode_winmail(tmp_path, (TNEF_CORPUS / (stem + ".tnef")).read_bytes())
    unpacked = [p for p in meta["parts"] if p.get("container")]
    names = [p["originalName"] for p in unpacked if p["kind"] == "part"]
    wanted = EXPECTED[stem]
    if wanted == ["unknown.dat"]:  # the container names none: our fallback name, the bytes kept
        assert names == [None]
        assert [re.sub(r"\d+", "N", p["file"]) for p in unpacked if p["kind"] == "part"] == ["part-N.bin"]
    else:
        assert names == wanted
        files = sorted(p.name for p in (tmp_path / "x.parts").iterdir())
        for name in wanted:
            assert name in files, files
    if not wanted:  # bodies only: the bodies it holds are files; one with none is written whole
        bodies = [p for p in unpacked if p["kind"] == "tnef-body"]
        assert bodies or "winmail.dat" in [p["file"] for p in meta["parts"]], meta["parts"]
    for part in unpacked:
        assert part["mimePart"].startswith("2.tnef")
        assert part["container"]["originalName"] == "winmail.dat"
        assert part["container"]["format"] == "tnef"


@needs_tnef_corpus
def test_no_real_container_crashes_and_each_gives_files_or_bodies_or_is_kept(tmp_path):
    for path in sorted(TNEF_CORPUS.glob("*.tnef")):
        out = tmp_path / path.stem
        out.mkdir()
        meta = decode_winmail(out, path.read_bytes())
        kinds = {p["kind"] for p in meta["parts"] if p.get("container")}
        kept = any(p["originalName"] == "winmail.dat" for p in meta["parts"])
        assert kinds or kept, path.name


@needs_tnef_corpus
def test_attachment_bytes_are_whole_even_when_they_end_in_zero_bytes():
    found = tnef.unpack((TNEF_CORPUS / "MAPI_ATTACH_DATA_OBJ.tnef").read_bytes(), max_bytes=1 << 30, max_files=100)
    doc = found.files[0]
    assert doc.name == "VIA_Nytt_1402.doc"
    assert len(doc.data) % 512 == 0 and doc.data.startswith(bytes.fromhex("d0cf11e0a1b11ae1"))  # OLE sectors


@needs_tnef_corpus
def test_the_rtf_body_is_decompressed():
    found = tnef.unpack((TNEF_CORPUS / "rtf.tnef").read_bytes(), max_bytes=1 << 30, max_files=100)
    assert found.rtf is not None and found.rtf.startswith(b"{\\rtf1") and found.rtf.rstrip(b"\0 \r\n").endswith(b"}")


# -- made-up containers -------------------------------------------------------------------------------
def test_a_container_gives_its_files_under_their_long_names_and_is_not_written_itself(tmp_path):
    container = tnef_stream(tnef_file("Quarterly report 2026 (final).xlsx", b"PK\x03\x04 data"),
                            tnef_file("notes.txt", b"plain notes"))
    meta = decode_winmail(tmp_path, container)
    files = {p["file"]: p for p in meta["parts"]}
    assert set(files) == {"body.txt", "Quarterly report 2026 (final).xlsx", "notes.txt"}
    assert (tmp_path / "x.parts" / "Quarterly report 2026 (final).xlsx").read_bytes() == b"PK\x03\x04 data"
    record = files["notes.txt"]["container"]
    assert record["mimePart"] == "2" and record["kept"] is False and record["size"] == len(container)
    assert files["notes.txt"]["mimePart"] == "2.tnef2"


def test_the_container_is_kept_for_auditing_when_asked(tmp_path):
    settings = DecodeSettings(fsync=False, formats=Formats(tnef_keep=True))
    meta = decode_winmail(tmp_path, tnef_stream(tnef_file("a.txt", b"a")), settings)
    assert {p["file"] for p in meta["parts"]} == {"body.txt", "winmail.dat", "a.txt"}


def test_with_tnef_off_the_container_is_written_as_it_is(tmp_path):
    settings = DecodeSettings(fsync=False, formats=Formats(tnef=False))
    meta = decode_winmail(tmp_path, tnef_stream(tnef_file("a.txt", b"a")), settings)
    assert {p["file"] for p in meta["parts"]} == {"body.txt", "winmail.dat"}


def test_vnd_ms_tnef_and_a_winmail_dat_sent_as_octet_stream_are_unpacked_too():
    for ctype in ("application/vnd.ms-tnef", "application/octet-stream"):
        decoded = decode_bytes(winmail(tnef_stream(tnef_file("a.txt", b"a")), ctype=ctype))
        assert [p.filename for p in decoded.parts if p.container] == ["a.txt"]


def test_a_winmail_dat_that_is_not_tnef_is_written_as_it_is():
    decoded = decode_bytes(winmail(b"not a TNEF stream at all"))
    assert [p.filename for p in decoded.parts] == [None, "winmail.dat"]


def test_hostile_names_inside_a_container_follow_the_safe_name_rules(tmp_path):
    container = tnef_stream(tnef_file("..\\..\\evil\u202egpj.exe", b"x"), tnef_file("CON", b"y"),
                            tnef_file("n" * 400 + ".txt", b"z"))
    decode_winmail(tmp_path, container)
    names = sorted(p.name for p in (tmp_path / "x.parts").iterdir())
    assert "evilgpj.exe" in names and "_CON" in names
    assert all(len(n.encode()) <= 255 and "/" not in n and "\\" not in n for n in names)


def test_a_truncated_container_keeps_what_it_found_and_is_kept_whole(tmp_path):
    container = tnef_stream(tnef_file("first.txt", b"first"), tnef_file("second.txt", b"second"))
    cut = container[:-20]
    meta = decode_winmail(tmp_path, cut)
    files = {p["file"] for p in meta["parts"]}
    assert {"first.txt", "winmail.dat"} <= files  # nothing lost: the container itself is written
    assert (tmp_path / "x.parts" / "winmail.dat").read_bytes() == cut
    assert any("tnef" in d for d in meta["defects"])


def test_lying_lengths_and_counts_end_the_walk_with_a_defect_not_an_exception():
    lies = [
        tnef_attribute(1, 0x800C, 0x0002, b"abc", length=0xFFFFFFFF),
        tnef_attribute(1, 0x9003, 6, mapi_props([(0x0102, 0x1009, mapi_blob(b"x", values=0xFFFFFFFF))])),
        tnef_attribute(1, 0x9003, 6, mapi_props([(0x1003, 0x3FDE, struct.pack("<I", 0xFFFFFFFF))])),
        tnef_attribute(1, 0x9003, 6, mapi_props([], count=0xFFFFFFFF)),
        tnef_attribute(2, 0x9005, 6, mapi_props([(0x0102, 0x3701, mapi_blob(b"x", length=0xFFFFFFF0))])),
        tnef_attribute(7, 0x800F, 6, b"unknown level"),
    ]
    for lie in lies:
        found = tnef.unpack(tnef_stream(tnef_file("ok.txt", b"ok"), lie), max_bytes=1 << 20, max_files=10)
        assert found.files[0].name == "ok.txt" and found.files[0].data == b"ok"
        assert found.defects, lie


def test_an_attachment_attribute_before_any_attachment_starts_one_with_a_defect():
    found = tnef.unpack(tnef_stream(tnef_attribute(2, 0x800F, 6, b"orphan data"), tnef_file("ok.txt", b"ok")),
                        max_bytes=1 << 20, max_files=10)
    assert [(f.name, f.data) for f in found.files] == [(None, b"orphan data"), ("ok.txt", b"ok")]
    assert any("before any attAttachRendData" in d for d in found.defects)


def test_attached_outlook_items_are_kept_and_their_files_unpacked_to_a_bounded_depth():
    iid = bytes.fromhex("0703020000000000c000000000000046")
    inner = tnef_stream(tnef_file("deepest.txt", b"deep"))
    for _ in range(30):
        inner = tnef_stream(tnef_attribute(2, 0x9002, 6, b"\0" * 14),
                            tnef_attribute(2, 0x9005, 6, mapi_props([(0x000D, 0x3701, mapi_blob(iid + inner))])))
    found = tnef.unpack(inner, max_bytes=1 << 24, max_files=1000)
    assert len(found.files) == tnef.MAX_NESTING  # one item per level, the last one kept whole
    assert max(f.path.count(".") for f in found.files) == tnef.MAX_NESTING - 1
    assert any("nested deeper" in d for d in found.defects)


def test_unpacking_stops_at_the_part_bound_and_the_message_is_partial():
    container = tnef_stream(*[tnef_file("f%d.txt" % i, b"x") for i in range(50)])
    decoded = decode_bytes(winmail(container), DecodeLimits(max_parts=10))
    assert decoded.partial and "TNEF container 2 kept whole" in decoded.partial[0]
    assert any(p.filename == "winmail.dat" for p in decoded.parts)
    assert len(decoded.parts) <= 12


def test_not_a_tnef_stream_is_refused_by_unpack():
    with pytest.raises(ValueError, match="signature"):
        tnef.unpack(b"PK\x03\x04", max_bytes=100, max_files=1)


def test_compressed_rtf_output_is_bounded():
    # a back-reference token repeated: each 2 bytes of input give 17 bytes of output
    body = (b"\xff" + b"\x00\x0f" * 8) * 5000
    header = struct.pack("<IIII", len(body) + 12, 1 << 30, 0x75465A4C, 0)
    with pytest.raises(ValueError, match="passes"):
        tnef.decompress_rtf(header + body, 10_000)
