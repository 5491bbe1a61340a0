"""One stored variant on disk: a header (JSON) and the body, with the body's checksum.

    magic "SHV1" | header length (u32) | header JSON | body

The header holds the body's size and its CRC-32 (`crc`). What is read back is
checked before it is served: a size or checksum that does not match is a
damaged entry, which the store drops and counts as a miss. A body kept in
its own file is checked in full the first time this process reads that file
(same inode, size and modification time after that are trusted), so a
damaged file is never sent while a healthy one is sent by sendfile without
being read again.
"""

import json
import os
import struct
import zlib
from collections import OrderedDict
from dataclasses import dataclass

ENTRY_MAGIC = b"SHV1"
_HEADER = struct.Struct(">4sI")
_VERIFIED_FILES = 4096  # files this process has checked, remembered by (inode, size, mtime)
_CHUNK = 1 << 20


@dataclass
class Entry:
    """A stored variant: its header fields and its body (bytes or an open file)."""

    header: dict
    body: object  # bytes, or a file positioned at the body's first byte
    size: int

    def read_body(self):
        if isinstance(self.body, bytes):
            return self.body
        try:
            return self.body.read()
        finally:
            self.body.close()

    def close(self):
        if not isinstance(self.body, bytes):
            self.body.close()


def checksum(body):
    return zlib.crc32(body) & 0xFFFFFFFF


def pack_entry(header, body):
    blob = json.dumps(dict(header, crc=checksum(body)), separators=(",", ":")).encode()
    return _HEADER.pack(ENTRY_MAGIC, len(blob)) + blob + body


_verified = OrderedDict()


def _file_crc(fh, start, size):
    """CRC-32 of `size` bytes from `start`, the file left positioned at `start`."""
    fh.seek(start)
    crc, left = 0, size
    while left > 0:
        data = fh.read(min(_CHUNK, left))
        if not data:
            break
        crc = zlib.crc32(data, crc)
        left -= len(data)
    fh.seek(start)
    return crc & 0xFFFFFFFF if left == 0 else None


def unpack_entry(found):
    """(Entry, None) from what diskcache returned, or (None, why) when it is damaged."""
    if isinstance(found, bytes):
        if found[:4] != ENTRY_MAGIC or len(found) < _HEADER.size:
            return None, "header"
        _magic, hlen = _HEADER.unpack_from(found)
        start = _HEADER.size + hlen
        try:
            header = json.loads(found[_HEADER.size : start])
        except ValueError:
            return None, "header"
        body = found[start:]
        if len(body) != header.get("size"):
            return None, "size"
        if "crc" in header and checksum(body) != header["crc"]:
            return None, "checksum"
        return Entry(header, body, len(body)), None
    # Read through the unbuffered file: a buffered reader would leave the OS file
    # position past the header, and sendfile starts from the OS position.
    fh = found.detach() if hasattr(found, "detach") else found
    try:
        head = fh.read(_HEADER.size)
        if len(head) != _HEADER.size or head[:4] != ENTRY_MAGIC:
            fh.close()
            return None, "header"
        _magic, hlen = _HEADER.unpack(head)
        header = json.loads(fh.read(hlen))
        st = os.fstat(fh.fileno())
        start = _HEADER.size + hlen
        size = st.st_size - start
        if size != header.get("size"):
            fh.close()
            return None, "size"
        if "crc" in header:
            identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, header["crc"])
            if identity in _verified:
                _verified.move_to_end(identity)
            else:
                if _file_crc(fh, start, size) != header["crc"]:
                    fh.close()
                    return None, "checksum"
                _verified[identity] = True
                if len(_verified) > _VERIFIED_FILES:
                    _verified.popitem(last=False)
        return Entry(header, fh, size), None
    except (OSError, ValueError):
        fh.close()
        return None, "read"
