"""`projects list|get|create|update|delete`: the /v1/projects API."""

import urllib.parse

import click

from .client import UsageError
from .options import POSITIVE, Assignment, command, group
from .output import rows, shown, table

PAGE_SIZE = 100
SET_HELP = (
    "a project setting; VALUE is read as JSON when it parses (numbers, true/false, lists), "
    "else as a string (repeatable)"
)


projects = group(
    "projects",
    "List, show, create, change and delete projects (/v1/projects).",
    "\b\nexamples:\n"
    "  python -m shield projects list\n"
    "  python -m shield projects get demo\n"
    "  python -m shield projects create shop --origin https://img.shop.example/ --set cache_ttl=3600\n"
    "  python -m shield projects update shop --set enabled=false --set 'tags=[\"shop\"]'\n"
    "  python -m shield projects delete shop",
)


def _project_path(name):
    return "/v1/projects/" + urllib.parse.quote(name, safe="")


def _print_project(ctx, project, headline=None):
    if ctx.args.json:
        ctx.print_json(project)
        return
    if headline:
        print(headline, file=ctx.out)
    pairs = [("name", project.get("name", ""))]
    pairs += [(key, shown(value)) for key, value in project.items() if key != "name"]
    print(rows(pairs), file=ctx.out)


@command("list", "List every project, following every page.")
@click.option("--limit", type=POSITIVE, default=PAGE_SIZE, help=f"projects per page (default {PAGE_SIZE})")
def list_projects(ctx, limit):
    client = ctx.admin()
    items, cursor, seen = [], None, set()
    while True:
        params = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        page = client.call("GET", "/v1/projects", params=params)
        items.extend(page.get("items") or [])
        cursor = page.get("next_cursor")
        if not cursor or cursor in seen:
            break
        seen.add(cursor)
    if ctx.args.json:
        ctx.print_json({"items": items, "next_cursor": None})
        return
    if not items:
        print("no projects", file=ctx.out)
        return
    body = [
        (
            p.get("name", ""),
            p.get("origin", ""),
            p.get("domain") or "-",
            "yes" if p.get("enabled", True) else "no",
            "yes" if p.get("private") else "no",
            "yes" if p.get("signing_key") else "no",
        )
        for p in items
    ]
    print(table(("NAME", "ORIGIN", "DOMAIN", "ENABLED", "PRIVATE", "SIGNED"), body), file=ctx.out)


@command("get", "Show one project.")
@click.argument("name")
def get_project(ctx, name):
    _print_project(ctx, ctx.admin().call("GET", _project_path(name)))


@command(
    "create",
    "Create a project.",
    "\b\nexample:\n"
    "  python -m shield projects create shop --origin https://img.shop.example/ "
    "--set cache_ttl=3600 --set quality=75",
)
@click.argument("name")
@click.option("--origin", required=True, help="a local folder or an http(s):// URL prefix")
@click.option("--set", "changes", multiple=True, type=Assignment(), metavar="KEY=VALUE", help=SET_HELP)
def create_project(ctx, name, origin, changes):
    body = dict(changes)
    body["name"] = name
    body["origin"] = origin
    project = ctx.admin().call("POST", "/v1/projects", body=body)
    _print_project(ctx, project, f"created project {name}")


@command(
    "update",
    "Change settings of a project.",
    "\b\nexample:\n  python -m shield projects update shop --set enabled=false --set max_width=2048",
)
@click.argument("name")
@click.option("--set", "changes", multiple=True, type=Assignment(), metavar="KEY=VALUE", help=SET_HELP)
def update_project(ctx, name, changes):
    if not changes:
        raise UsageError("nothing to change: give at least one --set KEY=VALUE")
    project = ctx.admin().call("PATCH", _project_path(name), body=dict(changes))
    _print_project(ctx, project, f"updated project {name}")


@command("delete", "Delete a project.")
@click.argument("name")
def delete_project(ctx, name):
    data = ctx.admin().call("DELETE", _project_path(name))
    if ctx.args.json:
        ctx.print_json(data)
    else:
        print(f"deleted project {name}", file=ctx.out)


for _command in (list_projects, get_project, create_project, update_project, delete_project):
    projects.add_command(_command)
