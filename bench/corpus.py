"""Every file of a folder of image corpora through shield, with a set of URLs: what fails, how.

The public test corpora the engine is held to (the PngSuite, Pillow's Tests/images,
link-u's avif-sample-images, libwebp-test-data, libheif's examples, the EXIF orientation
set) are large and not kept in this repository (tests/corpus/ holds a licensed subset);
point this at a copy of them. It serves the folder as a project in-process (real
ImageMagick, real cache) and prints the statuses by kind, every 5xx, and the slowest.

    .venv/bin/python -m bench.corpus /path/to/corpora [--urls N]
"""

import argparse
import collections
import json
import os
import sys
import tempfile
import time
import urllib.parse

from shield.api.web import create_app

EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".avif", ".heic", ".heif", ".tif", ".tiff")
URLS = (
    "",
    "w=300",
    "w=300&h=200&fit=contain",
    "w=300&h=200&fit=cover",
    "w=300&fmt=avif",
    "w=300&fmt=webp",
    "w=300&fmt=jpeg",
    "w=300&fmt=png",
    "blur=true",
    "lqip=true",
)
ACCEPTS = {"avif": "image/avif,image/webp,*/*", "legacy": "image/png,image/jpeg,*/*"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    args = parser.parse_args()
    root = os.path.abspath(args.folder)
    tmp = tempfile.mkdtemp(prefix="shield-corpus-")
    app = create_app(
        {
            "shield": {"cache_dir": f"{tmp}/cache", "state_dir": f"{tmp}/state", "log_level": "error"},
            "projects": {"corpus": {"origin": root + "/", "rate_limit": 0, "rate_limit_miss": 0}},
        }
    )
    client = app.test_client()
    files = sorted(
        os.path.relpath(os.path.join(d, f), root)
        for d, _, names in os.walk(root)
        for f in names
        if f.lower().endswith(EXTENSIONS)
    )
    statuses, by_code, errors, slowest = collections.Counter(), collections.Counter(), [], []
    split = []  # (file, query) answered differently by Accept: the same file must be good or bad for all
    started = time.time()
    for n, name in enumerate(files, 1):
        path = "/corpus/" + urllib.parse.quote(name)
        for query in URLS:
            answers = set()
            for label, accept in ACCEPTS.items():
                t = time.perf_counter()
                resp = client.get(
                    path + ("?" + query if query else ""), headers={"Accept": accept}, buffered=True
                )
                took = time.perf_counter() - t
                statuses[resp.status_code] += 1
                if resp.status_code >= 400:
                    body = resp.get_json(silent=True) or {}
                    by_code[(resp.status_code, body.get("error", {}).get("code"))] += 1
                if resp.status_code >= 500:
                    errors.append((resp.status_code, name, query, label, resp.get_data()))
                slowest.append((took, name, query, label))
                answers.add(resp.status_code < 400)
            if len(answers) > 1:
                split.append((name, query))
        if n % 25 == 0:
            print(f"[{n}/{len(files)}] {time.time() - started:.0f} s", file=sys.stderr, flush=True)
    slowest.sort(reverse=True)
    print(f"## Corpus run: {len(files)} files x {len(URLS)} URLs x {len(ACCEPTS)} Accept headers")
    print(f"requests {sum(statuses.values())}, statuses {dict(sorted(statuses.items()))}")
    print("failures by kind: " + ", ".join(f"{s} {c}: {k}" for (s, c), k in sorted(by_code.items())))
    print(f"5xx: {len(errors)}, in {len({e[1] for e in errors})} files")
    kinds = collections.defaultdict(list)  # (status, first words of the message) -> files
    for status, name, _query, _label, body in errors:
        message = (_message_of(body) or "")[:60]
        if name not in kinds[(status, message)]:
            kinds[(status, message)].append(name)
    for (status, message), names in sorted(kinds.items(), key=lambda kv: -len(kv[1])):
        print(f"    {status} x{len(names)} files: {message!r}, e.g. {', '.join(names[:3])}")
    print(f"answered differently by Accept: {len(split)}, in {len({n for n, _ in split})} files")
    for name, query in split[:20]:
        print(f"    {name}?{query}")
    print("slowest: " + "; ".join(f"{name}?{q} ({label}) {t:.2f} s" for t, name, q, label in slowest[:8]))


def _message_of(body):
    try:
        return json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace")


if __name__ == "__main__":
    main()
