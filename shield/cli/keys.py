"""`keys create|list|rotate|revoke`: a project's API keys (/v1/projects/<name>/keys)."""

import urllib.parse

import click

from .options import IsoTime, command, group
from .output import rows, table

SCOPES = ("images", "optimize", "purge", "stats", "upload", "assets")

keys = group(
    "keys",
    "Create, list, rotate and revoke a project's API keys (/v1/projects/<name>/keys).",
    "\b\nexamples:\n"
    "  python -m shield keys create shop --name prod-web --scope optimize --scope purge\n"
    "  python -m shield keys list shop\n"
    "  python -m shield keys rotate shop pk_...\n"
    "  python -m shield keys revoke shop pk_...",
)


def _keys_path(project, key_id=None):
    path = "/v1/projects/" + urllib.parse.quote(project, safe="") + "/keys"
    return path + "/" + urllib.parse.quote(key_id, safe="") if key_id else path


def _print_new_key(ctx, key, headline):
    if ctx.args.json:
        ctx.print_json(key)
        return
    print(headline, file=ctx.out)
    pairs = [
        ("id", key["id"]),
        ("secret", key["secret"]),
        ("name", key.get("name") or ""),
        ("scopes", ",".join(key.get("scopes", []))),
        ("expires at", key.get("expires_at") or "never"),
    ]
    print(rows(pairs), file=ctx.out)
    print("shield: note: the secret is shown this once; keep it now", file=ctx.err)


@command("create", "Create a key; its secret is printed this once.")
@click.argument("project")
@click.option("--name", default="", help="a label for the key")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(SCOPES),
    metavar="SCOPE",
    help=f"what the key may do: {', '.join(SCOPES)} (repeatable; default: every scope)",
)
@click.option("--expires-at", type=IsoTime(), metavar="ISO", help="the key stops working at this time")
def create_key(ctx, project, name, scopes, expires_at):
    body = {"name": name}
    if scopes:
        body["scopes"] = list(scopes)
    if expires_at:
        body["expires_at"] = expires_at
    key = ctx.admin().call("POST", _keys_path(project), body=body)
    _print_new_key(ctx, key, f"created key {key['id']} for project {project}")


@command("list", "List a project's keys (never their secrets).")
@click.argument("project")
def list_keys(ctx, project):
    data = ctx.admin().call("GET", _keys_path(project))
    if ctx.args.json:
        ctx.print_json(data)
        return
    items = data.get("items") or []
    if not items:
        print("no keys", file=ctx.out)
        return
    body = [
        (
            k.get("id", ""),
            k.get("name") or "",
            ",".join(k.get("scopes", [])),
            k.get("expires_at") or "never",
            "yes" if k.get("revoked") else "no",
        )
        for k in items
    ]
    print(table(("ID", "NAME", "SCOPES", "EXPIRES", "REVOKED"), body), file=ctx.out)


@command("rotate", "Replace a key by a new pair; the old one stops working at once.")
@click.argument("project")
@click.argument("key_id", metavar="KEY_ID")
def rotate_key(ctx, project, key_id):
    key = ctx.admin().call("POST", _keys_path(project, key_id) + "/rotate")
    _print_new_key(ctx, key, f"rotated key {key_id}: the new key is {key['id']}")


@command("revoke", "Revoke a key in every worker.")
@click.argument("project")
@click.argument("key_id", metavar="KEY_ID")
def revoke_key(ctx, project, key_id):
    data = ctx.admin().call("DELETE", _keys_path(project, key_id))
    if ctx.args.json:
        ctx.print_json(data)
    else:
        print(f"revoked key {key_id}", file=ctx.out)


for _command in (create_key, list_keys, rotate_key, revoke_key):
    keys.add_command(_command)
