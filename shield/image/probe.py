"""What an original is, read from its first bytes and header alone (no decoding).

The type is recognised by magic bytes, whatever the file is called, and the
pixel count is read straight from the header so a decompression bomb is
refused before ImageMagick ever sees it. ImageMagick's own `ping` reports 0x0
for AVIF/HEIC, so those are read from the HEIF `ispe` property instead.
"""

import struct
from dataclasses import dataclass

from ..errors import SourceTooLarge, UnsupportedSource

HEIF_BRANDS = {
    b"avif": "avif",
    b"avis": "avif",
    b"heic": "heic",
    b"heix": "heic",
    b"heim": "heic",
    b"heis": "heic",
    b"hevc": "heic",
    b"hevx": "heic",
    b"mif1": None,
    b"msf1": None,
}
_SOF_MARKERS = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


@dataclass(frozen=True)
class SourceInfo:
    format: str  # jpeg, png, gif, webp, avif, heic, tiff
    width: int  # as stored, before EXIF orientation
    height: int
    orientation: int = 1  # EXIF orientation 1-8
    has_alpha: bool = False  # as far as the header tells
    animated: bool = False
    # AVIF/HEIC transformative properties, in the order they apply: ("clap", x, y, w, h),
    # ("irot", quarter turns counter-clockwise), ("imir", axis).
    heif_ops: tuple = ()

    @property
    def pixels(self):
        return self.width * self.height

    @property
    def oriented_size(self):
        """Width and height as displayed: orientations 5-8 swap the sides; clap crops, irot turns."""
        if self.heif_ops:
            return displayed_size(self.width, self.height, self.heif_ops)
        if self.orientation in (5, 6, 7, 8):
            return self.height, self.width
        return self.width, self.height


def displayed_size(width, height, ops):
    for op in ops:
        if op[0] == "clap":
            width, height = op[3], op[4]
        elif op[0] == "irot" and op[1] % 2:
            width, height = height, width
    return width, height


def sniff(head):
    """The format named by the first bytes, or None."""
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[4:8] == b"ftyp" and len(head) >= 12:
        return _heif_kind(head)
    return None


def _heif_kind(data):
    size = struct.unpack(">I", data[:4])[0]
    if size < 16 or size > 4096:
        size = min(len(data), 64)
    major = data[8:12]
    brands = [major] + [data[i : i + 4] for i in range(16, min(size, len(data)) - 3, 4)]
    kinds = [HEIF_BRANDS[b] for b in brands if b in HEIF_BRANDS]
    if not kinds:
        return None
    for preferred in ("avif", "heic"):
        if preferred in kinds:
            return preferred
    return "heic"  # mif1/msf1 alone: a HEIF image, decoded the same way


def probe(data, max_pixels):
    """Recognise `data` and read its size; raise the contract's 413/415 errors."""
    kind = sniff(data[:64])
    if kind is None:
        raise UnsupportedSource()
    try:
        info = _READERS[kind](data)
    except (struct.error, IndexError, ValueError, KeyError):
        info = None
    if info is None or info.width <= 0 or info.height <= 0:
        raise UnsupportedSource(f"The original looks like {kind.upper()} but its header is damaged.")
    if info.pixels > max_pixels:
        raise SourceTooLarge(
            f"The original is {info.width}x{info.height} = {info.pixels} pixels, "
            f"over max_source_pixels ({max_pixels})."
        )
    return info


def _png(data):
    if data[12:16] != b"IHDR":
        return None
    width, height, _depth, color_type = struct.unpack(">IIBB", data[16:26])
    has_alpha = color_type in (4, 6)
    animated = False
    pos = 8
    # Walk the chunks before the image data for tRNS (alpha) and acTL (APNG).
    while pos + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        if ctype == b"IDAT":
            break
        if ctype == b"tRNS":
            has_alpha = True
        elif ctype == b"acTL":
            animated = True
        pos += 12 + length
    return SourceInfo("png", width, height, has_alpha=has_alpha, animated=animated)


def _gif(data):
    width, height = struct.unpack("<HH", data[6:10])
    flags = data[10]
    pos = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    frames, has_alpha = 0, False
    # Count image descriptors (two make an animation) and look for transparency.
    while pos < len(data) and frames < 2:
        block = data[pos]
        if block == 0x3B:
            break
        if block == 0x21:
            label = data[pos + 1]
            if label == 0xF9 and data[pos + 3] & 1:
                has_alpha = True
            pos += 2
            while pos < len(data) and data[pos]:
                pos += data[pos] + 1
            pos += 1
        elif block == 0x2C:
            frames += 1
            fwidth, fheight = struct.unpack("<HH", data[pos + 5 : pos + 9])
            # Frames are drawn on the logical screen; a frame larger than it still costs memory.
            width, height = max(width, fwidth), max(height, fheight)
            lflags = data[pos + 9]
            pos += 10 + (3 * 2 ** ((lflags & 7) + 1) if lflags & 0x80 else 0)
            pos += 1  # LZW minimum code size
            while pos < len(data) and data[pos]:
                pos += data[pos] + 1
            pos += 1
        else:
            break
    return SourceInfo("gif", width, height, has_alpha=has_alpha, animated=frames > 1)


def _jpeg(data):
    pos, orientation, size = 2, 1, None
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return size and SourceInfo("jpeg", *size, orientation=orientation)
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        segment = data[pos + 4 : pos + 2 + length]
        if marker == 0xE1 and segment[:6] == b"Exif\x00\x00":
            orientation = _exif_orientation(segment[6:]) or orientation
        elif marker in _SOF_MARKERS:
            height, width = struct.unpack(">HH", segment[1:5])
            return SourceInfo("jpeg", width, height, orientation=orientation)
        elif marker == 0xDA:
            break
        pos += 2 + length
    return None


def _tiff_ifd0(tiff):
    """(endian, entries of IFD0 as {tag: (type, count, value bytes)}) of a TIFF/EXIF block."""
    endian = "<" if tiff[:2] == b"II" else ">"
    offset = struct.unpack(endian + "I", tiff[4:8])[0]
    count = struct.unpack(endian + "H", tiff[offset : offset + 2])[0]
    entries = {}
    for i in range(min(count, 512)):
        at = offset + 2 + 12 * i
        tag, typ, n = struct.unpack(endian + "HHI", tiff[at : at + 8])
        entries[tag] = (typ, n, tiff[at + 8 : at + 12])
    return endian, entries


def _ifd_int(endian, entry):
    typ, _n, raw = entry
    if typ == 3:
        return struct.unpack(endian + "H", raw[:2])[0]
    if typ == 4:
        return struct.unpack(endian + "I", raw)[0]
    raise ValueError("not an integer entry")


def _exif_orientation(tiff):
    try:
        endian, entries = _tiff_ifd0(tiff)
        value = _ifd_int(endian, entries[0x0112]) if 0x0112 in entries else 1
    except (struct.error, IndexError, ValueError, KeyError):
        return 1
    return value if 1 <= value <= 8 else 1


def _tiff(data):
    endian, entries = _tiff_ifd0(data)
    width = _ifd_int(endian, entries[256])
    height = _ifd_int(endian, entries[257])
    orientation = _ifd_int(endian, entries[0x0112]) if 0x0112 in entries else 1
    extra = _ifd_int(endian, entries[338]) if 338 in entries else 0
    return SourceInfo(
        "tiff", width, height, orientation=orientation if 1 <= orientation <= 8 else 1, has_alpha=bool(extra)
    )


def _webp(data):
    chunk = data[12:16]
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack("<HH", data[26:30])
        return SourceInfo("webp", width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L":
        if data[20] != 0x2F:
            return None
        bits = int.from_bytes(data[21:25], "little")
        return SourceInfo(
            "webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, has_alpha=bool((bits >> 28) & 1)
        )
    if chunk == b"VP8X":
        flags = data[20]
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return SourceInfo("webp", width, height, has_alpha=bool(flags & 0x10), animated=bool(flags & 0x02))
    return None


def _heif(data):
    """Largest `ispe` (image spatial extent) of the file: a grid's ispe is the whole image."""
    kind = _heif_kind(data[:64])
    best, pos = None, 0
    while True:
        pos = data.find(b"ispe", pos)
        if pos < 4:
            break
        box_size = struct.unpack(">I", data[pos - 4 : pos])[0]
        if box_size >= 20:
            width, height = struct.unpack(">II", data[pos + 8 : pos + 16])
            if best is None or width * height > best[0] * best[1]:
                best = (width, height)
        pos += 4
    if best is None:
        return None
    has_alpha = (
        b"urn:mpeg:mpegB:cicp:systems:auxiliary:alpha" in data[:65536]
        or b"urn:mpeg:hevc:2015:auxid" in data[:65536]
    )
    ops = _heif_ops(data[:65536], *best)
    return SourceInfo(kind, best[0], best[1], has_alpha=has_alpha, heif_ops=ops)


def _box(data, tag, length):
    """The payload (after the full-box header) of the first box `tag` of `length` bytes, or None."""
    pos = data.find(tag)
    if pos < 4 or struct.unpack(">I", data[pos - 4 : pos])[0] != length:
        return None
    return data[pos + 4 : pos - 4 + length]


def _heif_ops(data, width, height):
    """clap, irot and imir of the primary image, in the order HEIF applies them (clap, irot, imir)."""
    ops = []
    clap = _box(data, b"clap", 40)
    if clap is not None:
        wn, wd, hn, hd = struct.unpack(">IIII", clap[:16])
        hon, hod, von, vod = struct.unpack(">iIiI", clap[16:32])
        if wd and hd and hod and vod and wn and hn:
            cw, ch = wn / wd, hn / hd
            # ISO/IEC 14496-12: the aperture's centre is offset from the image's centre.
            left = hon / hod + (width - 1) / 2 - (cw - 1) / 2
            top = von / vod + (height - 1) / 2 - (ch - 1) / 2
            x, y, w, h = round(left), round(top), round(cw), round(ch)
            if 0 <= x and 0 <= y and 0 < w and 0 < h and x + w <= width and y + h <= height:
                ops.append(("clap", x, y, w, h))
    irot = _box(data, b"irot", 9)
    if irot is not None and irot[0] & 3:
        ops.append(("irot", irot[0] & 3))
    imir = _box(data, b"imir", 9)
    if imir is not None:
        ops.append(("imir", imir[0] & 1))
    return tuple(ops)


_READERS = {
    "png": _png,
    "gif": _gif,
    "jpeg": _jpeg,
    "tiff": _tiff,
    "webp": _webp,
    "avif": _heif,
    "heic": _heif,
}


def is_complete(data, kind):
    """Whether the file runs to its format's end marker: a cut-off download does not.

    ImageMagick decodes a truncated JPEG or PNG with only a warning (the
    missing rows grey), so completeness is checked here, structurally.
    """
    if kind == "jpeg":
        sos = data.find(b"\xff\xda")
        # Entropy-coded data stuffs every 0xFF with 0x00: FFD9 after the first scan is the end.
        return sos > 0 and data.rfind(b"\xff\xd9") > sos
    if kind == "png":
        end = data.rfind(b"IEND")
        return end > data.find(b"IDAT") > 0
    if kind == "gif":
        return data.rstrip(b"\x00")[-1:] == b"\x3b"
    if kind == "webp":
        return struct.unpack("<I", data[4:8])[0] + 8 <= len(data)
    if kind in ("avif", "heic"):
        pos = 0
        while pos + 8 <= len(data):
            size = struct.unpack(">I", data[pos : pos + 4])[0]
            if size == 1:
                size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
            elif size == 0:
                return True
            if size < 8:
                return False
            pos += size
        return pos == len(data)
    return True
