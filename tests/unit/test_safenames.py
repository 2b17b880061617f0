"""Specification of safe file names (mailingest.mime.safenames)."""

import pytest

from mailingest.mime.safenames import (
    MAX_NAME_BYTES,
    extension_for,
    fallback_name,
    name_key,
    safe_name,
    truncate,
    unique_name,
)


@pytest.mark.parametrize("original, expected", [
    ("report.pdf", "report.pdf"),
    ("../../etc/passwd", "passwd"),
    ("/etc/passwd", "passwd"),
    ("..\\..\\Windows\\system32\\evil.dll", "evil.dll"),
    ("C:\\Users\\bob\\report.pdf", "report.pdf"),
    ("C:report.pdf", "report.pdf"),
    ("dir/sub/", "f"),                      # nothing after the last separator: fallback
    ("..", "f"),
    (".", "f"),
    ("...", "f"),
    (".htaccess", "htaccess"),               # no hidden files
    ("  name.txt  ", "name.txt"),
    ("name.txt.", "name.txt"),               # Windows drops trailing dots
    ("a\x00b\x1fc\x7fd\x85e.txt", "abcde.txt"),
    ("line\nbreak\r.txt", "linebreak.txt"),
    ("invoice\u202egpj.exe", "invoicegpj.exe"),   # right-to-left override disguises the type
    ("\u2066x\u2069\u200e\u200f.txt", "x.txt"),
    ("file.txt:stream", "file.txt_stream"),
    ("CON", "_CON"),
    ("nul.txt", "_nul.txt"),
    ("com1.log", "_com1.log"),
    ("LPT9", "_LPT9"),
    ("console.txt", "console.txt"),
    ("てすと.txt", "てすと.txt"),
    ("résumé.pdf", "résumé.pdf"),
    ("lone\udcff.txt", "lone.txt"),
    ("", "f"),
    (None, "f"),
])
def test_safe_name(original, expected):
    assert safe_name(original, "f") == expected


@pytest.mark.parametrize("original", [
    "../" * 50 + "x", "a/../../b", "\\\\server\\share\\x", "x" * 1000, "é" * 400 + ".pdf",
    "\x00", "/", "\\", "C:", "..\x00..", "a\u202e/../b",
])
def test_safe_names_never_leave_the_directory(original):
    name = safe_name(original, "part-1.bin")
    assert name and "/" not in name and "\\" not in name and "\x00" not in name
    assert name not in (".", "..") and not name.startswith(".")
    assert len(name.encode("utf-8")) <= MAX_NAME_BYTES


def test_long_names_are_cut_to_255_bytes_keeping_the_extension():
    name = safe_name("日本語" * 100 + ".pdf", "f")
    assert len(name.encode("utf-8")) <= 255
    assert name.endswith(".pdf")
    assert name.startswith("日本語")
    name.encode("utf-8").decode("utf-8")  # cut on a character boundary


def test_truncate_without_extension():
    assert truncate("a" * 300) == "a" * 255
    assert truncate("x." + "e" * 100) == ("x." + "e" * 100)[:255]


def test_unique_name_adds_a_counter_before_the_extension():
    taken = {name_key("a.txt"), name_key("a-2.txt")}
    assert unique_name("a.txt", taken) == "a-3.txt"
    assert unique_name("b.txt", taken) == "b.txt"
    assert unique_name("A.TXT", taken) == "A-3.TXT"         # case-insensitive clash
    assert unique_name("noext", {"noext"}) == "noext-2"


def test_unique_name_stays_within_255_bytes():
    long = "n" * 251 + ".txt"
    assert unique_name(long, {name_key(long)}).endswith("-2.txt")
    assert len(unique_name(long, {name_key(long)}).encode()) <= 255


@pytest.mark.parametrize("ctype, ext", [
    ("text/plain", ".txt"), ("text/html; charset=utf-8", ".html"), ("image/png", ".png"),
    ("message/rfc822", ".eml"), ("application/octet-stream", ".bin"), ("text/x-nothing", ".txt"),
    ("application/x-no-such-type", ".bin"),
])
def test_extension_for(ctype, ext):
    assert extension_for(ctype) == ext


def test_fallback_name():
    assert fallback_name(3, "application/pdf") == "part-3.pdf"
