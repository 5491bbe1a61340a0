"""One quality scale: `q` means "the quality of a JPEG at q", whatever the output format.

Each encoder's own quality number means a different picture (libwebp's 80 is worse than
libjpeg's, libavif's 80 better and larger), so each gets the setting whose SSIMULACRA2
score matches a JPEG's at q: quality_table.json, measured on photos and rebuilt by
`bench/quality.py`. Between the table's points the setting is interpolated linearly.
"""

import bisect
import json
import os

TABLE_PATH = os.path.join(os.path.dirname(__file__), "quality_table.json")


def _load(path=TABLE_PATH):
    try:
        with open(path) as fh:
            data = json.load(fh)
    except FileNotFoundError:  # a checkout without the table: each encoder's own scale
        return {}, 8, {}, []
    table = {fmt: _points(column) for fmt, column in data["table"].items()}
    # Each measured AVIF speed has its own column: an AVIF encoded at another speed than the
    # table's takes the settings that match it. Large outputs (engine.LARGE_AVIF_PIXELS) have
    # a column of their own, measured at their speed and chroma.
    avif_by_speed = {int(s): _points(fig["avif"]) for s, fig in data.get("avif_speeds", {}).items()}
    avif_large = _points(data["avif_large"]["avif"]) if "avif_large" in data else []
    return table, int(data.get("avif_speed", 8)), avif_by_speed, avif_large


def _points(column):
    return sorted((int(q), int(setting)) for q, setting in column.items())


TABLE, AVIF_SPEED, AVIF_BY_SPEED, AVIF_LARGE = _load()


def setting(fmt, q, overrides=None, avif_speed=None, avif_large=False):
    """The encoder's own quality for `fmt` that looks like a JPEG at `q` (1-100).

    `overrides` (a project's format_quality) wins for the formats it names. `avif_speed`
    picks that speed's AVIF column when it was measured (the table's speed otherwise);
    `avif_large`, the column of large outputs (their speed and chroma).
    """
    if overrides and fmt in overrides:
        return overrides[fmt]
    points = TABLE.get(fmt)
    if fmt == "avif" and avif_large and AVIF_LARGE:
        points = AVIF_LARGE
    elif fmt == "avif" and avif_speed in AVIF_BY_SPEED:
        points = AVIF_BY_SPEED[avif_speed]
    if not points:
        return q  # JPEG itself, and formats not measured (JPEG XL): their own scale
    keys = [p[0] for p in points]
    i = bisect.bisect_left(keys, q)
    if i < len(keys) and keys[i] == q:
        return points[i][1]
    if i == 0:  # below the table: scale the lowest point down
        return max(1, round(points[0][1] * q / points[0][0]))
    if i == len(keys):
        return points[-1][1]
    (q0, s0), (q1, s1) = points[i - 1], points[i]
    return max(1, min(100, round(s0 + (s1 - s0) * (q - q0) / (q1 - q0))))
