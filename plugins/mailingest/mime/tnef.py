"""Pure: unpack a TNEF container (``winmail.dat``, ``application/ms-tnef``) into its files and bodies.

Format: [MS-OXTNEF].  A stream is a signature (``0x223E9F78``), a legacy key, then attributes
(level, id, type, length, data, checksum).  Message-level ``attMsgProps`` and attachment-level
``attAttachment`` hold MAPI property lists; an attachment starts at ``attAttachRendData`` and
takes its bytes from ``attAttachData`` or ``PidTagAttachDataBinary``/``PidTagAttachDataObject``,
its name from ``PidTagAttachLongFilename``, else ``PidTagAttachFilename``/``attAttachTitle``,
else ``PidTagDisplayName``.  An attached Outlook item (``PidTagAttachDataObject`` starting with
IID_IMessage) is itself a TNEF stream: its files are unpacked too, one level deeper.

Why not ``tnefparse`` (1.4.0, January 2021, its last release): measured on hostile input, it
copies the rest of the stream for every attribute (3.6 MB of small attributes: 13 s of CPU; this
parser: 0.3 s for the whole message), loops on a MAPI property count it never checks against
the data left (``0xFFFFFFFF``: still running after 300 s), strips trailing NUL bytes from binary
attachment data (an OLE ``.doc`` of the shared corpus comes out 418 bytes short), raises
``TypeError`` on a string attribute that comes before the code page attribute, and logs at
error level from inside the library.  This parser is bounded instead: every length is checked
against the bytes left, every count is bounded by the bytes it would need, data is sliced from
one ``memoryview`` (no copy until a file is kept), embedded messages nest at most
:py:data:`MAX_NESTING` deep, and malformed input ends the walk with a *defect* (a string),
never an exception; whatever was found before it is kept.

Compressed RTF bodies (``PidTagRtfCompressed``, [MS-OXRTFCP]) are decompressed here, with the
output bounded by the container's decoded-byte budget.
"""
from __future__ import annotations

import codecs
import struct
from dataclasses import dataclass, field

SIGNATURE = 0x223E9F78
#: deepest chain of Outlook items attached inside each other that is unpacked
MAX_NESTING = 8

_LVL_MESSAGE, _LVL_ATTACHMENT = 1, 2
_ATT_BODY = 0x800C
_ATT_SUBJECT = 0x8004
_ATT_MESSAGE_CLASS = 0x8008
_ATT_ATTACH_DATA = 0x800F
_ATT_ATTACH_TITLE = 0x8010
_ATT_ATTACH_REND_DATA = 0x9002
_ATT_MSG_PROPS = 0x9003
_ATT_ATTACHMENT = 0x9005
_ATT_OEM_CODEPAGE = 0x9007

_PR_BODY = 0x1000
_PR_RTF_COMPRESSED = 0x1009
_PR_BODY_HTML = 0x1013
_PR_INTERNET_CPID = 0x3FDE
_PR_DISPLAY_NAME = 0x3001
_PR_ATTACH_DATA = 0x3701
_PR_ATTACH_FILENAME = 0x3704
_PR_ATTACH_LONG_FILENAME = 0x3707
_PR_ATTACH_MIME_TAG = 0x370E
_PR_ATTACH_CONTENT_ID = 0x3712

_PT_SHORT, _PT_LONG, _PT_FLOAT, _PT_DOUBLE, _PT_CURRENCY, _PT_APPTIME = 0x2, 0x3, 0x4, 0x5, 0x6, 0x7
_PT_ERROR, _PT_BOOLEAN, _PT_OBJECT, _PT_I8, _PT_STRING8, _PT_UNICODE = 0xA, 0xB, 0xD, 0x14, 0x1E, 0x1F
_PT_SYSTIME, _PT_CLSID, _PT_BINARY, _PT_NULL, _PT_UNSPECIFIED = 0x40, 0x48, 0x102, 0x1, 0x0
_FIXED_SIZE = {_PT_NULL: 4, _PT_SHORT: 4, _PT_LONG: 4, _PT_FLOAT: 4, _PT_ERROR: 4, _PT_BOOLEAN: 4,
               _PT_DOUBLE: 8, _PT_CURRENCY: 8, _PT_APPTIME: 8, _PT_I8: 8, _PT_SYSTIME: 8, _PT_CLSID: 16}
_VARIABLE = (_PT_STRING8, _PT_UNICODE, _PT_BINARY, _PT_OBJECT, _PT_UNSPECIFIED)
_MULTI = 0x1000
_IID_IMESSAGE = bytes.fromhex("0703020000000000c000000000000046")

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_ATTR_HEAD = struct.Struct("<BHHI")  # level, id, type, length


@dataclass(frozen=True)
class TnefFile:
    """One attachment found in the container.

    *path* numbers it within the container (``1``, ``2`` ...; ``2.1`` is the first file of an
    Outlook item attached as the second attachment).
    """

    path: str
    name: str | None
    data: bytes
    content_type: str | None = None
    content_id: str | None = None


@dataclass
class TnefContents:
    """What a container held: files, bodies (``text`` as str, ``html``/``rtf`` as bytes) and defects."""

    files: list[TnefFile] = field(default_factory=list)
    text: str | None = None
    html: bytes | None = None
    html_charset: str | None = None
    rtf: bytes | None = None
    subject: str | None = None
    message_class: str | None = None
    defects: list[str] = field(default_factory=list)
    #: the bound (``max_parts``, ``max_decoded_bytes``) that stopped the unpacking, if any
    bound: str | None = None


class _Budget:
    """Bytes and files a container may still yield (shared by nested Outlook items)."""

    def __init__(self, max_bytes: int, max_files: int) -> None:
        self.bytes_left = max_bytes
        self.files_left = max_files
        self.exhausted: str | None = None

    def take(self, size: int) -> bool:
        if self.exhausted is None and self.files_left <= 0:
            self.exhausted = "max_parts"
        if self.exhausted is None and size > self.bytes_left:
            self.exhausted = "max_decoded_bytes"
        if self.exhausted is not None:
            return False
        self.bytes_left -= size
        self.files_left -= 1
        return True


def is_tnef(data: bytes | memoryview) -> bool:
    """True when *data* starts with the TNEF signature."""
    return len(data) >= 6 and _U32.unpack_from(data, 0)[0] == SIGNATURE


def unpack(data: bytes | memoryview, *, max_bytes: int, max_files: int) -> TnefContents:
    """Unpack the TNEF stream *data*; never raises on malformed input (see the module docstring).

    :param max_bytes: most bytes of files and bodies kept (the rest: a defect names the bound).
    :param max_files: most files kept.
    :raises ValueError: *data* does not start with the TNEF signature (not a container at all).
    """
    if not is_tnef(data):
        raise ValueError("not a TNEF stream (no 0x223E9F78 signature)")
    out = TnefContents()
    budget = _Budget(max_bytes, max_files)
    _Stream(memoryview(data), out, budget, "", 0).read()
    out.bound = budget.exhausted
    return out


class _Stream:
    """One TNEF stream (the container, or an Outlook item attached inside it)."""

    def __init__(self, view: memoryview, out: TnefContents, budget: _Budget, prefix: str, depth: int) -> None:
        self.view = view
        self.out = out
        self.budget = budget
        self.prefix = prefix
        self.depth = depth
        self.codepage = "cp1252"
        self.attachments: list[dict[str, object]] = []

    def defect(self, text: str) -> None:
        self.out.defects.append("tnef%s: %s" % (" " + self.prefix.rstrip(".") if self.prefix else "", text))

    def read(self) -> None:
        view, pos, end = self.view, 6, len(self.view)
        while pos < end:
            if end - pos < _ATTR_HEAD.size + 2:
                self.defect("%d bytes after the last attribute ignored" % (end - pos))
                break
            level, att_id, _type, length = _ATTR_HEAD.unpack_from(view, pos)
            start = pos + _ATTR_HEAD.size
            if length > end - start:
                self.defect("attribute 0x%04x at offset %d claims %d bytes, %d are left: the rest ignored"
                            % (att_id, pos, length, end - start))
                break
            if length > end - start - 2:
                self.defect("attribute 0x%04x at offset %d has no checksum" % (att_id, pos))
            value = view[start:start + length]
            pos = start + length + 2  # the checksum is not checked: a wrong one loses nothing
            if level == _LVL_ATTACHMENT:
                self.attachment_attribute(att_id, value)
            elif level == _LVL_MESSAGE:
                self.message_attribute(att_id, value)
            else:
                self.defect("attribute level %d at offset %d: the rest ignored" % (level, pos))
                break
        self.flush()

    # message level -------------------------------------------------------------------------
    def message_attribute(self, att_id: int, value: memoryview) -> None:
        top = not self.prefix
        if att_id == _ATT_OEM_CODEPAGE and len(value) >= 4:
            self.codepage = _codec(_U32.unpack_from(value, 0)[0], self.codepage)
        elif att_id == _ATT_BODY and top and self.out.text is None:
            self.out.text = _text(value, self.codepage)
        elif att_id == _ATT_SUBJECT and top:
            self.out.subject = _text(value, self.codepage)
        elif att_id == _ATT_MESSAGE_CLASS and top:
            self.out.message_class = _text(value, self.codepage)
        elif att_id == _ATT_MSG_PROPS and top:
            props = self.properties(value)
            cpid = props.get(_PR_INTERNET_CPID)
            charset = _codec(cpid, "cp1252") if isinstance(cpid, int) else None
            body = props.get(_PR_BODY)
            if isinstance(body, (str, memoryview)):
                self.out.text = body if isinstance(body, str) else _text(body, charset or self.codepage)
            html = props.get(_PR_BODY_HTML)
            if isinstance(html, (str, memoryview)):
                self.out.html = html.encode("utf-8") if isinstance(html, str) else bytes(html)
                self.out.html_charset = "utf-8" if isinstance(html, str) else charset
            rtf = props.get(_PR_RTF_COMPRESSED)
            if isinstance(rtf, (bytes, memoryview)):
                try:
                    self.out.rtf = decompress_rtf(rtf, self.budget.bytes_left)
                except ValueError as exc:
                    self.defect("RTF body not decompressed: %s" % exc)

    # attachment level ----------------------------------------------------------------------
    def attachment_attribute(self, att_id: int, value: memoryview) -> None:
        if att_id == _ATT_ATTACH_REND_DATA or not self.attachments:
            if att_id != _ATT_ATTACH_REND_DATA:
                self.defect("attachment attribute 0x%04x before any attAttachRendData" % att_id)
            self.attachments.append({})
        current = self.attachments[-1]
        if att_id == _ATT_ATTACH_DATA:
            current["data"] = value
        elif att_id == _ATT_ATTACH_TITLE:
            current["title"] = _text(value, self.codepage)
        elif att_id == _ATT_ATTACHMENT:
            props = self.properties(value)
            for key, prop in ((_PR_ATTACH_LONG_FILENAME, "long"), (_PR_ATTACH_FILENAME, "short"),
                              (_PR_DISPLAY_NAME, "display"), (_PR_ATTACH_MIME_TAG, "mime"),
                              (_PR_ATTACH_CONTENT_ID, "cid")):
                if isinstance(props.get(key), str):
                    current[prop] = props[key]
            blob = props.get(_PR_ATTACH_DATA)
            if isinstance(blob, memoryview):
                current["data"] = blob
                current["object"] = props.get(-_PR_ATTACH_DATA) == _PT_OBJECT

    def flush(self) -> None:
        """Turn the attachments read into files (or, for attached Outlook items, unpack them)."""
        for index, found in enumerate(self.attachments, 1):
            path = "%s%d" % (self.prefix, index)
            data = found.get("data")
            if not isinstance(data, memoryview):
                continue  # a rendering without data (an OLE object's picture, or nothing at all)
            name = next((found[k] for k in ("long", "short", "title", "display") if found.get(k)), None)
            nested = None
            if found.get("object") and bytes(data[:16]) == _IID_IMESSAGE:
                data = data[16:]  # an attached Outlook item: kept as it is, and unpacked below
                if is_tnef(data) and self.depth + 1 < MAX_NESTING:
                    nested = _Stream(data, self.out, self.budget, path + ".", self.depth + 1)
                elif is_tnef(data):
                    self.defect("attached item %s nested deeper than %d: not unpacked" % (path, MAX_NESTING))
            elif found.get("object"):
                data = data[16:]  # an OLE object: its interface id, then its bytes
            if not self.budget.take(len(data)):
                self.defect("%s reached: attachment %s and the rest not unpacked" % (self.budget.exhausted, path))
                return
            mime = found.get("mime")
            cid = found.get("cid")
            self.out.files.append(TnefFile(path, str(name) if name else None, bytes(data),
                                           mime if isinstance(mime, str) else None,
                                           cid if isinstance(cid, str) else None))
            if nested is not None:
                nested.read()

    # MAPI properties -----------------------------------------------------------------------
    def properties(self, value: memoryview) -> dict[int, object]:
        """The MAPI properties in *value*: id -> str (strings), memoryview (binary/object,
        first value only), int (PtypInteger32); ``-id`` -> the type of a binary property.
        Stops, with a defect, at the first property that does not fit."""
        found: dict[int, object] = {}
        end = len(value)
        if end < 4:
            return found
        count, pos = _U32.unpack_from(value, 0)[0], 4
        for n in range(count):  # each property takes at least 4 bytes: bounded by the data
            if end - pos < 4:
                if pos < end or n < count:
                    self.defect("MAPI property list claims %d properties, holds %d" % (count, n))
                break
            ptype, pid = _U16.unpack_from(value, pos)[0], _U16.unpack_from(value, pos + 2)[0]
            pos += 4
            try:
                if pid >= 0x8000:  # named property: GUID, kind, then an id or a name
                    kind = _U32.unpack_from(value, pos + 16)[0]
                    pos += 20
                    if kind == 0:
                        pos += 4
                    else:
                        pos += 4 + _pad4(_U32.unpack_from(value, pos)[0])
                values, pos = self._values(value, pos, ptype)
            except (struct.error, _Overrun) as exc:
                self.defect("MAPI property 0x%04x (type 0x%04x) does not fit: %s" % (pid, ptype, exc or "short"))
                break
            if not values or pid >= 0x8000:
                continue
            first = values[0]
            base = ptype & ~_MULTI
            if base == _PT_UNICODE:
                found[pid] = bytes(first).decode("utf-16-le", "replace").split("\0", 1)[0]
            elif base == _PT_STRING8:
                found[pid] = _text(first, self.codepage)
            elif base in (_PT_BINARY, _PT_OBJECT):
                found[pid] = first
                found[-pid] = base
            elif base == _PT_LONG:
                found[pid] = _U32.unpack_from(first, 0)[0]
        return found

    def _values(self, value: memoryview, pos: int, ptype: int) -> tuple[list[memoryview], int]:
        end = len(value)
        base, multi = ptype & ~_MULTI, bool(ptype & _MULTI)
        count = 1
        if multi or base in _VARIABLE:
            count = _U32.unpack_from(value, pos)[0]
            pos += 4
        size = _FIXED_SIZE.get(base)
        if size is not None:
            if count > (end - pos) // size:
                raise _Overrun("%d values of %d bytes" % (count, size))
            return [value[pos + i * size:pos + (i + 1) * size] for i in range(min(count, 1))], pos + count * size
        if base not in _VARIABLE:
            raise _Overrun("unknown property type")
        if count > (end - pos) // 4:
            raise _Overrun("%d values" % count)
        values: list[memoryview] = []
        for _ in range(count):
            length = _U32.unpack_from(value, pos)[0]
            pos += 4
            if length > end - pos:
                raise _Overrun("a value of %d bytes, %d left" % (length, end - pos))
            if not values:
                values.append(value[pos:pos + length])
            pos += _pad4(length)
        return values, min(pos, end)


class _Overrun(Exception):
    """A MAPI value claims more bytes than are left."""


def _pad4(n: int) -> int:
    return n + (-n % 4)


def _codec(codepage: object, default: str) -> str:
    """Python's codec for a Windows code page number; *default* when unknown."""
    known = {65001: "utf-8", 1200: "utf-16-le", 20127: "ascii", 50220: "iso2022_jp",
             50221: "iso2022_jp", 50222: "iso2022_jp", 51932: "euc_jp", 936: "gbk", 54936: "gb18030"}
    if not isinstance(codepage, int):
        return default
    name = known.get(codepage)
    if name is None and 28591 <= codepage <= 28605:
        name = "iso8859_%d" % (codepage - 28590)
    name = name or "cp%d" % codepage
    try:
        return codecs.lookup(name).name
    except LookupError:
        return default


def _text(value: bytes | memoryview, codepage: str) -> str:
    return bytes(value).split(b"\0", 1)[0].decode(codepage, "replace")


# Compressed RTF ([MS-OXRTFCP]) ---------------------------------------------------------------
_RTF_PREBUF = (b"{\\rtf1\\ansi\\mac\\deff0\\deftab720{\\fonttbl;}{\\f0\\fnil \\froman \\fswiss "
               b"\\fmodern \\fscript \\fdecor MS Sans SerifSymbolArialTimes New RomanCourier"
               b"{\\colortbl\\red0\\green0\\blue0\r\n\\par \\pard\\plain\\f0\\fs20\\b\\i\\u\\tab\\tx")
_LZFU, _MELA = 0x75465A4C, 0x414C454D


def decompress_rtf(data: bytes | memoryview, max_bytes: int) -> bytes:
    """Decompress a ``PidTagRtfCompressed`` value; at most *max_bytes* of output.

    :raises ValueError: not compressed RTF, or the output would pass *max_bytes*.
    """
    view = memoryview(data)
    if len(view) < 16:
        raise ValueError("%d bytes, shorter than the 16-byte header" % len(view))
    comp_size, raw_size, comp_type = struct.unpack_from("<III", view, 0)
    body = view[16:min(len(view), 4 + comp_size)]
    if comp_type == _MELA:
        return bytes(body[:min(raw_size, max_bytes)])
    if comp_type != _LZFU:
        raise ValueError("unknown compression 0x%08x" % comp_type)
    window = bytearray(4096)
    window[:len(_RTF_PREBUF)] = _RTF_PREBUF
    write = len(_RTF_PREBUF)
    out = bytearray()
    pos, end = 0, len(body)
    while pos < end:
        control = body[pos]
        pos += 1
        for bit in range(8):
            if pos >= end:
                break
            if not control & (1 << bit):
                byte = body[pos]
                pos += 1
                out.append(byte)
                window[write] = byte
                write = (write + 1) & 0xFFF
            else:
                if end - pos < 2:
                    return bytes(out)
                token = (body[pos] << 8) | body[pos + 1]
                pos += 2
                offset, length = token >> 4, (token & 0xF) + 2
                if offset == write:
                    return bytes(out)
                if offset + length <= 4096 and write + length <= 4096 and (
                        offset + length <= write or write + length <= offset):
                    chunk = window[offset:offset + length]  # no wrap, no overlap: one slice
                    out += chunk
                    window[write:write + length] = chunk
                    write = (write + length) & 0xFFF
                else:
                    for i in range(length):  # a run that reads what it writes, or wraps
                        byte = window[(offset + i) & 0xFFF]
                        out.append(byte)
                        window[write] = byte
                        write = (write + 1) & 0xFFF
            if len(out) > max_bytes:
                raise ValueError("decompressed RTF passes %d bytes" % max_bytes)
    return bytes(out)
