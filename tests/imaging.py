"""Image helpers for tests: make fixtures, decode answers, compare by similarity."""

import io

import numpy as np
from PIL import Image

REPO_SAMPLES = __import__("pathlib").Path(__file__).resolve().parent.parent / "samples"


def decode(body):
    """Pillow image of an encoded answer (AVIF and WebP included)."""
    im = Image.open(io.BytesIO(body))
    im.load()
    return im


def encode(im, fmt, **kw):
    out = io.BytesIO()
    im.save(out, fmt, **kw)
    return out.getvalue()


def sample(name):
    return (REPO_SAMPLES / name).read_bytes()


def halves(width, height, left=(220, 30, 30), right=(30, 30, 220)):
    """A picture whose left half and right half differ: orientation shows."""
    im = Image.new("RGB", (width, height), right)
    im.paste(Image.new("RGB", (width // 2, height), left), (0, 0))
    return im


def rgba_logo(width=120, height=80):
    """Opaque red square in the middle of a fully transparent canvas."""
    im = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    im.paste(Image.new("RGBA", (width // 2, height // 2), (255, 0, 0, 255)), (width // 4, height // 4))
    return im


def animated_gif(frames=5, size=(40, 30)):
    images = [Image.new("RGB", size, (40 * i, 255 - 40 * i, 128)) for i in range(frames)]
    out = io.BytesIO()
    images[0].save(out, "GIF", save_all=True, append_images=images[1:], duration=80, loop=0)
    return out.getvalue()


def exif_rotated_jpeg(orientation=6, size=(200, 100)):
    im = halves(*size)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(im, "JPEG", quality=95, exif=exif)


def ssim(a, b):
    """Mean SSIM over 8x8 blocks of the luma of two same-sized images."""
    x = np.asarray(a.convert("L"), dtype=np.float64)
    y = np.asarray(b.convert("L"), dtype=np.float64)
    assert x.shape == y.shape, (x.shape, y.shape)
    h, w = (x.shape[0] // 8) * 8, (x.shape[1] // 8) * 8
    x = x[:h, :w].reshape(h // 8, 8, w // 8, 8).swapaxes(1, 2)
    y = y[:h, :w].reshape(h // 8, 8, w // 8, 8).swapaxes(1, 2)
    mx, my = x.mean(axis=(2, 3)), y.mean(axis=(2, 3))
    vx, vy = x.var(axis=(2, 3)), y.var(axis=(2, 3))
    cov = ((x - mx[..., None, None]) * (y - my[..., None, None])).mean(axis=(2, 3))
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean())


def mean_color(im, box=None):
    arr = np.asarray(im.convert("RGB").crop(box) if box else im.convert("RGB"), dtype=np.float64)
    return tuple(arr.reshape(-1, 3).mean(axis=0))


def close_color(c1, c2, tol=30):
    return all(abs(a - b) <= tol for a, b in zip(c1, c2, strict=True))
