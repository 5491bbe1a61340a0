"""`upload FILE...` and `assets list|delete`: the asset API (/v1/assets)."""

import os
import time
import urllib.parse

import click

from .client import Failure, UsageError
from .options import POSITIVE, command, group
from .output import human_bytes, table
from .warm import Progress


@command(
    "upload",
    "Upload image files as assets of a project (POST /v1/assets); prints each one's URL.",
    "\b\nexamples:\n"
    "  python -m shield upload --project shop photos/*.jpg\n"
    "  python -m shield upload --project shop hero.png --json",
)
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--project", required=True, metavar="NAME", help="the project the assets belong to")
def upload(ctx, files, project):
    client = ctx.admin()
    progress = Progress(len(files), ctx.err, label="uploading", event="upload_progress")
    done, failed, started = [], [], time.monotonic()
    try:
        for number, path in enumerate(files, 1):
            try:
                with open(path, "rb") as fh:
                    answer = client.call(
                        "POST",
                        "/v1/assets",
                        params={"project": project},
                        files={"file": (os.path.basename(path), fh)},
                    )
                done.append((path, answer["asset"]))
            except OSError as exc:
                failed.append((path, exc.strerror or str(exc)))
            except Failure as exc:
                failed.append((path, str(exc).split(": ", 1)[-1]))
            progress.update(number, len(failed))
    finally:
        progress.close()
    if ctx.args.json:
        ctx.print_json(
            {
                "assets": [asset for _path, asset in done],
                "failed": [{"file": path, "error": why} for path, why in failed],
                "seconds": round(time.monotonic() - started, 3),
            }
        )
    else:
        for path, asset in done:
            print(
                f"uploaded {path} -> {asset['url']} ({human_bytes(asset['size'])}, {asset['_id']})",
                file=ctx.out,
            )
        for path, why in failed:
            print(f"failed {path}: {why}", file=ctx.out)
    if failed:
        raise Failure(f"{len(failed)} of {len(files)} files failed")


assets = group(
    "assets",
    "List and delete uploaded assets (/v1/assets).",
    "\b\nexamples:\n  python -m shield assets list --project shop\n  python -m shield assets delete k3j9x0q2ab",
)


@command("list", "List uploaded assets, following every page.")
@click.option("--project", metavar="NAME", help="only this project's")
@click.option("--limit", type=POSITIVE, default=100, help="assets per page (default 100)")
def list_assets(ctx, project, limit):
    client = ctx.admin()
    items, cursor = [], None
    while True:
        params = {
            "limit": limit,
            **({"project": project} if project else {}),
            **({"cursor": cursor} if cursor else {}),
        }
        page = client.call("GET", "/v1/assets", params=params)
        items.extend(page.get("items") or [])
        cursor = page.get("next_cursor")
        if not cursor:
            break
    if ctx.args.json:
        ctx.print_json({"items": items, "next_cursor": None})
        return
    if not items:
        print("no assets", file=ctx.out)
        return
    body = [
        (a["_id"], a["bucket"], a["key"], human_bytes(a["size"]), f"{a['width']}x{a['height']}")
        for a in items
    ]
    print(table(("ID", "PROJECT", "KEY", "SIZE", "PIXELS"), body), file=ctx.out)


@command("delete", "Delete an asset: its file and every cached variant.")
@click.argument("asset_id", metavar="ID")
def delete_asset(ctx, asset_id):
    if not asset_id.isalnum():
        raise UsageError(f"{asset_id!r}: expected an asset id such as k3j9x0q2ab")
    data = ctx.admin().call("DELETE", "/v1/assets/" + urllib.parse.quote(asset_id, safe=""))
    if ctx.args.json:
        ctx.print_json(data)
    else:
        print(f"deleted asset {asset_id}", file=ctx.out)


for _command in (list_assets, delete_asset):
    assets.add_command(_command)
