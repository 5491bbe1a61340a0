"""Where every pixel goes: the resize and crop plan of a Transform (no I/O).

All sizes are of the upright (EXIF-oriented) image as the header states it,
never of the decoded image, which JPEG shrink-on-load may have made smaller.
"""

from dataclasses import dataclass

from ..errors import InvalidParam


@dataclass(frozen=True)
class Plan:
    resize_w: int  # the whole upright source is scaled to this...
    resize_h: int
    crop_x: int  # ...then this box of it is kept (cover/face/auto)...
    crop_y: int
    crop_w: int
    crop_h: int
    canvas_w: int  # ...and placed centred on this canvas (contain letterbox).
    canvas_h: int

    @property
    def size(self):
        return self.canvas_w, self.canvas_h


def _within_source(w, h, s):
    """A box asked for beyond the source: shrink it, keeping its aspect ratio."""
    if s > 1:
        return max(1, round(w / s)), max(1, round(h / s)), 1.0
    return w, h, s


def plan(src_w, src_h, w, h, fit, focus=None, max_pixels=None):
    """The plan that turns an upright src_w x src_h image into what w, h, fit ask for.

    Never enlarges unless fit=fill. `focus` is a region (x, y, w, h) in source
    pixels that a cover crop should keep in view (face and saliency crops).
    """
    if w is None and h is None:
        return _scaled(src_w, src_h, 1.0, max_pixels)
    if w is None or h is None:
        # One side: the other follows the aspect ratio, rounded to the nearest pixel.
        s = (w / src_w) if w is not None else (h / src_h)
        return _scaled(src_w, src_h, s if fit == "fill" else min(s, 1.0), max_pixels)

    if fit == "fill":
        return _checked(Plan(w, h, 0, 0, w, h, w, h), max_pixels)

    if fit == "inside":
        s = min(w / src_w, h / src_h, 1.0)
        return _scaled(src_w, src_h, s, max_pixels)

    if fit == "contain":
        s = min(w / src_w, h / src_h)
        w, h, s = _within_source(w, h, s)
        rw, rh = max(1, min(w, round(src_w * s))), max(1, min(h, round(src_h * s)))
        return _checked(Plan(rw, rh, 0, 0, rw, rh, w, h), max_pixels)

    # cover, face and auto: fill the box, crop what sticks out.
    s = max(w / src_w, h / src_h)
    w, h, s = _within_source(w, h, s)
    rw, rh = max(w, round(src_w * s)), max(h, round(src_h * s))
    if focus is None:
        x, y = (rw - w) // 2, (rh - h) // 2
    else:
        fx, fy, fw, fh = focus
        cx, cy = (fx + fw / 2) * rw / src_w, (fy + fh / 2) * rh / src_h
        x = int(min(max(0, round(cx - w / 2)), rw - w))
        y = int(min(max(0, round(cy - h / 2)), rh - h))
    return _checked(Plan(rw, rh, x, y, w, h, w, h), max_pixels)


def _scaled(src_w, src_h, s, max_pixels):
    rw, rh = max(1, round(src_w * s)), max(1, round(src_h * s))
    return _checked(Plan(rw, rh, 0, 0, rw, rh, rw, rh), max_pixels)


def _checked(p, max_pixels):
    if max_pixels is not None and max(p.resize_w * p.resize_h, p.canvas_w * p.canvas_h) > max_pixels:
        raise InvalidParam(
            "w",
            f"the output would be {p.canvas_w}x{p.canvas_h} (resized {p.resize_w}x{p.resize_h}), "
            f"over max_output_pixels ({max_pixels}); ask for a smaller w/h",
        )
    return p


def shrink_hint(src_w, src_h, p):
    """The `jpeg:size` hint for shrink-on-load, or None when it cannot help.

    libjpeg scales by 1/2, 1/4 or 1/8 while decoding, to the smallest size
    that still covers the hint; the hint only takes effect when it is at most
    half the source in both dimensions. Sizes are of the stored (not oriented)
    image, so the caller swaps sides for EXIF orientations 5-8.
    """
    need_w, need_h = p.resize_w, p.resize_h
    if need_w * 2 > src_w or need_h * 2 > src_h:
        return None
    return need_w, need_h
