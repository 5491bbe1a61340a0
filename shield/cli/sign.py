"""`sign`: a signed (or private) URL for the configuration in force, with no server."""

import os
import time
import urllib.parse

import click

from ..guard import signing
from ..guard.keys import KeyRing
from ..projects import Registry
from .client import Failure, UsageError
from .options import POSITIVE, command

DEFAULT_PRIVATE_TTL = 3600


def project_in_force(settings, name):
    """The project as the server sees it: the file's, overlaid by those made through the API."""
    registry = Registry(settings)
    if not os.path.exists(registry.path):
        return settings.projects.get(name)
    try:
        return registry.get(name)
    finally:
        db = getattr(registry, "_db", None)
        if db is not None:
            db.close()


@command(
    "sign",
    "Print a signed URL (or with --token a private one) for the configuration in force. "
    "Needs no running server.",
    "The key is the first signing_key of the project named by the URL's first path segment. "
    "The global --token cannot follow 'sign' (here --token means a private token).\n\n"
    "\b\nexamples:\n"
    "  python -m shield sign '/shop/shoes/red.jpg?w=400&fmt=webp'\n"
    "  python -m shield sign 'https://img.example.com/shop/red.jpg?w=400' --exp 86400\n"
    "  python -m shield sign /vault/report.png --token --exp 600\n"
    "  python -m shield sign --path-style --key pk_... shop/w_400,f_webp/cdn.example.com/img/a.jpg",
    with_token=False,
)
@click.argument("target", metavar="URL")
@click.option(
    "--token",
    "private",
    is_flag=True,
    help="print the private URL (path?token=...) instead; expires in 3600 s unless told",
)
@click.option(
    "--exp", type=POSITIVE, metavar="SECONDS", help="the URL stops working this many seconds from now"
)
@click.option("--expires", type=POSITIVE, metavar="UNIX", help="the URL stops working at this Unix time")
@click.option(
    "--path-style",
    is_flag=True,
    help="sign /api/v1/<project>/<operations>/<host/path> with a project key (needs --key)",
)
@click.option(
    "--key", "key_id", metavar="PK", help="with --path-style: the public id of the key to sign with"
)
def sign(ctx, target, private, exp, expires, path_style, key_id):
    if exp is not None and expires is not None:
        raise UsageError("--exp and --expires cannot be given together")
    until = int(time.time()) + exp if exp is not None else expires
    if path_style:
        return _sign_path_style(ctx, target, key_id, until)
    if key_id:
        raise UsageError("--key is only used with --path-style")
    parts = urllib.parse.urlsplit(target.strip())
    if parts.scheme and parts.scheme not in ("http", "https"):
        raise UsageError(f"{target!r}: expected an http(s) URL or a path starting with /")
    path = urllib.parse.unquote(parts.path)
    segments = path.split("/")
    if not path.startswith("/") or len(segments) < 3 or not segments[1] or not segments[2]:
        raise UsageError(f"{target!r}: expected /<project>/<file>, e.g. /demo/rocket.jpg?w=400")
    name = segments[1]
    settings = ctx.settings()
    project = project_in_force(settings, name)
    if project is None:
        raise UsageError(f"no project {name!r} in the configuration ({settings.source})")
    if not project.signing_key:
        raise UsageError(f"project {name!r} has no signing_key, so its URLs need no signature")
    key = project.signing_key[0]

    query = {
        k: v
        for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if k not in ("sig", "token")
    }
    origin = f"{parts.scheme}://{parts.netloc}" if parts.scheme else ""
    shown_path = urllib.parse.quote(path, safe="/")

    if private:
        if until is None:
            given = query.get("exp", "")
            until = int(given) if given.isdigit() else int(time.time()) + DEFAULT_PRIVATE_TTL
        query.pop("exp", None)
        token = signing.private_token(key, path, until)
        url = origin + shown_path + "?" + urllib.parse.urlencode([*query.items(), ("token", token)])
    else:
        if until is not None:
            query["exp"] = str(until)
        signed = signing.signed_url(key, path, query)
        if not signed.startswith(path):
            raise Failure(f"signed_url answered {signed!r}, which does not start with {path!r}")
        url = origin + shown_path + signed[len(path) :]
        exp_given = query.get("exp")
        until = int(exp_given) if exp_given and exp_given.isdigit() else None
    if project.private and not private:
        print(
            f"shield: note: project {name!r} is private: its URLs need a token (sign --token)", file=ctx.err
        )
    if ctx.args.json:
        ctx.print_json({"url": url, "project": name, "expires": until, "private": bool(private)})
    else:
        print(url, file=ctx.out)


def _sign_path_style(ctx, target, key_id, until):
    """/api/v1/<project>/<ops>/<imageUrl>?key=&sig=[&exp=], signed with the key's secret (contract 11)."""
    if not key_id:
        raise UsageError("--path-style needs --key pk_... (the key's secret is read from state_dir)")
    parts = urllib.parse.urlsplit(target.strip())
    origin = f"{parts.scheme}://{parts.netloc}" if parts.scheme else ""
    path = parts.path if parts.scheme else target.strip().split("?", 1)[0]
    path = path.lstrip("/")
    if path.startswith("api/v1/"):
        path = path[len("api/v1/") :]
    project, _, rest = path.partition("/")
    ops, _, image_url = rest.partition("/")
    if not project or not ops or "/" not in image_url:
        raise UsageError(
            f"{target!r}: expected <project>/<operations>/<host>/<path>, e.g. shop/w_400/cdn.example.com/a.jpg"
        )
    settings = ctx.settings()
    ring = KeyRing(settings.state_dir)
    key = ring.by_id(key_id) if os.path.exists(ring.path) else None
    if key is None:
        raise UsageError(f"no usable key {key_id!r} in {ring.path}")
    if key.project != project:
        raise UsageError(f"key {key_id!r} belongs to project {key.project!r}, not {project!r}")
    if "images" not in key.scopes:
        raise UsageError(f"key {key_id!r} has no 'images' scope, so it cannot sign image URLs")
    sig = signing.path_signature(key.secret, ops, image_url, until)
    query = urllib.parse.urlencode([("key", key.id), ("sig", sig)] + ([("exp", str(until))] if until else []))
    url = f"{origin}/api/v1/{project}/{ops}/{image_url}?{query}"
    if ctx.args.json:
        ctx.print_json({"url": url, "project": project, "expires": until, "private": False, "key": key.id})
    else:
        print(url, file=ctx.out)
