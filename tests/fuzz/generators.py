"""Hypothesis strategies for hostile and odd MIME messages (raw bytes).

Each strategy builds a whole message as bytes, the way a sender (or an attacker) could write it:
nesting, many parts, odd boundaries, bad transfer encodings, uuencode, long and hostile names,
attached messages, hostile headers.  :py:func:`hostile_message` draws from all of them; the
classes are also exposed one by one for the size/time tests (``big_*``).
"""
from __future__ import annotations

import base64
import binascii
import quopri
import struct

from hypothesis import strategies as st

# -- pieces ---------------------------------------------------------------------------------------
_NAME_CHARS = st.sampled_from(list("abcdefghijklmnopqrstuvwxyz0123456789._- ") + [
    "/", "\\", ":", "\x00", "\x01", "\x1f", "\x7f", "\x85", "\u202e", "\u2066", "\u200f", "\u2028",
    "\ufeff", "é", "日", "本", "🙂", "..", "\r", "\n", "\t", '"', "'", ";", "=", "*", "%", "?"])


@st.composite
def file_names(draw: st.DrawFn) -> str:
    """Names from harmless to hostile: traversal, device names, controls, bidi, very long."""
    kind = draw(st.sampled_from(["plain", "junk", "long", "traversal", "device", "dots"]))
    if kind == "plain":
        return draw(st.from_regex(r"[a-z]{1,12}\.(pdf|csv|txt|bin|eml|zip)", fullmatch=True))
    if kind == "junk":
        return "".join(draw(st.lists(_NAME_CHARS, min_size=0, max_size=40)))
    if kind == "long":
        unit = draw(st.sampled_from(["a", "é", "日", "🙂", ".", "a.", " "]))
        ext = draw(st.sampled_from(["", ".pdf", ".eml", "." + "x" * 40, "..", "."]))
        return unit * draw(st.integers(100, 400)) + ext
    if kind == "traversal":
        return draw(st.sampled_from(["../../etc/passwd", "..\\..\\boot.ini", "/etc/shadow", "C:\\x\\a.pdf",
                                     "a/../../b.txt", "....//....//c", "~/.ssh/id_rsa"]))
    if kind == "device":
        return draw(st.sampled_from(["CON", "nul.txt", "COM1", "LPT9.pdf", "aux", "CONIN$"]))
    return draw(st.sampled_from([".", "..", "...", ". .", " ", ".hidden", "x.", "x..", ".. ..pdf"]))


def _name_header(name: str, how: str) -> bytes:
    raw = name.encode("utf-8", "surrogatepass")
    if how == "quoted":
        return b'Content-Disposition: attachment; filename="' + raw.replace(b'"', b"") + b'"\n'
    if how == "rfc2231":
        pct = "".join("%%%02X" % b for b in raw)
        chunks = [pct[i:i + 60] for i in range(0, len(pct), 60)] or [""]
        params = "".join(";\n filename*%d*=%s%s" % (i, "utf-8''" if i == 0 else "", c)
                         for i, c in enumerate(chunks))
        return ("Content-Disposition: attachment" + params + "\n").encode("ascii")
    if how == "encoded-word":
        word = "=?utf-8?b?%s?=" % base64.b64encode(raw).decode("ascii")
        return ('Content-Type: application/octet-stream; name="%s"\n' % word).encode("ascii")
    return b"Content-Disposition: attachment; filename=" + raw + b"\n"  # raw 8-bit, unquoted


@st.composite
def encoded_body(draw: st.DrawFn, data: bytes) -> tuple[bytes, bytes]:
    """(Content-Transfer-Encoding header line, body) for *data*, sometimes damaged."""
    cte = draw(st.sampled_from(["base64", "base64", "quoted-printable", "7bit", "8bit", "x-uuencode",
                                "base64 ", "BASE64", "bogus", ""]))
    damage = draw(st.sampled_from(["none", "none", "stray-pad", "truncate", "junk", "no-newlines"]))
    name = cte.strip().lower()
    if name == "base64":
        body = base64.encodebytes(data)
    elif name == "quoted-printable":
        body = quopri.encodestring(data)
    elif name == "x-uuencode":
        lines = [binascii.b2a_uu(data[i:i + 45]) for i in range(0, len(data), 45)]
        body = b"begin 644 f.bin\n" + b"".join(lines) + b"`\nend\n"
    else:
        body = data
    if damage == "stray-pad" and b"\n" in body:
        cut = body.index(b"\n") + 1
        body = body[:cut] + b"=\n" + body[cut:]
    elif damage == "truncate" and body:
        body = body[:draw(st.integers(0, len(body)))]
    elif damage == "junk":
        body = body + draw(st.sampled_from([b"!!!", b"====", b"\x00\xff", b"-- \nsig\n", b"A"]))
    elif damage == "no-newlines":
        body = body.replace(b"\n", b"")
    header = b"Content-Transfer-Encoding: " + cte.encode() + b"\n" if cte else b""
    return header, body


@st.composite
def leaf(draw: st.DrawFn) -> bytes:
    ctype = draw(st.sampled_from([b"text/plain", b"text/plain; charset=utf-8", b"text/html",
                                  b"text/plain; charset=iso-8859-1", b"text/plain; charset=x-bogus",
                                  b"application/octet-stream", b"application/pdf", b"image/png",
                                  b"text/csv", b"application/x-unknown", b"bogus", b"TEXT/PLAIN"]))
    data = draw(st.binary(min_size=0, max_size=draw(st.sampled_from([16, 300, 4000]))))
    if draw(st.booleans()):
        data = draw(st.text(max_size=200)).encode("utf-8", "surrogatepass")
    cte, body = draw(encoded_body(data))
    head = b"Content-Type: " + ctype + b"\n" + cte
    if draw(st.booleans()):
        head += _name_header(draw(file_names()), draw(st.sampled_from(["quoted", "rfc2231", "encoded-word", "raw"])))
    if draw(st.integers(0, 9)) == 0:
        head += b"Content-Disposition: inline\n"
    return head + b"\n" + body


@st.composite
def uuencoded_text(draw: st.DrawFn) -> bytes:
    """A text/plain part with uuencoded blocks in it, complete or broken."""
    chunks = []
    for _ in range(draw(st.integers(1, 4))):
        data = draw(st.binary(min_size=1, max_size=500))
        name = draw(st.sampled_from([b"a.bin", b"", b"../x", b"x" * 300, b"  spaced  name  "]))
        lines = [binascii.b2a_uu(data[i:i + 45]) for i in range(0, len(data), 45)]
        if draw(st.booleans()):
            lines = [line.rstrip(b"\n").rstrip(b" ") + b"\n" for line in lines]  # stripped blanks
        end = draw(st.sampled_from([b"`\nend\n", b"end\n", b"", b"garbage\n"]))
        mode = draw(st.sampled_from([b"644", b"0644", b"777", b"6444", b"abc"]))
        chunks.append(b"text before\nbegin " + mode + b" " + name + b"\n" + b"".join(lines) + end)
    return b"Content-Type: text/plain\n\n" + b"".join(chunks)


@st.composite
def boundaries(draw: st.DrawFn) -> bytes:
    return draw(st.sampled_from([
        b"B", b"=_part_0", b"a" * 70, b"with space", b"'()+_,-./:=?", b"----=_NextPart_000",
        b"x", b"B" * 200, b"\xff\xfe", b"quote\"d", b"--", b"b1", b"b1b1"]))


def _boundary_param(boundary: bytes, quoted: bool) -> bytes:
    return b'"' + boundary.replace(b'"', b"") + b'"' if quoted else boundary


def entities(depth: int = 4) -> st.SearchStrategy[bytes]:
    """A MIME entity (headers, blank line, body): leaf, multipart or attached message."""
    if depth <= 0:
        return st.one_of(leaf(), uuencoded_text())
    return st.one_of(leaf(), uuencoded_text(), multipart(depth - 1), attached_message(depth - 1))


@st.composite
def multipart(draw: st.DrawFn, depth: int) -> bytes:
    boundary = draw(boundaries())
    children = draw(st.lists(entities(depth), min_size=0, max_size=5))
    sub = draw(st.sampled_from([b"mixed", b"alternative", b"related", b"digest", b"signed", b"x-odd"]))
    out = (b"Content-Type: multipart/" + sub + b"; boundary=" + _boundary_param(boundary, draw(st.booleans()))
           + b"\n\n" + draw(st.sampled_from([b"", b"preamble\n", b"caf\xc3\xa9 8-bit preamble\n"])))
    for child in children:
        ws = draw(st.sampled_from([b"", b"", b"  ", b"\t"]))
        out += b"--" + boundary + ws + b"\n" + child + b"\n"
    if draw(st.integers(0, 4)):
        out += b"--" + boundary + b"--\n" + draw(st.sampled_from([b"", b"epilogue\n"]))
    return out


@st.composite
def attached_message(draw: st.DrawFn, depth: int) -> bytes:
    inner = draw(headers_block()) + draw(entities(depth))
    cte = draw(st.sampled_from([b"", b"", b"7bit", b"8bit", b"base64", b"quoted-printable"]))
    if cte == b"base64":
        inner = base64.encodebytes(inner)
    elif cte == b"quoted-printable":
        inner = quopri.encodestring(inner)
    head = b"Content-Type: " + draw(st.sampled_from([b"message/rfc822", b"message/global", b"message/news",
                                                       b"message/partial", b"message/delivery-status"])) + b"\n"
    if cte:
        head += b"Content-Transfer-Encoding: " + cte + b"\n"
    if draw(st.booleans()):
        head += _name_header(draw(file_names()), "quoted")
    return head + b"\n" + inner


@st.composite
def headers_block(draw: st.DrawFn) -> bytes:
    """Top-level headers, sometimes hostile (these are the header half's cases)."""
    lines = [b"From: Ann <ann@example.org>", b"To: bob@example.net", b"Subject: test"]
    for _ in range(draw(st.integers(0, 3))):
        lines.append(draw(st.sampled_from([
            b"Subject: " + b"=?utf-8?q?" + b"a" * 2000 + b"?=",
            b"Subject: " + b"=?utf-8?b?////?= " * 50,
            b"To: " + b", ".join(b"u%d@example.org" % i for i in range(300)),
            b"From: \xff\xfe <a@b>",
            b"Date: Mon, 99 Foo 2026 99:99:99 +9999",
            b"Message-ID: <" + b"x" * 3000 + b">",
            b"X-Long: " + b"a " * 5000,
            b"Subject: =?iso-2022-jp?b?GyRCJEYkOSRIGyhC?=",
            b"Content-Type: text/plain; charset=\"" + b"x" * 300 + b"\"",
            b"Subject: \x00\x01\x1b[31m",
            b"Received: " + b"(" * 500 + b")" * 500,
            b"Reply-To: \"unterminated <a@b>",
            b"To: =?utf-8?q?=E2=80=AE?= <a@b>",
        ])))
    return b"\n".join(lines) + b"\n"


@st.composite
def deep_nesting(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(1, 260))
    inner = draw(leaf())
    kind = draw(st.sampled_from(["multipart", "message", "mixed"]))
    for level in range(depth):
        use_message = kind == "message" or (kind == "mixed" and level % 2)
        if use_message:
            inner = b"Content-Type: message/rfc822\n\nSubject: level %d\n" % level + inner
        else:
            b = b"n%d" % level
            inner = (b"Content-Type: multipart/mixed; boundary=" + b + b"\n\n--" + b + b"\n" + inner
                     + b"\n--" + b + b"--\n")
    return b"From: a@example.org\n" + inner


@st.composite
def many_parts(draw: st.DrawFn) -> bytes:
    count = draw(st.integers(1, 2100))
    body = b"".join(b"--M\nContent-Type: application/octet-stream\nContent-Disposition: attachment; "
                    b"filename=f%d.bin\n\npart %d\n" % (i, i) for i in range(count))
    return b"From: a@example.org\nContent-Type: multipart/mixed; boundary=M\n\n" + body + b"--M--\n"


# -- TNEF (winmail.dat) --------------------------------------------------------------------------
def tnef_attribute(level: int, att_id: int, att_type: int, data: bytes, *, length: int | None = None) -> bytes:
    """One TNEF attribute; *length* lies about the data's length when given."""
    return (struct.pack("<BHHI", level, att_id, att_type, len(data) if length is None else length) + data
            + struct.pack("<H", sum(data) & 0xFFFF))


def mapi_props(props: list[tuple[int, int, bytes]], *, count: int | None = None) -> bytes:
    """A MAPI property list: (type, id, encoded value) each; *count* lies about how many."""
    out = struct.pack("<I", len(props) if count is None else count)
    for ptype, pid, value in props:
        out += struct.pack("<HH", ptype, pid) + value
    return out


def mapi_blob(data: bytes, *, values: int = 1, length: int | None = None) -> bytes:
    """The encoding of a binary/string MAPI value: count, length, data, padding."""
    size = len(data) if length is None else length
    return struct.pack("<II", values, size) + data + b"\0" * (-len(data) % 4)


def tnef_file(name: str, data: bytes, *, long_name: bool = True) -> bytes:
    """The attributes of one attachment: rendering, title, data and MAPI props (long name)."""
    title = name.encode("cp1252", "replace") + b"\0"
    out = tnef_attribute(2, 0x9002, 0x0006, b"\xff" * 14)
    out += tnef_attribute(2, 0x8010, 0x0001, title)
    out += tnef_attribute(2, 0x800F, 0x0006, data)
    if long_name:
        props = [(0x001F, 0x3707, mapi_blob(name.encode("utf-16-le") + b"\0\0"))]
        out += tnef_attribute(2, 0x9005, 0x0006, mapi_props(props))
    return out


def tnef_stream(*attributes: bytes) -> bytes:
    return struct.pack("<IH", 0x223E9F78, 0x0001) + b"".join(attributes)


@st.composite
def tnef_container(draw: st.DrawFn) -> bytes:
    """A TNEF stream: real-looking attachments and bodies mixed with lying lengths and counts,
    truncation, unknown levels and types, embedded Outlook items."""
    attrs: list[bytes] = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["file", "file", "body", "props-lie", "length-lie", "junk", "embedded",
                                     "orphan", "rtf"]))
        if kind == "file":
            attrs.append(tnef_file(draw(file_names()), draw(st.binary(max_size=300)),
                                   long_name=draw(st.booleans())))
        elif kind == "body":
            attrs.append(tnef_attribute(1, 0x800C, 0x0002, draw(st.binary(max_size=200))))
        elif kind == "props-lie":
            count = draw(st.sampled_from([0xFFFFFFFF, 0x7FFFFFFF, 1000, 3]))
            value = draw(st.sampled_from([mapi_blob(b"x", values=0xFFFFFFFF), mapi_blob(b"x", length=0xFFFFFFF0),
                                          struct.pack("<I", 0xFFFFFFFF), b""]))
            ptype = draw(st.sampled_from([0x0102, 0x001F, 0x101F, 0x1003, 0x000D, 0x0999, 0x0003]))
            pid = draw(st.sampled_from([0x3707, 0x3701, 0x1000, 0x1009, 0x8001]))
            level = draw(st.sampled_from([1, 2]))
            attrs.append(tnef_attribute(level, 0x9003 if level == 1 else 0x9005, 0x0006,
                                        mapi_props([(ptype, pid, value)], count=count)))
        elif kind == "length-lie":
            attrs.append(tnef_attribute(draw(st.sampled_from([1, 2])), 0x800F, 0x0006, b"abc",
                                        length=draw(st.sampled_from([0xFFFFFFFF, 4, 1 << 20]))))
        elif kind == "junk":
            attrs.append(draw(st.binary(max_size=64)))
        elif kind == "orphan":  # an attachment attribute before any attAttachRendData
            attrs.append(tnef_attribute(2, 0x800F, 0x0006, draw(st.binary(max_size=50))))
        elif kind == "rtf":
            body = draw(st.binary(max_size=80))
            header = struct.pack("<IIII", len(body) + 12, draw(st.integers(0, 1 << 20)),
                                 draw(st.sampled_from([0x75465A4C, 0x414C454D, 0])), 0)
            attrs.append(tnef_attribute(1, 0x9003, 0x0006, mapi_props([(0x0102, 0x1009, mapi_blob(header + body))])))
        else:  # an attached Outlook item: IID_IMessage + a TNEF stream (maybe itself nesting)
            inner = tnef_stream(tnef_file("inner.txt", b"inner"))
            for _ in range(draw(st.integers(0, 12))):
                inner = tnef_stream(tnef_attribute(2, 0x9002, 0x0006, b"\0" * 14), tnef_attribute(
                    2, 0x9005, 0x0006, mapi_props([(0x000D, 0x3701, mapi_blob(
                        bytes.fromhex("0703020000000000c000000000000046") + inner))])))
            attrs.append(tnef_attribute(2, 0x9002, 0x0006, b"\0" * 14))
            attrs.append(tnef_attribute(2, 0x9005, 0x0006, mapi_props([(0x000D, 0x3701, mapi_blob(
                bytes.fromhex("0703020000000000c000000000000046") + inner))])))
    raw = tnef_stream(*attrs)
    if draw(st.integers(0, 4)) == 0:
        raw = raw[:draw(st.integers(0, len(raw)))]
    return raw


def rtf_expansion(size: int) -> bytes:
    """Compressed RTF of about *size* bytes made only of 17-byte back-references (8x expansion),
    each pointing away from the write position so the stream never ends early."""
    write, chunks, length = 207, [], 16
    while length + 17 <= size:
        chunks.append(b"\xff")
        for _ in range(8):
            chunks.append(struct.pack(">H", (((write + 1000) % 4096) << 4) | 0xF))
            write = (write + 17) % 4096
        length += 17
    body = b"".join(chunks)
    return struct.pack("<IIII", len(body) + 12, len(body) * 8, 0x75465A4C, 0) + body


def winmail(container: bytes, *, name: str = "winmail.dat", ctype: str = "application/ms-tnef") -> bytes:
    """A message with a text body and *container* as a base64 ``winmail.dat`` part."""
    return (b"From: a@example.org\nSubject: tnef\nMIME-Version: 1.0\n"
            b"Content-Type: multipart/mixed; boundary=T\n\n--T\nContent-Type: text/plain\n\nsee attached\n"
            b"--T\nContent-Type: " + ctype.encode() + b"; name=\"" + name.encode() + b"\"\n"
            b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(container) + b"--T--\n")


def to_crlf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@st.composite
def hostile_message(draw: st.DrawFn) -> bytes:
    """Any of the classes above, as a whole message, with LF or CRLF line ends."""
    kind = draw(st.sampled_from(["tree", "tree", "tree", "deep", "many", "uu", "headers-only", "tnef"]))
    if kind == "tnef":
        raw = winmail(draw(tnef_container()), ctype=draw(st.sampled_from(["application/ms-tnef",
                                                                          "application/vnd.ms-tnef"])))
    elif kind == "deep":
        raw = draw(deep_nesting())
    elif kind == "many":
        raw = draw(many_parts())
    elif kind == "uu":
        raw = draw(headers_block()) + draw(uuencoded_text())
    elif kind == "headers-only":
        raw = draw(headers_block()) + b"\nbody\n"
    else:
        raw = draw(headers_block()) + draw(entities(3))
    if draw(st.integers(0, 3)) == 0:
        raw = to_crlf(raw)
    return raw


# -- big members of each class, just under 5 MB (time and memory bounds) --------------------------
FIVE_MB = 5 * 1000 * 1000 - 100_000


def big_messages(size: int = FIVE_MB) -> dict[str, bytes]:
    """One large hostile message per class, each under *size* bytes (default: just under 5 MB)."""
    FIVE_MB = size
    head = b"From: a@example.org\nSubject: big\n"
    levels = (FIVE_MB - 200) // 70
    deep = (b"".join(b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (i, i) for i in range(levels))
            + b"x" + b"".join(b"\n--b%d--\n" % i for i in reversed(range(levels))))
    chain = b"Content-Type: message/rfc822\n\nSubject: s\n" * ((FIVE_MB - 100) // 42) + b"body\n"
    filler = b"attachment data " * 1600
    fat = min(190, max(2, size // 26_000))  # attached messages, each beside a 16 kB part: the .eml of each level holds all below
    chain_fat = (b"".join(b"Content-Type: multipart/mixed; boundary=C%d\n\n--C%d\nContent-Type: message/rfc822\n\n"
                          b"Subject: s\n" % (i, i) for i in range(fat)) + b"x\n"
                 + b"".join(b"\n--C%d\nContent-Type: text/plain\n\n" % i + filler + b"\n--C%d--\n" % i
                            for i in reversed(range(fat))))
    count = FIVE_MB // 60
    many = (b"Content-Type: multipart/mixed; boundary=M\n\n"
            + b"--M\nContent-Disposition: attachment; filename=f.bin\n\nx\n" * count + b"--M--\n")
    empties = b"Content-Type: multipart/mixed; boundary=M\n\n" + b"--M\n" * (FIVE_MB // 4) + b"--M--\n"
    uu_blanks = b"Content-Type: text/plain\n\nbegin 644 a" + b" " * (FIVE_MB - 100) + b"b\n"
    uu_begins = b"Content-Type: text/plain\n\n" + b"begin 644 x\n" * (FIVE_MB // 12)
    uu_data = b"Content-Type: text/plain\n\nbegin 644 x\n" + (b"M" + b"!" * 60 + b"\n") * (FIVE_MB // 62) + b"end\n"
    # a block of empty lines: each was a chunk of a list joined at the end (457 MB peak)
    uu_empty = b"Content-Type: text/plain\n\nbegin 644 x\n" + b"\n" * (FIVE_MB - 100) + b"end\n"
    b64 = base64.encodebytes(b"\x00" * (FIVE_MB * 3 // 4 - 10_000))
    b64_junk = (b"Content-Type: multipart/mixed; boundary=M\n\n--M\nContent-Type: application/octet-stream\n"
                b"Content-Transfer-Encoding: base64\n\n" + b64.replace(b"\n", b"\n=\n!!\n", 2000)[:FIVE_MB - 1000]
                + b"\n--M--\n")
    headers = b"".join(b"X-H%d: v\n" % i for i in range(FIVE_MB // 14)) + b"\nbody\n"
    long_header = b"Subject: " + b"=?utf-8?q?" + b"a" * (FIVE_MB - 100) + b"?=\n\nbody\n"
    params = (b"Content-Type: application/octet-stream; name*0=a"
              + b"".join(b";\n name*%d=b" % i for i in range(1, FIVE_MB // 16)) + b"\n\nx\n")
    long_name = (b"Content-Type: multipart/mixed; boundary=M\n\n--M\nContent-Type: message/rfc822\n"
                 b"Content-Disposition: attachment; filename=\"" + b"n" * 300 + b".eml\"\n\nSubject: s\n\nx\n--M--\n")
    tnef_budget = FIVE_MB * 3 // 4 - 2000  # base64 makes 4 bytes of 3
    one = tnef_attribute(1, 0x9999, 0x0006, b"")  # 11 bytes each: an attribute nobody knows
    tnef_attributes = winmail(tnef_stream(one * (tnef_budget // len(one))))
    lying = tnef_attribute(1, 0x9003, 0x0006, mapi_props([(0x1102, 0x3701, struct.pack("<I", 0xFFFFFFFF))],
                                                         count=0xFFFFFFFF))
    tnef_counts = winmail(tnef_stream(*[lying] * (tnef_budget // len(lying))))
    tiny = tnef_file("f.bin", b"x", long_name=False)
    tnef_rtf = winmail(tnef_stream(tnef_attribute(1, 0x9003, 0x0006, mapi_props(
        [(0x0102, 0x1009, mapi_blob(rtf_expansion(tnef_budget - 100)))]))))
    tnef_files = winmail(tnef_stream(tiny * (tnef_budget // len(tiny))))
    return {
        "tnef-attributes": tnef_attributes, "tnef-rtf-expansion": tnef_rtf, "tnef-lying-counts": tnef_counts, "tnef-many-files": tnef_files,
        "deep-multipart": head + deep, "message-chain": head + chain, "fat-message-chain": head + chain_fat,
        "many-parts": head + many, "empty-parts": head + empties, "uu-blanks": head + uu_blanks,
        "uu-begins": head + uu_begins, "uu-data": head + uu_data, "base64-junk": head + b64_junk,
        "many-headers": head + headers, "long-header": long_header, "rfc2231-continuations": head + params,
        "long-name": head + long_name, "uu-empty-lines": head + uu_empty,
    }
