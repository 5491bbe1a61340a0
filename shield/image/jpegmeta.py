"""Lossless removal of a JPEG's metadata segments: the entropy-coded data is copied untouched.

A passed-through JPEG loses its EXIF and XMP (APP1: camera, time, GPS
position), Photoshop/IPTC (APP13) and comments (COM). JFIF (APP0), the ICC
profile and multi-picture index (APP2) and Adobe's colour transform flag
(APP14) stay: they change how the pixels are shown. Anything that does not
parse as JPEG markers is returned as it came.
"""

SOI = b"\xff\xd8"
_DROPPED = frozenset((0xE1, 0xED, 0xFE))  # APP1 (EXIF, XMP), APP13 (IPTC), COM
_SOS, _EOI = 0xDA, 0xD9
_STANDALONE = frozenset((0x01, *range(0xD0, 0xD8)))


def orientation_exif(orientation):
    """An APP1 EXIF segment holding the orientation tag alone (big-endian TIFF, one IFD entry)."""
    tiff = (
        b"MM\x00\x2a\x00\x00\x00\x08"  # header, IFD0 at offset 8
        + b"\x00\x01"  # one entry
        + b"\x01\x12\x00\x03\x00\x00\x00\x01"  # Orientation, SHORT, count 1
        + orientation.to_bytes(2, "big")
        + b"\x00\x00"
        + b"\x00\x00\x00\x00"  # no next IFD
    )
    payload = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload


def strip(data, orientation=1):
    """`data` without its metadata segments; an orientation other than 1 is kept in a minimal EXIF."""
    if data[:2] != SOI:
        return data
    parts = [SOI]
    i, n, dropped, after_jfif = 2, len(data), False, 1
    while True:
        if i + 2 > n or data[i] != 0xFF:
            return data  # not markers where markers must be: leave the file alone
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (_SOS, _EOI):
            parts.append(data[i:])
            break
        if marker in _STANDALONE:
            parts.append(data[i : i + 2])
            i += 2
            continue
        if i + 4 > n:
            return data
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if length < 2 or i + 2 + length > n:
            return data
        if marker in _DROPPED:
            dropped = True
        else:
            parts.append(data[i : i + 2 + length])
            if marker == 0xE0 and len(parts) == 2:
                after_jfif = 2  # EXIF belongs after a leading JFIF segment
        i += 2 + length
    if orientation != 1:
        parts.insert(after_jfif, orientation_exif(orientation))
    elif not dropped:
        return data
    return b"".join(parts)
