"""POST /v1/optimize of 2560x1600 JPEGs: latency per output format and bytes saved.

Each call goes through the whole API in-process (auth, source, original cache, transform,
asset store). The baseline, run in the same script on the same photos, is Pillow decoding
the JPEG and encoding the same format at the same quality, nothing else.

    .venv/bin/python -m bench.optimize [--photos DIR] [--rounds N]
"""

import argparse
import glob
import io
import os
import statistics
import tempfile
import time

from PIL import Image

from shield.api.web import create_app

TOKEN = "bench-admin-token-0123456789"
ACCEPT = {"avif": "image/avif,image/webp,*/*", "webp": "image/webp,*/*", "jpeg": "image/jpeg"}
QUALITY = 80


def pillow_encode(body, fmt, quality):
    with Image.open(io.BytesIO(body)) as im:
        im = im.convert("RGB")
        out = io.BytesIO()
        im.save(out, {"jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF"}[fmt], quality=quality)
        return out.getvalue()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default="../shared/images")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    photos = []
    for path in sorted(glob.glob(os.path.join(args.photos, "*.jpg"))):
        with Image.open(path) as im:
            if im.size == (2560, 1600):
                photos.append(path)
    if not photos:
        print(f"## POST /v1/optimize: skipped, no 2560x1600 JPEGs in {args.photos} (give --photos)")
        return
    tmp = tempfile.mkdtemp(prefix="shield-optimize-bench-")
    app = create_app(
        {
            "shield": {
                "cache_dir": f"{tmp}/cache",
                "state_dir": f"{tmp}/state",
                "admin_token": TOKEN,
                "log_level": "error",
            },
            "projects": {"bench": {"origin": os.path.dirname(os.path.abspath(photos[0])) + "/"}},
        }
    )
    client = app.test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    rows = []
    for fmt in ("avif", "webp", "jpeg"):
        shield_ms, pillow_ms, out_bytes, in_bytes = [], [], 0, 0
        for photo in photos:
            name = os.path.basename(photo)
            with open(photo, "rb") as fh:
                body = fh.read()
            # The first call stores the original; the timed ones then measure the optimize itself.
            client.post(
                "/v1/optimize",
                headers={**auth, "Accept": ACCEPT[fmt]},
                json={"project": "bench", "source": "/" + name, "quality": 99},
            )
            for r in range(args.rounds):
                started = time.perf_counter()
                resp = client.post(
                    "/v1/optimize",
                    headers={**auth, "Accept": ACCEPT[fmt]},
                    # A quality of its own per round: a new asset each time, never the stored one.
                    json={"project": "bench", "source": "/" + name, "quality": QUALITY - r},
                )
                shield_ms.append((time.perf_counter() - started) * 1000)
                assert resp.status_code == 201, resp.get_json()
                assert resp.get_json()["format"] == fmt
                if r == 0:
                    out_bytes += resp.get_json()["bytes"]
                    in_bytes += len(body)
                started = time.perf_counter()
                pillow_encode(body, fmt, QUALITY - r)
                pillow_ms.append((time.perf_counter() - started) * 1000)
        rows.append((fmt, statistics.median(shield_ms), statistics.median(pillow_ms), out_bytes, in_bytes))
    print(
        f"## POST /v1/optimize, {len(photos)} photos 2560x1600 JPEG, q{QUALITY}, median of {args.rounds} rounds each"
    )
    print("| format | shield ms | Pillow ms (baseline) | ratio | bytes out / source | saved |")
    print("|---|---|---|---|---|---|")
    for fmt, ms, base, out_b, in_b in rows:
        print(
            f"| {fmt} | {ms:.0f} | {base:.0f} | {ms / base:.2f}x | {out_b:,} / {in_b:,} | {100 * (1 - out_b / in_b):.0f}% |"
        )


if __name__ == "__main__":
    main()
