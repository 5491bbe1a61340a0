"""BlurHash placeholders: a ~30-character string a page paints as a blurred preview.

A BlurHash keeps only a few cosine components per axis, so it is computed from
a tiny copy of the picture: the caller hands over at most ~32 px, and the
encoder, the pure-Python `blurhash` package (maintained, and it decodes too;
blurhash-python's encoder relies on Pillow's deprecated Image.getdata), takes
a few milliseconds there. A larger array is first
averaged down to that size here, in linear light where BlurHash does its sums,
so no caller can make encoding cost more. As with every BlurHash encoder the
exact string depends a little on the size it is computed at (the reference
sums sample the cosines at pixel edges); the preview it paints does not.
"""

import blurhash
import cv2
import numpy as np

# Long side of the copy the hash is computed from: well above the 9 components
# per axis the format allows, and what the caller already shrinks to.
ENCODE_SIDE = 32

_SRGB_TO_LINEAR = np.array([blurhash.srgb_to_linear(v) for v in range(256)], dtype=np.float32)


def _components(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= 9:
        raise ValueError(f"{name} must be an integer from 1 to 9, got {value!r}")
    return int(value)


def blurhash_of(rgb, x_components=4, y_components=3):
    """The BlurHash of an HxWx3 uint8 RGB array with the given components per axis (1-9)."""
    x_components = _components("x_components", x_components)
    y_components = _components("y_components", y_components)
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8 or 0 in arr.shape:
        raise ValueError(f"expected a non-empty HxWx3 uint8 RGB array, got {arr.dtype} {arr.shape}")
    linear = _SRGB_TO_LINEAR[arr]
    h, w = arr.shape[:2]
    if max(h, w) > ENCODE_SIDE:
        k = ENCODE_SIDE / max(h, w)
        size = (max(1, round(w * k)), max(1, round(h * k)))
        linear = cv2.resize(linear, size, interpolation=cv2.INTER_AREA)
    return blurhash.encode(linear.tolist(), x_components, y_components, linear=True)


def decode_blurhash(hash_, width, height):
    """The picture a BlurHash stands for, as a height x width x 3 uint8 RGB array."""
    if width < 1 or height < 1:
        raise ValueError(f"width and height must be at least 1, got {width}x{height}")
    try:
        pixels = blurhash.decode(hash_, width, height)
    except (KeyError, IndexError) as exc:
        raise ValueError(f"not a BlurHash: {hash_!r}") from exc
    return np.array(pixels, dtype=np.uint8).reshape(height, width, 3)
