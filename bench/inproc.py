"""In-process measurements: shield's engine against Pillow, SSIM, test images, cache filling."""

import io
import time

import numpy as np
from PIL import Image, ImageOps

from shield.image import engine, geometry, pillow_codecs, probe
from shield.image import quality as quality_scale

Image.MAX_IMAGE_PIXELS = None
PIL_FORMATS = {"jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF", "png": "PNG"}


# -- shield's engine, called as the transform pool calls it


def engine_render(body, width, fmt, quality):
    info = probe.probe(body, 10**9)
    src_w, src_h = info.oriented_size
    plan = geometry.plan(src_w, src_h, width, None, "inside")
    return engine.render(body, info, plan, fmt, quality)


# -- Pillow doing the same: decode, upright, LANCZOS resize, the same encoder settings


def pillow_render(body, width, fmt, quality, draft=True):
    """What shield's engine does, in Pillow. `draft`: JPEG shrink-on-load, as shield's jpeg:size hint."""
    im = Image.open(io.BytesIO(body))
    src_w, src_h = im.size
    if im.getexif().get(0x0112, 1) != 1:
        im = ImageOps.exif_transpose(im)
        src_w, src_h = im.size
    height = max(1, round(src_h * width / src_w))
    if draft and im.format == "JPEG" and width * 2 <= src_w and height * 2 <= src_h:
        # The same rule as shield's hint: only when it can at least halve the decode.
        im.draft("RGB", (width, height))
    im = im.convert("RGB")
    im = im.resize((width, height), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    # The settings shield's quality table gives for q, so only the pipeline differs.
    setting = quality_scale.setting(fmt, quality)
    if fmt == "jpeg":
        im.save(out, "JPEG", quality=setting, optimize=True, progressive=True)
    elif fmt == "webp":
        im.save(out, "WEBP", quality=setting, method=int(pillow_codecs.WEBP_METHOD))
    elif fmt == "avif":
        im.save(
            out,
            "AVIF",
            quality=setting,
            speed=quality_scale.AVIF_SPEED,
            subsampling=pillow_codecs.AVIF_SUBSAMPLING,
        )
    else:
        im.save(out, "PNG")
    return out.getvalue(), im.size


def careful_resize(body, width):
    """The reference: full decode, upright, one LANCZOS pass in float (Pillow), as RGB."""
    im = ImageOps.exif_transpose(Image.open(io.BytesIO(body))).convert("RGB")
    height = max(1, round(im.height * width / im.width))
    return im.resize((width, height), Image.Resampling.LANCZOS)


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    return (time.perf_counter() - started) * 1000, out


def timed_cpu(fn, *args, **kwargs):
    """(wall ms, this process's CPU ms over all its threads, result)."""
    started, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return (time.perf_counter() - started) * 1000, (time.process_time() - cpu) * 1000, out


def engine_vs_pillow(photos, width=800, quality=80, formats=("jpeg", "webp", "avif"), rounds=3):
    """ms per image, median over photos x rounds, interleaved so noise hits all alike.

    {fmt: {"engine": ms, "pillow": ms, "pillow_full": ms, "engine_cpu": ms, "pillow_cpu": ms,
    "bytes_engine": n, "bytes_pillow": n}}. The CPU times (all threads; libavif encodes on
    two) move less than wall times when other processes share the machine.
    """
    bodies = [open(p, "rb").read() for p in photos]  # noqa: SIM115
    # One untimed pass: libraries loaded, caches warm.
    for fmt in formats:
        engine_render(bodies[0], width, fmt, quality)
        pillow_render(bodies[0], width, fmt, quality)
    samples = {
        fmt: {"engine": [], "pillow": [], "pillow_full": [], "engine_cpu": [], "pillow_cpu": []}
        for fmt in formats
    }
    sizes = {fmt: {"engine": [], "pillow": []} for fmt in formats}
    for _ in range(rounds):
        for body in bodies:
            for fmt in formats:
                ms, cpu, out = timed_cpu(engine_render, body, width, fmt, quality)
                samples[fmt]["engine"].append(ms)
                samples[fmt]["engine_cpu"].append(cpu)
                sizes[fmt]["engine"].append(len(out.body))
                ms, cpu, (out, _size) = timed_cpu(pillow_render, body, width, fmt, quality)
                samples[fmt]["pillow"].append(ms)
                samples[fmt]["pillow_cpu"].append(cpu)
                sizes[fmt]["pillow"].append(len(out))
                ms, _ = timed(pillow_render, body, width, fmt, quality, draft=False)
                samples[fmt]["pillow_full"].append(ms)
    result = {}
    for fmt in formats:
        result[fmt] = {k: float(np.median(v)) for k, v in samples[fmt].items()}
        result[fmt]["bytes_engine"] = int(np.median(sizes[fmt]["engine"]))
        result[fmt]["bytes_pillow"] = int(np.median(sizes[fmt]["pillow"]))
    return result


# -- SSIM (Wang et al. 2004, 7x7 uniform windows on luma, as scikit-image's default)


def _luma(im):
    rgb = np.asarray(im.convert("RGB"), dtype=np.float64)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _box_mean(a, k):
    """Mean over every k x k window (valid positions only), by summed-area table."""
    s = np.pad(a, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    return (s[k:, k:] - s[:-k, k:] - s[k:, :-k] + s[:-k, :-k]) / (k * k)


def ssim(a, b, k=7):
    if a.size != b.size:
        raise ValueError(f"sizes differ: {a.size} vs {b.size}")
    x, y = _luma(a), _luma(b)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    n = k * k
    mx, my = _box_mean(x, k), _box_mean(y, k)
    # Sample (co)variances over each window, as scikit-image computes them.
    vx = (_box_mean(x * x, k) - mx * mx) * n / (n - 1)
    vy = (_box_mean(y * y, k) - my * my) * n / (n - 1)
    cxy = (_box_mean(x * y, k) - mx * my) * n / (n - 1)
    m = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(m.mean())


def engine_ssim(photos, widths=(320, 800, 1200)):
    """SSIM of the engine's output (its fast path: shrink-on-load + its resize, PNG so no
    encoder loss) against a careful full-decode LANCZOS resize, per photo and width."""
    rows = []
    for path in photos:
        body = open(path, "rb").read()  # noqa: SIM115
        for width in widths:
            out = engine_render(body, width, "png", 100)
            got = Image.open(io.BytesIO(out.body))
            rows.append((path, width, ssim(got, careful_resize(body, width))))
    return rows


# -- test images


def tiled_jpeg(photos, size=(5120, 2880), quality=90):
    """A size[0] x size[1] JPEG made by tiling the photos (2560x1600 each: 2 x 2, cropped)."""
    canvas = Image.new("RGB", size)
    tiles = [Image.open(p).convert("RGB") for p in photos]
    x = y = i = 0
    while y < size[1]:
        x = 0
        row_h = 0
        while x < size[0]:
            tile = tiles[i % len(tiles)]
            canvas.paste(tile, (x, y))
            x += tile.width
            row_h = max(row_h, tile.height)
            i += 1
        y += row_h
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=quality)
    return out.getvalue()
