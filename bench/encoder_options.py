"""Encoder options against shield's: bytes at equal SSIMULACRA2, on the quality table's samples.

Each variant encodes the same references as bench/quality.py at a few settings; its bytes
at each sample's JPEG q80 score are read off its curve and divided by that JPEG's bytes,
the same figure as the quality table's "AVIF / JPEG" and "WebP / JPEG" rows. The JPEG
points come from the last `bench.quality` run (bench/results/quality.json), so run that
first. WebP variants with libwebp's options Pillow does not expose use the `webp` package
(bench/requirements.txt), which wraps the same libwebp: its default output is Pillow's to
the byte.

    .venv/bin/python -m bench.encoder_options avif
    .venv/bin/python -m bench.encoder_options webp

Each variant takes 1-3 minutes on 2 cores.
"""

import argparse
import io
import json
import multiprocessing
import os
import statistics
import sys
import time

from bench import quality

# name: Pillow save options (AVIF), or libwebp's WebPConfig fields through `webp` (WebP).
AVIF_VARIANTS = {
    "4:2:0": {"speed": 6, "subsampling": "4:2:0"},
    "4:4:4": {"speed": 6, "subsampling": "4:4:4"},
    "tune=ssim": {"speed": 6, "advanced": {"tune": "ssim"}},
    "tune=iq": {"speed": 6, "advanced": {"tune": "iq"}},
    "sharpness=2": {"speed": 6, "advanced": {"sharpness": "2"}},
    "deltaq-mode=0": {"speed": 6, "advanced": {"deltaq-mode": "0"}},
}
WEBP_VARIANTS = {
    "method 4": {"method": 4},
    "method 6": {"method": 6},
    "preset photo": {"libwebp": {"preset": "PHOTO"}},
    "sns_strength 80": {"libwebp": {"sns_strength": 80}},
    "sns_strength 20": {"libwebp": {"sns_strength": 20}},
    "autofilter": {"libwebp": {"autofilter": 1}},
    "2 segments": {"libwebp": {"segments": 2}},
}
SETTINGS = {"avif": (45, 50, 55, 60, 65, 70, 75, 80), "webp": (70, 75, 80, 85, 90, 95)}


def encode(fmt, ref, setting, options):
    if fmt == "webp" and "libwebp" in options:
        import webp  # noqa: PLC0415 - only these variants need the binding

        fields = dict(options["libwebp"])
        config = webp.WebPConfig.new(
            preset=getattr(webp.WebPPreset, fields.pop("preset", "DEFAULT")), quality=setting
        )
        config.method = 4
        for name, value in fields.items():
            setattr(config.ptr, name, value)
        if not config.validate():
            sys.exit(f"libwebp refuses {options}")
        return bytes(webp.WebPPicture.from_pil(ref).encode(config).buffer())
    out = io.BytesIO()
    ref.save(out, "AVIF" if fmt == "avif" else "WEBP", quality=setting, **options)
    return out.getvalue()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("format", choices=("avif", "webp"))
    parser.add_argument("--only", nargs="*", help="variant names (default: all)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count(), help="scoring processes")
    args = parser.parse_args()
    path = os.path.join(quality.RESULTS_DIR, "quality.json")
    if not os.path.exists(path):
        sys.exit(f"{path} is missing: run `python -m bench.quality` first")
    with open(path) as fh:
        rows = json.load(fh)
    for row in rows:
        row["job"], row["sample"] = tuple(row["job"]), tuple(row["sample"])
    variants = AVIF_VARIANTS if args.format == "avif" else WEBP_VARIANTS
    variants = {k: v for k, v in variants.items() if not args.only or k in args.only}
    refs = quality.references(quality.pick_photos([quality.DEFAULT_PHOTOS]))
    quality.REFERENCES.update(refs)

    tasks, points, cpu = [], [], {}
    for name, options in variants.items():
        started = time.process_time()
        for sample, ref in refs.items():
            for setting in SETTINGS[args.format]:
                data = encode(args.format, ref, setting, options)
                tasks.append((sample, data))
                points.append((name, sample, setting, len(data)))
        cpu[name] = time.process_time() - started
        print(f"{name}: encoded in {cpu[name]:.1f} s of CPU", file=sys.stderr)
    with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
        scores = pool.map(quality.score, tasks, chunksize=1)
    measured = rows + [
        {"sample": sample, "job": ("option", args.format, name, setting), "bytes": size, "score": score}
        for (name, sample, setting, size), score in zip(points, scores, strict=True)
    ]

    print(f"| {args.format} variant | bytes / JPEG at q80's score (median) | encode CPU s | per sample |")
    print("|---|---:|---:|---|")
    for name in variants:
        ratios = quality.ratios_to_jpeg(measured, sorted(refs), "option", args.format, name)
        reached = [r for r in ratios if r]
        each = " ".join(f"{r:.3f}" if r else "-" for r in ratios)
        print(f"| {name} | {statistics.median(reached):.4f}x | {cpu[name]:.1f} | {each} |")


if __name__ == "__main__":
    main()
