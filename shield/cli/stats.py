"""`stats`: GET /v1/stats, the counters of every worker."""

import click

from .options import IsoTime, command
from .output import human_bytes, rows


@command(
    "stats",
    "Show request counters summed over every worker (GET /v1/stats).",
    "\b\nexamples:\n"
    "  python -m shield stats\n"
    "  python -m shield stats --project demo --from 2026-11-23T00:00:00Z --to 2026-11-24T00:00:00Z",
)
@click.option("--project", metavar="P", help="only this project")
@click.option("--from", "start", type=IsoTime(), metavar="ISO", help="from this time (ISO 8601)")
@click.option("--to", "end", type=IsoTime(), metavar="ISO", help="up to this time (ISO 8601)")
def stats(ctx, project, start, end):
    params = {}
    if project:
        params["project"] = project
    if start:
        params["from"] = start
    if end:
        params["to"] = end
    data = ctx.admin().call("GET", "/v1/stats", params=params)
    if ctx.args.json:
        ctx.print_json(data)
        return

    def num(name):
        value = data.get(name, 0)
        return f"{value:,}" if isinstance(value, int) else str(value)

    pairs = [
        ("project", project or "(all projects)"),
        ("period", f"{start or 'the beginning'} to {end or 'now'}"),
        ("requests", num("requests")),
        ("hits", num("hits")),
        ("misses", num("misses")),
        ("stale", num("stale")),
        ("errors", num("errors")),
        ("hit ratio", f"{float(data.get('hit_ratio') or 0) * 100:.1f}%"),
        ("bytes served", human_bytes(data.get("bytes_served", 0))),
        ("origin fetches", num("origin_fetches")),
        ("transforms", num("transforms")),
    ]
    print(rows(pairs), file=ctx.out)
