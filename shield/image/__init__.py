"""Pixels: probing, decoding, resizing, encoding, format negotiation, smart crops, placeholders."""

import os

# ImageMagick reads these once, when Wand first loads it (whichever module of this room
# imports it first): one thread per transform (the pool gives the parallelism), and
# shield's own policy.xml.
os.environ.setdefault("MAGICK_THREAD_LIMIT", "1")
os.environ.setdefault(
    "MAGICK_CONFIGURE_PATH",
    os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "config"),
)
