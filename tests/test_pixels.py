"""Pixels right whatever the file says about them: colour profiles, linear grey (issue: pixels)."""

import io
import os
import zlib

import pytest
from PIL import Image, ImageCms

from shield.image import engine, geometry, probe
from tests import imaging

ADOBE = "/usr/share/color/icc/compatibleWithAdobeRGB1998.icc"


def render(body, fmt="png", w=None):
    info = probe.probe(body, 10**9)
    plan = geometry.plan(*info.oriented_size, w, None, "inside")
    return imaging.decode(engine.render(body, info, plan, fmt, 90).body).convert("RGB")


def in_adobe_rgb(rgb, fmt):
    """A flat sRGB colour converted into Adobe RGB (1998), with that profile embedded."""
    srgb = Image.new("RGB", (64, 48), rgb)
    adobe = ImageCms.ImageCmsProfile(ADOBE)
    converted = ImageCms.profileToProfile(srgb, ImageCms.createProfile("sRGB"), adobe, outputMode="RGB")
    out = io.BytesIO()
    converted.save(out, fmt, icc_profile=adobe.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))
    return out.getvalue(), converted.getpixel((0, 0))


@pytest.mark.skipif(not os.path.exists(ADOBE), reason="icc-profiles-free is not installed")
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "WEBP"])
@pytest.mark.parametrize("out", ["png", "jpeg", "webp", "avif"])
def test_an_embedded_profile_is_converted_to_srgb(fmt, out):
    green = (40, 190, 40)
    body, stored = in_adobe_rgb(green, fmt)
    assert abs(stored[0] - green[0]) > 20  # the file's own numbers are not the sRGB ones
    got = render(body, out).getpixel((10, 10))
    assert imaging.close_color(got, green, 12), (got, green, stored)


def test_linear_grey_pngs_are_served_not_500(folder):
    # A grey PNG with gAMA 1.0: ImageMagick calls it LinearGRAY, which Wand's table lacks.
    grey = Image.linear_gradient("L").resize((64, 64))
    out = io.BytesIO()
    grey.save(out, "PNG")
    body = out.getvalue()
    gama = b"gAMA" + (100000).to_bytes(4, "big")
    chunk = (4).to_bytes(4, "big") + gama + zlib.crc32(gama).to_bytes(4, "big")
    body = body[:33] + chunk + body[33:]  # after IHDR
    result = render(body, "png")
    assert result.size == (64, 64)
    # gAMA 1.0: the stored values are linear light; as sRGB they come out brighter.
    assert result.getpixel((32, 32))[0] > grey.getpixel((32, 32)) + 20


@pytest.mark.parametrize("lossless", [False, True])
def test_a_large_webp_shrunk_on_load_looks_like_a_full_decode(lossless):
    """libwebp's scaler decodes lossy WebPs straight to twice the size needed; lossless ones
    (which that scaler gets wrong) take ImageMagick's full decode. Either way: the same picture."""
    src = imaging.decode(imaging.sample("rocket.jpg")).convert("RGB").resize((2400, 1600))
    out = io.BytesIO()
    src.save(out, "WEBP", quality=90, lossless=lossless, method=0)
    body = out.getvalue()
    got = render(body, "png", w=300)
    assert got.size == (300, 200)
    reference = Image.open(io.BytesIO(body)).convert("RGB").resize((300, 200), Image.LANCZOS)
    assert imaging.ssim(got, reference) > 0.97
