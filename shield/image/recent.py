"""Each worker's recent decodes, so the next variant of an original does not decode it again.

A page's srcset asks for five or more widths of each image, and every client format is a
variant of its own: each is a miss that decodes the same original again, and the decode is
often most of a small variant's work (a progressive 2560x1600 JPEG takes as long to decode
at 320 px, through DCT scaling, as at full size). Kept here, up to `decode_cache_bytes` per
worker: the decoded frames of recent stills of 16,384 pixels or more, by the digest of the
original's bytes and by what the decode depended on besides them (reuse_key: the source's
description, the JPEG's DCT scale, the size asked of a WebP or HEIF). A variant made from a
kept decode is therefore the very same bytes as one decoded afresh, and a replaced
original, whose bytes differ, is never matched.

Entries are Pillow images nobody writes to: the engine resizes, crops or copies them into
images of its own before it encodes, so two transform threads can share one.
"""

import hashlib
from collections import OrderedDict

from ..pool import os_threading
from . import decode

# One entry may take at most this share of the budget, so a few large decodes cannot push
# out everything else (and the largest transforms keep their memory to themselves).
MAX_ENTRY_SHARE = 4
JPEG_SCALES = 8  # libjpeg's DCT scales: 1/8 to 8/8
BYTES_PER_PIXEL = 4  # RGB, RGBX and RGBA are all four bytes a pixel in Pillow
# Decodes smaller than this are cheap to make again and not kept: their objects would cost
# more than their pixels, and many tiny originals would make many entries.
MIN_PIXELS = 16_384
ENTRY_OVERHEAD = 2048  # bytes charged to each entry for its Python and Pillow objects


def reuse_key(info, need, animate, keep_metadata):
    """What decode.decode's frames depend on besides the bytes: equal keys, equal frames.

    A JPEG decoded with a size hint comes out at libjpeg's DCT scale k/8, the smallest at
    least 1/n where n is how many times the hint fits the stored size: every hint with the
    same k gives the same pixels. WebP and HEIF shrink on load to the size asked itself.
    The source's description is part of it too: `info` comes from the stored metadata, not
    from the bytes, and decode() reads its size, orientation and HEIF operations.
    """
    described = (info.format, info.width, info.height, info.orientation, repr(info.heif_ops))
    if info.format == "jpeg":
        hint = decode.jpeg_hint(info, need) if need is not None else None
        times = min(info.width // hint[0], info.height // hint[1]) if hint else 1
        return (*described, -(-JPEG_SCALES // times), keep_metadata)  # k = ceil(8 / times)
    if info.format in ("webp", "heic") and not keep_metadata:
        return (*described, need, animate)
    return (*described, animate, keep_metadata)


def _cost(decoded):
    """Bytes an entry of this decode is charged, or None when it is not kept: animations,
    small decodes, and frames whose decoder left objects in `info` (pillow-heif's depth
    images, say) whose size is not known."""
    if len(decoded.frames) != 1:
        return None
    frame = decoded.frames[0]
    if frame.width * frame.height < MIN_PIXELS:
        return None
    size = frame.width * frame.height * BYTES_PER_PIXEL + ENTRY_OVERHEAD
    for value in (*frame.info.values(), *decoded.metadata.values()):
        if isinstance(value, (bytes, str)):
            size += len(value)
        elif isinstance(value, (int, float, bool)) or value is None:
            size += 8
        elif isinstance(value, (tuple, list, dict)) and not value:
            size += 8
        elif isinstance(value, tuple) and all(isinstance(v, (int, float)) for v in value):
            size += 8 * len(value)
        else:
            return None
    return size


class RecentDecodes:
    def __init__(self, max_bytes):
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._items = OrderedDict()  # key -> (Decoded, bytes)
        self._lock = os_threading("Lock")()  # transform threads share the entries

    def decode(self, data, info, need, animate=False, keep_metadata=False):
        """decode.decode(...), from memory when the same decode was made recently.

        Returns (Decoded, shared): shared frames must not be changed or saved as they are.
        """
        if not self.max_bytes:
            return decode.decode(data, info, need, animate, keep_metadata), False
        key = (hashlib.blake2b(data, digest_size=16).digest(), reuse_key(info, need, animate, keep_metadata))
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return found[0], True
            self.misses += 1
        decoded = decode.decode(data, info, need, animate, keep_metadata)
        size = _cost(decoded)
        if size is None or size * MAX_ENTRY_SHARE > self.max_bytes:
            return decoded, False
        with self._lock:
            if key not in self._items:
                self._items[key] = (decoded, size)
                self.bytes += size
            while self.bytes > self.max_bytes:
                _key, (_decoded, dropped) = self._items.popitem(last=False)
                self.bytes -= dropped
        return decoded, True
