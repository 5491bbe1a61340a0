"""One `q`, one quality: shield's WebP and AVIF settings that look like a JPEG at q, measured.

Each encoder has its own quality scale, so the same number means a different picture
in each. This measures them on real photos with SSIMULACRA2 (a perceptual metric: ~90
is visually lossless, ~70 a good JPEG) and writes shield/image/quality_table.json: for
each JPEG q, the WebP and AVIF settings whose median score matches that JPEG's, and
which libavif speed gives the best bytes for the time.

Every reference is made the careful way, whatever the engine does: decoded, converted to
sRGB, resized with a full Lanczos to 400, 800 and 1600 px wide (never enlarged). Each
encoder is handed the same reference, so only the encoders differ. Encodes are timed one
at a time (nothing else of this script runs meanwhile); scoring, the slow part, then runs
in parallel.

The second part compares bytes at equal quality, the JPEG q80 score of each photo and
width: AVIF and WebP against JPEG, and each of shield's encoders against libvips with
imgproxy's defaults (through pyvips), with the goals the product must reach.

    .venv/bin/python -m bench.quality [PHOTO_DIR ...] [--table-only] [--jobs N]

About 22 minutes on 2 cores for the six photos of ../shared/images; every measured point
goes to bench/results/quality.json.
"""

import argparse
import io
import itertools
import json
import math
import multiprocessing
import os
import statistics
import sys
import time

import ssimulacra2
from PIL import Image, ImageCms, ImageOps, features
from tqdm import tqdm

from bench.avif_speed import AVIF_GOAL, DEFAULT_Q, choose_speed, speed_reason
from shield.image import pillow_codecs
from shield.image.engine import LARGE_AVIF_PIXELS, LARGE_AVIF_SPEED

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLE_PATH = os.path.join(ROOT, "shield", "image", "quality_table.json")
RESULTS_DIR = os.path.join(ROOT, "bench", "results")
DEFAULT_PHOTOS = os.path.join(os.path.dirname(ROOT), "shared", "images")
PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png")
MIN_PIXELS = 200_000  # below this a file is an icon or a thumbnail, not a photo
WIDTHS = (400, 800, 1600)
# The table's keys: every 5 from 30 to 100 (75, 80 and 85 among them). JPEG is measured at
# each, exactly: its 4:2:0 -> 4:4:4 switch at 90 is a step no interpolation would see.
JPEG_QS = tuple(range(30, 101, 5))
# Where the curves bend (WebP below 50, AVIF between 40 and 80) the points are closer.
WEBP_SETTINGS = (10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 95, 100)
AVIF_SETTINGS = (30, 40, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95, 100)
AVIF_SPEEDS = (6, 7, 8)
# Large outputs (engine.LARGE_AVIF_PIXELS) have an encoder of their own (speed 8, 4:2:0),
# measured as one more "speed" of the AVIF jobs.
LARGE = "large"
# Speeds are compared over the qualities URLs use, not at the lossless end.
SPEED_QS = (50, 60, 70, 80, 90)
# imgproxy's defaults (processing/config.go, vips/config.go, vips/vips.c): quality 80, with
# format_quality webp=79, avif=63; JPEG with optimize_coding, not interlaced; WebP effort 4,
# preset default; AVIF through libheif's AV1 encoder at speed 8 (effort 9 - 8).
IMGPROXY_QUALITY = {"jpeg": 80, "webp": 79, "avif": 63}
IMGPROXY_AVIF_SPEED = 8
# libvips' curves only need to bracket the q80 scores (4:2:0 throughout, as at q80).
VIPS_SETTINGS = {
    "jpeg": (60, 70, 75, 80, 85, 89),
    "webp": (60, 70, 75, 79, 85, 90),
    "avif": (45, 55, 63, 70, 75, 80, 85),
}
NAMES = {"jpeg": "JPEG", "webp": "WebP", "avif": "AVIF"}
GOALS = {"avif/jpeg": AVIF_GOAL, "webp/jpeg": 0.82, "shield/libvips": 1.0}
MIN_TIMED_SECONDS = 0.2  # fast encodes are repeated up to this long, and the fastest run kept
MAX_TIMED_RUNS = 5
AVIF_TIMED_RUNS = 2

# The references, by (photo, width): set before the scoring pool forks, which inherits them.
REFERENCES = {}


# -- photos and references


def pick_photos(folders):
    """JPEG and PNG photos: no logos, no transparency, nothing smaller than MIN_PIXELS."""
    photos = []
    for folder in folders:
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if not name.lower().endswith(PHOTO_EXTENSIONS) or "logo" in name.lower():
                continue
            with Image.open(path) as im:
                if im.width * im.height >= MIN_PIXELS and not _has_alpha(im):
                    photos.append(path)
    return photos


def _has_alpha(im):
    return im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info


def srgb_upright(path):
    """The photo as 8-bit sRGB RGB, upright: what every encoder is handed."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        icc = im.info.get("icc_profile")
        im = im.convert("RGB")
        if icc:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            im = ImageCms.profileToProfile(im, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
        return im


def references(photos):
    """{(photo name, width): reference}: each photo at each width it can give without enlarging."""
    refs = {}
    for path in photos:
        im = srgb_upright(path)
        for width in WIDTHS:
            if width <= im.width:
                height = round(im.height * width / im.width)
                # reducing_gap=None: a full Lanczos, not a box shrink first, however large the step.
                refs[os.path.basename(path), width] = im.resize(
                    (width, height), Image.Resampling.LANCZOS, reducing_gap=None
                )
    return refs


# -- encoding, timed


def timed(encode, min_runs=1):
    """(bytes, wall seconds, CPU seconds), each the least of a few runs (fast encodes get more).

    CPU time counts every thread of the encoder (libavif runs two here): it is what a miss
    costs a busy server, and a neighbour's load changes it less than the wall clock.
    """
    wall, cpu, spent, runs = math.inf, math.inf, 0.0, 0
    while runs < min_runs or (spent < MIN_TIMED_SECONDS and runs < MAX_TIMED_RUNS):
        started, started_cpu = time.perf_counter(), time.process_time()
        data = encode()
        took = time.perf_counter() - started
        wall, cpu = min(wall, took), min(cpu, time.process_time() - started_cpu)
        spent, runs = spent + took, runs + 1
    return data, wall, cpu


def shield_jobs():
    """Every (encoder, format, speed, setting) of shield's curves."""
    jobs = [("shield", "jpeg", None, q) for q in JPEG_QS]
    jobs += [("shield", "webp", None, s) for s in WEBP_SETTINGS]
    # The speeds of one setting back to back, so that a burst of outside load meets them alike.
    jobs += [("shield", "avif", speed, s) for s in AVIF_SETTINGS for speed in (*AVIF_SPEEDS, LARGE)]
    return jobs


def vips_jobs():
    """libvips' curves, and its points at imgproxy's defaults."""
    return [
        ("libvips", fmt, IMGPROXY_AVIF_SPEED if fmt == "avif" else None, s)
        for fmt, settings in VIPS_SETTINGS.items()
        for s in sorted({*settings, IMGPROXY_QUALITY[fmt]})
    ]


def encoder(job, ref):
    """A function encoding `ref` as `job` says."""
    who, fmt, speed, setting = job
    if who == "shield" and speed == LARGE:
        return lambda: pillow_codecs.encode(
            ref,
            fmt,
            setting,
            avif_speed=LARGE_AVIF_SPEED,
            avif_subsampling=pillow_codecs.LARGE_AVIF_SUBSAMPLING,
        )
    if who == "shield":
        return lambda: pillow_codecs.encode(ref, fmt, setting, avif_speed=speed or pillow_codecs.AVIF_SPEED)
    return vips_encoder(ref, fmt, setting)


def vips_encoder(ref, fmt, setting):
    """libvips' saver as imgproxy calls it (vips/vips.c), with its defaults."""
    import pyvips  # noqa: PLC0415 - only the comparison needs libvips

    im = pyvips.Image.new_from_memory(ref.tobytes(), ref.width, ref.height, 3, "uchar")
    im = im.copy(interpretation="srgb")
    if fmt == "jpeg":
        return lambda: im.jpegsave_buffer(Q=setting, optimize_coding=True, interlace=False, strip=True)
    if fmt == "webp":
        return lambda: im.webpsave_buffer(Q=setting, effort=4, preset="default", strip=True)
    return lambda: im.heifsave_buffer(
        Q=setting, compression="av1", effort=9 - IMGPROXY_AVIF_SPEED, strip=True
    )


def encode_all(refs, jobs):
    """[(sample, job, bytes, wall, cpu)], one encode at a time so that no timing shares the CPU."""
    encoded = []
    with tqdm(total=len(refs) * len(jobs), desc="encode", unit="img", file=sys.stderr) as bar:
        for sample, ref in refs.items():
            for job in jobs:
                # AVIF's times decide the speed: never a single run.
                data, wall, cpu = timed(
                    encoder(job, ref), min_runs=AVIF_TIMED_RUNS if job[1] == "avif" else 1
                )
                encoded.append((sample, job, data, wall, cpu))
                bar.update()
    return encoded


# -- scoring, in parallel


def score(task):
    """SSIMULACRA2 of one encoded image against its reference (in a worker process)."""
    sample, data = task
    with Image.open(io.BytesIO(data)) as im:
        decoded = im.convert("RGB")
    return ssimulacra2.compute_ssimulacra2(_ppm(REFERENCES[sample]), _ppm(decoded))


def _ppm(im):
    """The package reads files: an uncompressed in-memory one costs next to nothing."""
    out = io.BytesIO()
    im.save(out, "PPM")
    out.seek(0)
    return out


def measure(refs, jobs, processes):
    """[{sample, job, bytes, wall, cpu, score}] for every reference and job."""
    encoded = encode_all(refs, jobs)
    REFERENCES.update(refs)
    # The large references first, so that no worker is left with one at the end.
    order = sorted(range(len(encoded)), key=lambda i: -encoded[i][0][1])
    tasks = [(encoded[i][0], encoded[i][2]) for i in order]
    scores = [None] * len(encoded)
    # fork: the workers inherit REFERENCES instead of each receiving megabytes of pixels.
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        results = pool.imap(score, tasks)
        for i in tqdm(order, desc="score", unit="img", file=sys.stderr):
            scores[i] = next(results)
    return [
        {"sample": sample, "job": job, "bytes": len(data), "wall": wall, "cpu": cpu, "score": s}
        for (sample, job, data, wall, cpu), s in zip(encoded, scores, strict=True)
    ]


# -- curves


def at(curve, x):
    """y where the piecewise-linear `curve` [(x, y), ...] (x rising) passes x; None outside it."""
    for (x0, y0), (x1, y1) in itertools.pairwise(curve):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return None


def rising(points):
    """(setting, score) points by setting, each score raised to the best one before it.

    A higher setting may score a hair lower (the metric's noise); the curve is read as
    score -> setting, which needs scores that never fall.
    """
    curve, best = [], -math.inf
    for setting, s in sorted(points):
        best = max(best, s)
        curve.append((setting, best))
    return curve


def points(rows, who, fmt, speed=None, sample=None):
    """{setting: row} of one encoder, format and speed, for one sample or all of them."""
    found = {}
    for row in rows:
        if row["job"][:3] == (who, fmt, speed) and (sample is None or row["sample"] == sample):
            found.setdefault(row["job"][3], []).append(row)
    return found


def median_curve(rows, who, fmt, speed=None):
    """[(setting, median score over samples)], rising."""
    found = points(rows, who, fmt, speed)
    return rising((setting, statistics.median(r["score"] for r in rs)) for setting, rs in found.items())


def setting_for(curve, target):
    """The setting (0-100) at which a rising (setting, score) curve reaches `target`, and whether it does."""
    by_score = [(s, setting) for setting, s in curve]
    setting = at(by_score, target)
    if setting is None:
        # Above the curve's best: the highest setting, clamped; below its start: the lowest.
        setting = curve[-1][0] if target > curve[-1][1] else curve[0][0]
        return min(100, max(0, round(setting))), target <= curve[-1][1]
    return min(100, max(0, round(setting))), True


def bytes_at(rows, who, fmt, speed, sample, target):
    """One sample's bytes at SSIMULACRA2 `target`, interpolated in log bytes; None off its curve."""
    found = points(rows, who, fmt, speed, sample)
    by_setting = sorted((setting, rs[0]) for setting, rs in found.items())
    curve, best = [], -math.inf
    for _, row in by_setting:
        if row["score"] > best:  # the first setting to reach each score is the one to pay for
            best = row["score"]
            curve.append((best, math.log(row["bytes"])))
    log_bytes = at(curve, target)
    return None if log_bytes is None else math.exp(log_bytes)


def row_of(rows, who, fmt, speed, setting, sample):
    return points(rows, who, fmt, speed, sample)[setting][0]


def median_or_none(values):
    """(median, geometric mean, count) of the values measured; Nones where none was."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None, 0
    return statistics.median(values), statistics.geometric_mean(values), len(values)


# -- the table


def jpeg_scores(rows):
    """{q: median JPEG score over samples}."""
    return dict(median_curve(rows, "shield", "jpeg"))


def table_for(rows, fmt, speed=None):
    """{jpeg q: (setting, reached)}: the setting whose median score matches the JPEG's at q."""
    curve = median_curve(rows, "shield", fmt, speed)
    return {q: setting_for(curve, target) for q, target in jpeg_scores(rows).items()}


def speed_figures(rows, samples, speed):
    """Median bytes (at equal score), CPU and wall time of one AVIF speed, relative to speed 8."""
    bytes_ratios, cpu_ratios, wall_ratios = [], [], []
    for sample in samples:
        for q in SPEED_QS:
            target = row_of(rows, "shield", "jpeg", None, q, sample)["score"]
            mine = bytes_at(rows, "shield", "avif", speed, sample, target)
            fast = bytes_at(rows, "shield", "avif", 8, sample, target)
            if mine and fast:
                bytes_ratios.append(mine / fast)
        for setting in AVIF_SETTINGS:
            if SPEED_QS[0] <= setting <= SPEED_QS[-1]:
                mine = row_of(rows, "shield", "avif", speed, setting, sample)
                fast = row_of(rows, "shield", "avif", 8, setting, sample)
                cpu_ratios.append(mine["cpu"] / fast["cpu"])
                wall_ratios.append(mine["wall"] / fast["wall"])
    return {
        "bytes_vs_8": round(statistics.median(bytes_ratios), 3),
        "cpu_vs_8": round(statistics.median(cpu_ratios), 2),
        "wall_vs_8": round(statistics.median(wall_ratios), 2),
        "bytes_vs_jpeg_q80": round(avif_vs_jpeg(rows, samples, speed), 3),
    }


def ratios_to_jpeg(rows, samples, who, fmt, speed):
    """Each sample's bytes / JPEG bytes at its JPEG score for the default q (None off its curve)."""
    ratios = []
    for sample in samples:
        jpeg = row_of(rows, "shield", "jpeg", None, DEFAULT_Q, sample)
        found = bytes_at(rows, who, fmt, speed, sample, jpeg["score"])
        ratios.append(found and found / jpeg["bytes"])
    return ratios


def avif_vs_jpeg(rows, samples, speed):
    """Median AVIF bytes / JPEG bytes at each sample's JPEG score for the default q."""
    return statistics.median(r for r in ratios_to_jpeg(rows, samples, "shield", "avif", speed) if r)


def build_table(rows, photos, refs):
    samples = sorted(refs)
    speeds = {s: speed_figures(rows, samples, s) for s in AVIF_SPEEDS}
    chosen = choose_speed(speeds)
    tables = {"webp": table_for(rows, "webp")}
    tables.update({("avif", s): table_for(rows, "avif", s) for s in (*AVIF_SPEEDS, LARGE)})
    return {
        "source": "bench/quality.py",
        "metric": f"SSIMULACRA2 (ssimulacra2 {ssimulacra2.__version__}), median over photos x widths",
        "encoders": encoder_versions(),
        "photos": [os.path.basename(p) for p in photos],
        "widths": sorted({w for _, w in samples}),
        "jpeg_scores": {str(q): round(s, 1) for q, s in jpeg_scores(rows).items()},
        "avif_speed": chosen,
        "avif_speed_reason": speed_reason(speeds, chosen),
        "table": {
            "webp": {str(q): s for q, (s, _) in tables["webp"].items()},
            "avif": {str(q): s for q, (s, _) in tables["avif", chosen].items()},
        },
        # JPEG qs whose score the encoder's best setting never reaches.
        "above_ceiling": {
            "webp": [q for q, (_, ok) in tables["webp"].items() if not ok],
            "avif": [q for q, (_, ok) in tables["avif", chosen].items() if not ok],
        },
        "avif_speeds": {
            str(s): {**speeds[s], "avif": {str(q): v for q, (v, _) in tables["avif", s].items()}}
            for s in AVIF_SPEEDS
        },
        "avif_large": {
            "pixels": LARGE_AVIF_PIXELS,
            "speed": LARGE_AVIF_SPEED,
            "subsampling": pillow_codecs.LARGE_AVIF_SUBSAMPLING,
            "bytes_vs_jpeg_q80": round(avif_vs_jpeg(rows, samples, LARGE), 3),
            "avif": {str(q): v for q, (v, _) in tables["avif", LARGE].items()},
        },
    }


def encoder_versions():
    """The table holds for these builds: another libavif or libaom moves its AVIF column."""
    from PIL import _avif  # noqa: PLC0415 - the only place that names libavif's AV1 codecs

    aom = [c.split(":")[-1] for c in _avif.codec_versions().split(", ") if c.startswith("aom")]
    return {
        "jpeg": f"libjpeg-turbo {features.version('libjpeg_turbo')}",
        "webp": f"libwebp {features.version('webp')}",
        "avif": f"libavif {features.version('avif')}" + (f" with libaom {aom[0]}" if aom else ""),
        "pillow": Image.__version__,
    }


def readable_json(table):
    """One key a line at the top, each inner object on one line: a table a reader can scan."""
    lines = [f"  {json.dumps(k)}: {_inner_json(v)}" for k, v in table.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _inner_json(value):
    if isinstance(value, dict) and any(isinstance(v, dict) for v in value.values()):
        inner = [f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in value.items()]
        return "{\n" + ",\n".join(inner) + "\n  }"
    return json.dumps(value)


# -- bytes at equal quality


def table_jobs(table):
    """WebP and AVIF at the table's settings for the default q."""
    q = str(DEFAULT_Q)
    return [
        ("shield", "webp", None, table["table"]["webp"][q]),
        ("shield", "avif", table["avif_speed"], table["table"]["avif"][q]),
    ]


def compare(rows, table, refs):
    """Per-sample ratios at each sample's JPEG q80 score, and the points at the default settings."""
    speed = table["avif_speed"]
    q = str(DEFAULT_Q)
    settings = {"webp": table["table"]["webp"][q], "avif": table["table"]["avif"][q]}
    ratios = {k: [] for k in ("avif/jpeg", "webp/jpeg", "jpeg", "webp", "avif")}
    at_table = {fmt: {"score": [], "ratio": []} for fmt in settings}
    imgproxy = {fmt: {"score": [], "ratio": []} for fmt in IMGPROXY_QUALITY}
    for sample in sorted(refs):
        jpeg = row_of(rows, "shield", "jpeg", None, DEFAULT_Q, sample)
        target = jpeg["score"]
        shield = {
            "jpeg": jpeg["bytes"],
            "webp": bytes_at(rows, "shield", "webp", None, sample, target),
            "avif": bytes_at(rows, "shield", "avif", speed, sample, target),
        }
        for fmt in ("avif", "webp"):
            ratios[f"{fmt}/jpeg"].append(shield[fmt] and shield[fmt] / jpeg["bytes"])
            point = row_of(rows, "shield", fmt, speed if fmt == "avif" else None, settings[fmt], sample)
            at_table[fmt]["score"].append(point["score"])
            at_table[fmt]["ratio"].append(point["bytes"] / jpeg["bytes"])
        for fmt in IMGPROXY_QUALITY:
            vspeed = IMGPROXY_AVIF_SPEED if fmt == "avif" else None
            theirs = bytes_at(rows, "libvips", fmt, vspeed, sample, target)
            ratios[fmt].append(shield[fmt] and theirs and shield[fmt] / theirs)
            point = row_of(rows, "libvips", fmt, vspeed, IMGPROXY_QUALITY[fmt], sample)
            imgproxy[fmt]["score"].append(point["score"])
            imgproxy[fmt]["ratio"].append(point["bytes"] / jpeg["bytes"])
    return {
        "ratios": {k: median_or_none(v) for k, v in ratios.items()},
        "at_table": {f: {k: statistics.median(v) for k, v in d.items()} for f, d in at_table.items()},
        "imgproxy": {f: {k: statistics.median(v) for k, v in d.items()} for f, d in imgproxy.items()},
        "settings": settings,
        "jpeg_score": statistics.median(
            row_of(rows, "shield", "jpeg", None, DEFAULT_Q, s)["score"] for s in refs
        ),
        "samples": len(refs),
    }


# -- the report


def print_table(table):
    webp, avif = table["table"]["webp"], table["table"]["avif"]
    print(f"## Quality table: one q, one SSIMULACRA2 ({len(table['photos'])} photos x {table['widths']} px)")
    print()
    encoders = ", ".join(v for k, v in table["encoders"].items() if k != "pillow")
    print(f"AVIF at speed {table['avif_speed']}. Pillow {table['encoders']['pillow']}: {encoders}.")
    print()
    print("| JPEG q | median SSIMULACRA2 | WebP setting | AVIF setting |")
    print("|---:|---:|---:|---:|")
    for q, s in table["jpeg_scores"].items():
        mark = {fmt: "+" if int(q) in table["above_ceiling"][fmt] else "" for fmt in ("webp", "avif")}
        print(f"| {q} | {s:.1f} | {webp[q]}{mark['webp']} | {avif[q]}{mark['avif']} |")
    print()
    print("+: the format's best setting stays below that JPEG's score; the setting is clamped.")
    print()


def print_speeds(table, rows, refs):
    """The AVIF speeds against speed 8, over all samples and width by width."""
    print("## AVIF speeds (relative to speed 8, the same photos and widths)")
    print()
    print(
        "| speed | widths | bytes at equal SSIMULACRA2 | encode CPU time | wall time "
        "| AVIF / JPEG at q80's score | setting for q80 |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|")
    for s in AVIF_SPEEDS:
        fig = table["avif_speeds"][str(s)]
        print(
            f"| {s} | all | {fig['bytes_vs_8']:.3f}x | {fig['cpu_vs_8']:.2f}x | {fig['wall_vs_8']:.2f}x "
            f"| {fig['bytes_vs_jpeg_q80']:.3f}x | {fig['avif'][str(DEFAULT_Q)]} |"
        )
        for width in table["widths"] if s != 8 else ():
            fig = speed_figures(rows, [k for k in sorted(refs) if k[1] == width], s)
            print(
                f"| {s} | {width} | {fig['bytes_vs_8']:.3f}x | {fig['cpu_vs_8']:.2f}x | {fig['wall_vs_8']:.2f}x "
                f"| {fig['bytes_vs_jpeg_q80']:.3f}x | |"
            )
    print()
    qs = ", ".join(map(str, SPEED_QS))
    print(f"Bytes: median over photos x widths x the JPEG scores of q {qs}. Time: median over")
    print(f"settings {SPEED_QS[0]}-{SPEED_QS[-1]}, the same photos and widths. {table['avif_speed_reason']}")
    print()
    large = table["avif_large"]
    print(
        f"Large outputs ({large['pixels']:,} pixels and more): speed {large['speed']}, "
        f"{large['subsampling']} chroma, setting {large['avif'][str(DEFAULT_Q)]} for q80, "
        f"{large['bytes_vs_jpeg_q80']:.3f}x JPEG's bytes at q80's score (measured on the same photos)."
    )
    print()


def print_compare(result):
    r = result["ratios"]

    def line(label, key, goal):
        value, geomean, n = r[key]
        if value is None:
            print(f"| {label} | n/a | n/a | <= {goal:.2f}x | not measured | 0 |")
            return
        met = "met" if value <= goal else "NOT met"
        print(
            f"| {label} | {value:.3f}x | {geomean:.3f}x | <= {goal:.2f}x | {met} | {n}/{result['samples']} |"
        )

    print(
        f"## Bytes at equal quality (each photo's JPEG q{DEFAULT_Q} SSIMULACRA2, median {result['jpeg_score']:.1f})"
    )
    print()
    print("| bytes | median ratio | geometric mean | goal (on the median) | | samples |")
    print("|---|---:|---:|---:|---|---:|")
    line("AVIF / JPEG", "avif/jpeg", GOALS["avif/jpeg"])
    line("WebP / JPEG", "webp/jpeg", GOALS["webp/jpeg"])
    for fmt in ("jpeg", "webp", "avif"):
        line(f"shield / libvips, {NAMES[fmt]}", fmt, GOALS["shield/libvips"])
    print()
    print(f"At the table's settings for q{DEFAULT_Q} (measured, not interpolated):")
    print()
    print("| format | setting | median SSIMULACRA2 | median bytes / JPEG q80 |")
    print("|---|---:|---:|---:|")
    print(f"| JPEG | {DEFAULT_Q} | {result['jpeg_score']:.1f} | 1.000x |")
    for fmt, fig in result["at_table"].items():
        print(f"| {NAMES[fmt]} | {result['settings'][fmt]} | {fig['score']:.1f} | {fig['ratio']:.3f}x |")
    print()
    print("libvips at imgproxy's defaults (for reference; its scores differ from shield's):")
    print()
    print("| format | Q | median SSIMULACRA2 | median bytes / shield's JPEG q80 |")
    print("|---|---:|---:|---:|")
    for fmt, fig in result["imgproxy"].items():
        print(f"| {NAMES[fmt]} | {IMGPROXY_QUALITY[fmt]} | {fig['score']:.1f} | {fig['ratio']:.3f}x |")
    print()


def save_measurements(rows):
    """Every measured point, for a closer look (bench/results/ is not tracked)."""
    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = os.path.join(RESULTS_DIR, "quality.json")
    with open(path, "w") as fh:
        json.dump(rows, fh)
    print(f"wrote {os.path.relpath(path)}", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", default=[DEFAULT_PHOTOS], metavar="PHOTO_DIR")
    parser.add_argument("--table-only", action="store_true", help="skip the comparison (no libvips needed)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count(), help="scoring processes")
    parser.add_argument("--output", default=TABLE_PATH, help="where to write the table")
    args = parser.parse_args()
    photos = pick_photos(args.folders)
    if not photos:
        sys.exit(f"no photos (JPEG or PNG, {MIN_PIXELS} pixels or more, opaque) in {args.folders}")
    print(f"photos: {', '.join(os.path.basename(p) for p in photos)}", file=sys.stderr)
    refs = references(photos)
    started = time.time()
    jobs = shield_jobs() + ([] if args.table_only else vips_jobs())
    rows = measure(refs, jobs, args.jobs)
    table = build_table(rows, photos, refs)
    with open(args.output, "w") as fh:
        fh.write(readable_json(table))
    print(f"wrote {os.path.relpath(args.output)}", file=sys.stderr)
    print_table(table)
    print_speeds(table, rows, refs)
    if not args.table_only:
        rows += measure(refs, table_jobs(table), args.jobs)
        print_compare(compare(rows, table, refs))
    save_measurements(rows)
    print(f"({time.time() - started:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
