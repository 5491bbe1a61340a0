"""Where the interesting part of a picture is: faces first, then visual saliency.

A centred crop cuts heads off portraits and loses a subject standing to one
side of a wide shot, so `fit=face` and `fit=auto` keep in view a region found
here instead. Detection runs on a small copy of the original (at most ~400 px
on its long side, made by the caller): there it costs tens of milliseconds,
and a crop only needs to know roughly where things are. Faces come from
OpenCV's bundled frontal-face Haar cascade, one classifier per thread since a
CascadeClassifier must not be shared. Saliency follows libvips'
`interesting=attention`: each pixel scores for edges, for colour that differs
from the picture's dominant colour, and for skin tone; only what rises above
the picture's own typical level counts (a beige wall is not skin everywhere);
the score is smoothed, mildly favours the centre, and the blob around its
peak is the region. Both are pure functions of a numpy array.
"""

import threading

import cv2
import numpy as np

# Frontal faces: the alt2 cascade, since the default one returns a second,
# faceless box on the astronaut sample at low thresholds. minNeighbors=4 with
# 8% scale steps finds the face on every test composite where it spans at
# least the cascade's 20 px window, and nothing on the plain sample photos;
# 10% steps miss faces near that floor, and 3 neighbours at 10% steps return
# duplicate boxes for one face.
CASCADE = "haarcascade_frontalface_alt2.xml"
SCALE_FACTOR = 1.08
MIN_NEIGHBORS = 4
MIN_FACE = 20

# Saliency. Each feature is measured above its median over the picture and
# divided by its scale, so that a feature at its scale scores 1 (capped there).
EDGE_SCALE = 150.0  # Sobel magnitude of Lab lightness (0-100): a clear edge
COLOUR_SCALE = 30.0  # Lab distance from the dominant colour: plainly another colour
SKIN_WEIGHT = 1.0
# Skin tone as rgb chromaticity (r, g, b) / (r + g + b); the score falls to 0 at SKIN_RADIUS.
SKIN_CHROMA = np.array([0.41, 0.32, 0.27], dtype=np.float32)
SKIN_RADIUS = 0.08
SMOOTH_DIVISOR = 40.0  # smoothing sigma = long side / this
CENTRE_BIAS = 0.25  # score lost at the corners, relative to the centre

_local = threading.local()


def _classifier():
    """This thread's frontal-face classifier, loaded on first use."""
    classifier = getattr(_local, "frontal", None)
    if classifier is None:
        classifier = cv2.CascadeClassifier(cv2.data.haarcascades + CASCADE)
        if classifier.empty():
            raise RuntimeError(f"OpenCV could not load {CASCADE} from {cv2.data.haarcascades}")
        _local.frontal = classifier
    return classifier


def _as_rgb(rgb):
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB array, got {arr.dtype} {arr.shape}")
    return np.ascontiguousarray(arr)


def faces(rgb):
    """Face boxes (x, y, w, h) in `rgb`'s pixels, largest first; [] when there are none.

    Faces smaller than about 20 px in `rgb` are not found.
    """
    arr = _as_rgb(rgb)
    if min(arr.shape[:2]) < MIN_FACE:
        return []
    gray = cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY)
    found = _classifier().detectMultiScale(
        gray, scaleFactor=SCALE_FACTOR, minNeighbors=MIN_NEIGHBORS, minSize=(MIN_FACE, MIN_FACE)
    )
    boxes = [(int(x), int(y), int(w), int(h)) for x, y, w, h in found]
    boxes.sort(key=lambda b: (-b[2] * b[3], b[1], b[0]))
    return boxes


def _union(a, b):
    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
    return (x0, y0, x1 - x0, y1 - y0)


def focus_for_faces(boxes, window_w, window_h):
    """The region a window_w x window_h crop should keep in view, or None without faces.

    The union of the faces that fit in the window together, taken greedily in
    the order given (most prominent first); a first face larger than the
    window is returned alone, so the crop centres on it.
    """
    boxes = [tuple(b) for b in boxes]
    if not boxes:
        return None
    focus = boxes[0]
    for box in boxes[1:]:
        grown = _union(focus, box)
        if grown[2] <= window_w and grown[3] <= window_h:
            focus = grown
    return focus


def _distance(pixels, ref):
    """Euclidean distance of each pixel (HxWx3) from `ref`."""
    d = pixels - np.asarray(ref, dtype=np.float32)
    return np.sqrt(np.einsum("ijk,ijk->ij", d, d))


def _typical(feature):
    """The median of a feature, from every other pixel in each direction (as good, 4x cheaper)."""
    return np.median(feature[::2, ::2].reshape(-1, *feature.shape[2:]), axis=0)


def _saliency(arr):
    """Per-pixel interest score: edges, distinct colour and skin, above the picture's typical level."""
    img = arr.astype(np.float32) / 255.0
    lab = cv2.cvtColor(img, cv2.COLOR_RGB2Lab)
    lightness = np.ascontiguousarray(lab[..., 0])
    edges = cv2.magnitude(
        cv2.Sobel(lightness, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(lightness, cv2.CV_32F, 0, 1, ksize=3)
    )
    colour = _distance(lab, _typical(lab))
    chroma = img / np.maximum(img.sum(axis=2, keepdims=True), 1e-6)
    skin = np.clip(1.0 - _distance(chroma, SKIN_CHROMA) / SKIN_RADIUS, 0.0, 1.0)
    skin[(lightness < 20) | (lightness > 95)] = 0.0

    score = np.zeros(lightness.shape, dtype=np.float32)
    for feature, scale, weight in (
        (edges, EDGE_SCALE, 1.0),
        (colour, COLOUR_SCALE, 1.0),
        (skin, 1.0, SKIN_WEIGHT),
    ):
        score += weight * np.clip((feature - _typical(feature)) / scale, 0.0, 1.0)
    return score


def salient_region(rgb):
    """The most interesting region (x, y, w, h) of `rgb`, in its pixels.

    The blob of smoothed interest around the strongest point, cut at half way
    between the picture's mean interest and that peak; the whole picture when
    nothing stands out (a flat image).
    """
    arr = _as_rgb(rgb)
    h, w = arr.shape[:2]
    if min(h, w) < 3:
        return (0, 0, w, h)
    score = _saliency(arr)
    sigma = max(1.0, max(h, w) / SMOOTH_DIVISOR)
    smooth = cv2.GaussianBlur(score, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    yy, xx = np.ogrid[:h, :w]
    off_centre = ((xx - (w - 1) / 2) / (w / 2)) ** 2 + ((yy - (h - 1) / 2) / (h / 2)) ** 2
    smooth *= (1.0 - CENTRE_BIAS * np.minimum(off_centre, 2.0) / 2.0).astype(np.float32)
    peak = float(smooth.max())
    mean = float(smooth.mean())
    if peak <= 1e-3 or peak - mean <= 1e-3:
        return (0, 0, w, h)
    py, px = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
    mask = (smooth >= mean + 0.5 * (peak - mean)).astype(np.uint8)
    _, labels = cv2.connectedComponents(mask, connectivity=8)
    ys, xs = np.nonzero(labels == labels[py, px])
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    return (x0, y0, x1 - x0, y1 - y0)
