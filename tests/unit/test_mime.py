"""Specification of MIME decoding (mailingest.mime.parse, headers, payloads) on crafted messages."""

import base64
import dataclasses
import email.policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from mailingest.errors import DecodeLimitError, MimeError
from mailingest.mime.parse import DecodeLimits, decode_bytes

PDF = b"%PDF-1.4\n\x00\x01\x02\xff binary \r\n end"


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("ascii")


def mixed(*parts: bytes, boundary: str = "BOUNDARY", headers: str = "") -> bytes:
    """A multipart/mixed message from raw part bytes (each: headers, blank line, body)."""
    head = ("From: Ann <ann@example.org>\nTo: bob@example.net\nSubject: test\n"
            "Date: Mon, 02 Nov 2026 10:00:00 +0100\nMessage-ID: <m1@example.org>\n" + headers
            + "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"%s\"\n\n" % boundary)
    out = head.encode()
    for part in parts:
        out += b"--" + boundary.encode() + b"\n" + part + b"\n"
    return out + b"--" + boundary.encode() + b"--\n"


def text_part(body: str = "hello\n") -> bytes:
    return b"Content-Type: text/plain; charset=utf-8\n\n" + body.encode()


def named_part(header_lines: bytes, data: bytes = PDF) -> bytes:
    return (b"Content-Type: application/octet-stream\n" + header_lines
            + b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(data))


def attachments(decoded):
    return [p for p in decoded.parts if p.kind != "body-text" and p.kind != "body-html"]


def only_name(raw: bytes) -> str:
    (part,) = attachments(decode_bytes(raw))
    return part.filename


# -- structure --------------------------------------------------------------------------------
def test_body_attachment_and_header_summary():
    msg = EmailMessage()
    msg["From"] = "Ann <ann@example.org>"
    msg["To"] = "bob@example.net, Carl <carl@example.net>"
    msg["Cc"] = "dee@example.net"
    msg["Subject"] = "Observations"
    msg["Date"] = "Mon, 02 Nov 2026 10:00:00 +0100"
    msg["Message-ID"] = "<m1@example.org>"
    msg.set_content("Température 12 °C\n")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="chart.pdf")
    decoded = decode_bytes(msg.as_bytes())
    body, pdf = decoded.parts
    assert body.kind == "body-text" and body.data.decode("utf-8") == "Température 12 °C\n"
    assert (pdf.kind, pdf.filename, pdf.content_type, pdf.disposition, pdf.data) == (
        "part", "chart.pdf", "application/pdf", "attachment", PDF)
    assert decoded.from_ == "Ann <ann@example.org>"
    assert decoded.to == ("bob@example.net", "Carl <carl@example.net>")
    assert decoded.cc == ("dee@example.net",)
    assert decoded.subject == "Observations"
    assert decoded.date == "2026-11-02T10:00:00+01:00"
    assert decoded.message_id == "<m1@example.org>"
    assert decoded.defects == ()


def test_a_clean_message_parses_without_defects_even_when_strict():
    raw = mixed(text_part(), named_part(b'Content-Disposition: attachment; filename="a.bin"\n'))
    BytesParser(policy=email.policy.default.clone(raise_on_defect=True)).parsebytes(raw)
    assert decode_bytes(raw).defects == ()


def test_text_and_html_bodies_are_utf8_whatever_the_charset():
    msg = EmailMessage()
    msg["Subject"] = "x"
    msg.set_content("grüße\n", charset="iso-8859-1", cte="quoted-printable")
    msg.add_alternative("<p>grüße</p>\n", subtype="html", charset="iso-8859-1")
    kinds = {p.kind: p for p in decode_bytes(msg.as_bytes()).parts}
    assert kinds["body-text"].data == "grüße\n".encode()
    assert kinds["body-text"].charset == "iso-8859-1"
    assert kinds["body-html"].data == "<p>grüße</p>\n".encode()


def test_nested_multiparts_inline_images_and_alternative_attachments_are_all_found():
    msg = EmailMessage()
    msg["Subject"] = "nested"
    msg.set_content("plain\n")
    msg.add_alternative("<img src='cid:logo'>\n", subtype="html")
    html = msg.get_payload()[1]
    html.add_related(b"\x89PNG\r\n", maintype="image", subtype="png", cid="<logo>",
                     filename="logo.png", disposition="inline")
    msg.add_attachment(b"a,b\n1,2\n", maintype="text", subtype="csv", filename="data.csv")
    parts = {p.filename: p for p in attachments(decode_bytes(msg.as_bytes()))}
    assert parts["logo.png"].disposition == "inline"
    assert parts["logo.png"].content_id == "<logo>"
    assert parts["logo.png"].data == b"\x89PNG\r\n"
    assert parts["data.csv"].disposition == "attachment"
    assert parts["data.csv"].data == b"a,b\n1,2\n"


def test_attached_message_keeps_its_exact_bytes_and_is_decoded_too():
    inner = crlf("From nobody Mon Nov  2 10:00:00 2026\nFrom: x@example.org\nSubject: inner\n"
                 "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=in\n\n--in\n"
                 "Content-Type: text/plain\n\ninner body\n--in\nContent-Type: text/csv\n"
                 "Content-Disposition: attachment; filename=inner.csv\n\na,b\n--in--\n")
    outer = crlf("From: y@example.org\nSubject: outer\nMIME-Version: 1.0\n"
                 "Content-Type: multipart/mixed; boundary=out\n\n--out\nContent-Type: text/plain\n\n"
                 "see attached\n--out\nContent-Type: message/rfc822\n"
                 "Content-Disposition: attachment; filename=fwd.eml\n\n") + inner + b"\r\n--out--\r\n"
    (attached,) = attachments(decode_bytes(outer))
    assert attached.kind == "message" and attached.filename == "fwd.eml"
    assert attached.data == inner
    nested = attached.message
    assert nested.subject == "inner"
    assert [(p.kind, p.filename, p.data) for p in nested.parts] == [
        ("body-text", None, b"inner body"), ("part", "inner.csv", b"a,b")]


def test_base64_wrapped_attached_message_is_unwrapped_and_decoded():
    inner = b"Subject: wrapped\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
    raw = mixed(text_part(), b"Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n"
                + base64.encodebytes(inner))
    (attached,) = attachments(decode_bytes(raw))
    assert attached.data == inner
    assert attached.message.subject == "wrapped"


def test_uuencoded_blocks_in_a_text_body_are_extracted():
    blob = bytes(range(256)) * 3
    body = "see below\n\nbegin 644 ../../evil.bin\n"
    for i in range(0, len(blob), 45):
        body += __import__("binascii").b2a_uu(blob[i:i + 45]).decode()
    body += "`\nend\n\nbegin 600 \n" + __import__("binascii").b2a_uu(b"anon").decode() + "`\nend\n"
    decoded = decode_bytes(b"Subject: uu\n\n" + body.encode())
    uu = [p for p in decoded.parts if p.kind == "uuencoded"]
    assert [(p.filename, p.data) for p in uu] == [("../../evil.bin", blob), (None, b"anon")]
    assert decoded.parts[0].kind == "body-text"  # the body itself is still written


def test_uuencode_extraction_can_be_switched_off():
    body = b"Subject: uu\n\nbegin 644 a.bin\n" + __import__("binascii").b2a_uu(b"x") + b"`\nend\n"
    assert [p.kind for p in decode_bytes(body, uuencode=False).parts] == ["body-text"]


def test_base64_with_an_incomplete_last_quantum_keeps_its_bytes_as_the_standard_library_does():
    # issue 11: never less than the standard library recovers (ripmime, munpack, mu and uudeview drop it)
    for tail, kept in ((b"QUJ", b"AB"), (b"QQ", b"A")):
        raw = mixed(text_part(), b"Content-Type: application/pdf; name=x.pdf\n"
                    b"Content-Transfer-Encoding: base64\n\n" + base64.b64encode(b"abcdef") + tail + b"\n")
        (part,) = attachments(decode_bytes(raw))
        assert part.data == b"abcdef" + kept
        for cte in (b"base64 ", b"BASE64\t"):  # the stdlib leaves these encoded; the same bytes
            (part,) = attachments(decode_bytes(raw.replace(b"base64\n", cte + b"\n")))
            assert part.data == b"abcdef" + kept


def test_base64_followed_by_text_drops_the_incomplete_quantum_the_text_makes():
    # the standard library decodes the letters of the text after the data as data
    raw = mixed(text_part(), b"Content-Type: image/gif; name=x.gif\nContent-Transfer-Encoding: base64\n\n"
                + base64.b64encode(b"GIF89a") + b"\n--xy--\n")
    assert email.message_from_bytes(raw, policy=email.policy.default).get_payload()[1].get_payload(
        decode=True).startswith(b"GIF89a")  # ... plus a byte made of "xy"
    (part,) = attachments(decode_bytes(raw))
    assert part.data == b"GIF89a"


def test_base64_with_one_character_too_many_drops_it():
    raw = mixed(text_part(), b"Content-Type: application/pdf; name=x.pdf\n"
                b"Content-Transfer-Encoding: base64\n\n" + base64.b64encode(b"abcdef") + b"Q\n")
    (part,) = attachments(decode_bytes(raw))
    assert part.data == b"abcdef"  # the stdlib would return the encoded text


def test_parser_defects_are_reported_not_raised():
    raw = (b"Subject: broken\nContent-Type: multipart/mixed; boundary=b\n\n--b\n"
           b"Content-Type: text/plain\n\nno closing boundary\n")
    decoded = decode_bytes(raw)
    assert any("CloseBoundaryNotFoundDefect" in d for d in decoded.defects)


def test_unnamed_empty_leaves_are_dropped_but_named_empty_files_kept():
    raw = mixed(text_part(), b"Content-Type: application/octet-stream\n\n",
                b"Content-Type: text/plain\nContent-Disposition: attachment; filename=empty.txt\n\n")
    assert [(p.filename, p.data) for p in attachments(decode_bytes(raw))] == [("empty.txt", b"")]


# -- names ------------------------------------------------------------------------------------
def test_disposition_filename_is_preferred_over_content_type_name():
    raw = mixed(text_part(), b"Content-Type: application/pdf; name=\"type.pdf\"\n"
                b"Content-Disposition: attachment; filename=\"disposition.pdf\"\n\nx")
    assert only_name(raw) == "disposition.pdf"


def test_content_type_name_is_used_when_there_is_no_filename():
    raw = mixed(text_part(), b"Content-Type: application/pdf; name=\"type.pdf\"\n\nx")
    assert only_name(raw) == "type.pdf"


def test_a_part_without_any_name_has_none():
    raw = mixed(text_part(), b"Content-Type: application/pdf\n\nx")
    assert only_name(raw) is None


@pytest.mark.parametrize("header, expected", [
    # RFC 2047 encoded-words, including ISO-2022-JP and an encoded-word in a quoted string
    (b'filename="=?UTF-8?B?44OG44K544OILnBkZg==?="', "テスト.pdf"),
    (b'filename="=?ISO-2022-JP?B?GyRCJUYlOSVIGyhCLnBkZg==?="', "テスト.pdf"),
    (b'filename="=?iso-8859-1?Q?r=E9sum=E9?=.pdf"', "résumé.pdf"),
    (b'filename="=?utf-8?q?a?= =?utf-8?q?b?=.txt"', "ab.txt"),
    # RFC 2231: charset, language, continuations
    (b"filename*=UTF-8''%E3%83%86%E3%82%B9%E3%83%88.pdf", "テスト.pdf"),
    (b"filename*=iso-8859-1'fr'r%E9sum%E9.pdf", "résumé.pdf"),
    (b"filename*0*=UTF-8''%E6%97%A5%E6%9C%AC; filename*1*=%E8%AA%9E; filename*2=\".txt\"", "日本語.txt"),
    (b"filename*0=\"long file \"; filename*1=\"name.txt\"", "long file name.txt"),
    (b"filename*=iso-2022-jp''%1B%24B%25F%259%25H%1B%28B.pdf", "テスト.pdf"),
    # Shift_JIS bytes mislabelled as ISO-2022-JP in RFC 2231
    (b"filename*=iso-2022-jp''%83e%83X%83g.pdf", "テスト.pdf"),
    # GB18030 / GBK declared
    (b"filename*=gb2312''%B1%A8%B8%E6.pdf", "报告.pdf"),
    # raw 8-bit UTF-8 (no label at all)
    ('filename="日本語.txt"'.encode(), "日本語.txt"),
    ('filename="Größe.txt"'.encode(), "Größe.txt"),
])
def test_encoded_names(header, expected):
    raw = mixed(text_part(), b"Content-Type: application/octet-stream\nContent-Disposition: attachment; "
                + header + b"\n\nx")
    assert only_name(raw) == expected


@pytest.mark.parametrize("name, charset, body_charset", [
    ("テスト資料.pdf", "shift_jis", "iso-2022-jp"),
    ("テスト資料.pdf", "euc-jp", "euc-jp"),
    ("报告资料.pdf", "gb18030", "gb2312"),
    ("Список.doc", "koi8-r", "koi8-r"),
    ("Frösche.txt", "latin-1", "iso-8859-1"),
])
def test_raw_8bit_names_follow_the_charset_the_message_declares(name, charset, body_charset):
    raw = mixed(b"Content-Type: text/plain; charset=" + body_charset.encode() + b"\n\nbody",
                b'Content-Type: application/octet-stream\nContent-Disposition: attachment; filename="'
                + name.encode(charset) + b'"\n\nx')
    assert only_name(raw) == name


@pytest.mark.parametrize("name, charset", [
    ("てすと資料.txt", "shift_jis"),
    ("报告.pdf", "gb18030"),
    ("Frösche.txt", "latin-1"),
])
def test_raw_8bit_names_are_guessed_without_any_declared_charset(name, charset):
    raw = mixed(b"Content-Type: text/plain\n\nbody",
                b'Content-Type: application/octet-stream; name="' + name.encode(charset) + b'"\n\nx')
    assert only_name(raw) == name


def test_japanese_subjects_come_out_right():
    encoded = b"Subject: =?ISO-2022-JP?B?GyRCJEYkOSRIGyhC?= =?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=\n\nx"
    assert decode_bytes(encoded).subject == "てすとテスト"
    raw_jis = b"Subject: " + "会議の件".encode("iso-2022-jp") + b"\n\nx"
    assert decode_bytes(raw_jis).subject == "会議の件"
    raw_sjis = (b"Subject: " + "会議の件".encode("shift_jis")
                + b"\nContent-Type: text/plain; charset=shift_jis\n\nx")
    assert decode_bytes(raw_sjis).subject == "会議の件"
    raw_utf8 = b"Subject: " + "会議の件".encode() + b"\n\nx"
    assert decode_bytes(raw_utf8).subject == "会議の件"


def test_broken_encoded_words_do_not_crash_and_keep_what_they_can():
    raw = b"Subject: =?utf-8?B?not base64!?= ok\n\nx"
    assert decode_bytes(raw).subject  # no exception; something readable comes out


# -- bounds -----------------------------------------------------------------------------------
def nested_multiparts(depth: int) -> bytes:
    raw = b"Content-Type: text/plain\n\nleaf"
    for level in range(depth):
        b = b"b%d" % level
        raw = (b"Content-Type: multipart/mixed; boundary=" + b + b"\n\n--" + b + b"\n" + raw
               + b"\n--" + b + b"--\n")
    return b"Subject: deep\n" + raw


def test_depth_bound_keeps_the_subtree_past_it_raw():
    assert not decode_bytes(nested_multiparts(5), DecodeLimits(max_depth=5)).partial
    decoded = decode_bytes(nested_multiparts(6), DecodeLimits(max_depth=5))
    (raw,) = decoded.parts
    data = bytes(raw.data)
    assert raw.kind == "raw" and data.endswith(b"leaf") and b"Content-Type: text/plain" in data
    assert "max_depth (5)" in decoded.partial[0]


def test_two_hundred_nested_multiparts_decode_fully_by_default():
    (leaf,) = decode_bytes(nested_multiparts(200)).parts
    assert leaf.kind == "body-text" and leaf.data == b"leaf"


def test_nesting_deeper_than_the_parser_can_follow_is_decoded_partially_not_refused():
    raw = nested_multiparts(3000)
    decoded = decode_bytes(raw, DecodeLimits(max_depth=10_000))
    assert decoded.parts[-1].number == "tail" and bytes(decoded.parts[-1].data).endswith(b"--b2999--\n")
    assert "deeper than the parser" in decoded.partial[-1]
    assert sum(len(p.data) for p in decoded.parts if p.kind == "raw") > len(raw) // 2


def test_part_count_bound_decodes_the_first_parts_and_keeps_the_rest_raw_in_one_file():
    raw = mixed(*[named_part(b'Content-Disposition: attachment; filename="f%d.bin"\n' % i, b"x%d" % i)
                  for i in range(10)])
    assert len(decode_bytes(raw, DecodeLimits(max_parts=10)).parts) == 10
    decoded = decode_bytes(raw, DecodeLimits(max_parts=5))
    assert [p.filename for p in decoded.parts[:5]] == ["f%d.bin" % i for i in range(5)]
    kept = decoded.parts[5:]
    assert [p.kind for p in kept] == ["raw", "raw"]
    assert b"f5.bin" in bytes(kept[0].data) and all(b"f%d.bin" % i in bytes(kept[1].data) for i in range(6, 10))
    assert "max_parts (5)" in decoded.partial[0]


def test_two_thousand_attachments_decode_fully_by_default():
    raw = mixed(text_part(), *[named_part(b'Content-Disposition: attachment; filename="f%d.bin"\n' % i, b"x")
                               for i in range(1999)])
    decoded = decode_bytes(raw)
    assert len(decoded.parts) == 2000 and not decoded.partial


def test_far_too_many_delimiters_are_not_even_parsed_but_kept_raw():
    raw = b"Content-Type: multipart/mixed; boundary=B\n\n" + b"--B\n\nx\n" * 200_000 + b"--B--\n"
    decoded = decode_bytes(raw, DecodeLimits(max_parts=10))
    assert decoded.parts[-1].number == "tail" and bytes(decoded.parts[-1].data).endswith(b"--B--\n")
    assert sum(len(p.data) for p in decoded.parts if p.kind == "raw") > len(raw) - 200


def test_decoded_bytes_bound_keeps_the_part_that_does_not_fit_raw():
    inner = mixed(text_part(), b"Content-Type: application/octet-stream\nContent-Disposition: attachment; "
                  b"filename=big.bin\n\n" + b"x" * 3000, boundary="INNER")
    raw = mixed(text_part(), b"Content-Type: message/rfc822\n\n" + inner)
    assert not decode_bytes(raw, DecodeLimits(max_decoded_bytes=10_000)).partial
    decoded = decode_bytes(raw, DecodeLimits(max_decoded_bytes=len(raw) + 500))  # .eml + inner > raw
    (attached,) = attachments(decoded)
    kinds = [p.kind for p in attached.message.parts]
    assert kinds == ["body-text", "raw"] and bytes(attached.message.parts[1].data).endswith(b"x" * 3000)
    assert "max_decoded_bytes" in attached.message.partial[0]
    with pytest.raises(DecodeLimitError, match="max_decoded_bytes"):
        decode_bytes(raw, DecodeLimits(max_decoded_bytes=100))  # the message itself is larger


def test_an_attached_message_over_a_bound_is_saved_and_decoded_partially():
    inner = nested_multiparts(6)
    raw = mixed(text_part(), b"Content-Type: message/rfc822\nContent-Disposition: attachment; "
                b"filename=deep.eml\n\n" + inner)
    (attached,) = attachments(decode_bytes(raw, DecodeLimits(max_depth=5)))
    assert bytes(attached.data).rstrip(b"\n") == inner.rstrip(b"\n")
    assert attached.message is not None and attached.message.partial
    assert attached.message.parts[0].kind == "raw"


def test_limits_are_frozen_validated_and_loud_on_typos():
    limits = DecodeLimits()
    assert (limits.max_depth, limits.max_parts, limits.max_decoded_bytes) == (200, 2000, 256 * 1024 * 1024)
    with pytest.raises(dataclasses.FrozenInstanceError):
        limits.max_depth = 3
    with pytest.raises(TypeError):
        DecodeLimits(max_dept=3)
    with pytest.raises(ValueError, match="max_parts"):
        DecodeLimits(max_parts=0)
    assert dataclasses.replace(limits, max_parts=5).max_parts == 5


def test_garbage_is_decoded_as_a_text_body_not_an_error():
    decoded = decode_bytes(b"\x00\xff\xfe not a message at all")
    assert decoded.parts  # something, and no exception


def test_mime_error_is_a_mail_error():
    from mailingest.errors import MailError
    assert issubclass(MimeError, MailError) and issubclass(DecodeLimitError, MimeError)


@pytest.mark.parametrize("data, hints, expected", [
    ("Картинка чт".encode()[:-1], [], "Картинка ч\ufffd"),   # UTF-8 cut mid-character
    ("café".encode("latin-1"), [], "café"),                         # not mistaken for cut UTF-8
    ("日本".encode("euc-jp"), ["euc-jp"], "日本"),
    (b"plain", [], "plain"),
])
def test_guess_decode(data, hints, expected):
    from mailingest.mime.headers import guess_decode
    assert guess_decode(data, None, hints) == expected


def test_a_declared_charset_that_does_not_fit_keeps_replacement_characters():
    from mailingest.mime.headers import guess_decode
    assert guess_decode(b"\xff\xfe ok", "utf-8") == "\ufffd\ufffd ok"


def test_well_formed_base64_decodes_to_the_standard_librarys_bytes_with_no_defect():
    import base64
    import random

    from mailingest.mime.parse import parse
    from mailingest.mime.payloads import leaf_bytes

    rng = random.Random(7)
    for size in (0, 1, 2, 3, 57, 58, 4096, 100_000):
        data = rng.randbytes(size)
        for newline in ("\n", "\r\n"):
            text = base64.encodebytes(data).decode().replace("\n", newline)
            raw = ("Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
                   + text).encode()
            ours, stdlib = parse(raw), parse(raw)
            assert leaf_bytes(ours) == stdlib.get_payload(decode=True) == data
            assert ours.defects == stdlib.defects == []
