"""`purge`: POST /v1/purge by tag, file, prefix or whole project."""

import click

from .client import UsageError
from .options import command


@command(
    "purge",
    "Purge cached variants by tag, file, prefix or whole project (POST /v1/purge).",
    "\b\nexamples:\n"
    "  python -m shield purge --tag product-42\n"
    "  python -m shield purge --path /demo/rocket.jpg --idempotency-key deploy-981\n"
    "  python -m shield purge --prefix /demo/products/\n"
    "  python -m shield purge --project demo --everything\n"
    "  python -m shield purge --distribution shop --path '/products/*'",
)
@click.option("--tag", "tags", multiple=True, metavar="T", help="a cache tag (repeatable)")
@click.option(
    "--path", "paths", multiple=True, metavar="/PROJECT/FILE", help="every variant of this file (repeatable)"
)
@click.option(
    "--prefix",
    "prefixes",
    multiple=True,
    metavar="/PROJECT/DIR/",
    help="every variant of every file under this prefix (repeatable)",
)
@click.option("--project", metavar="NAME", help="with --everything: the project to empty")
@click.option("--everything", is_flag=True, help="purge every variant of --project")
@click.option(
    "--distribution",
    metavar="ID",
    help="purge through /v1/cdn/cache/purge: --path and --prefix are then relative to the distribution",
)
@click.option(
    "--idempotency-key",
    metavar="K",
    help="the same key again (within 7 days) answers the first result without purging again",
)
def purge(ctx, tags, paths, prefixes, project, everything, idempotency_key, distribution):
    if distribution:
        return _purge_distribution(
            ctx, distribution, tags, paths, prefixes, project, everything, idempotency_key
        )
    body = {}
    if tags:
        body["tags"] = list(tags)
    if paths:
        body["paths"] = list(paths)
    if prefixes:
        body["prefixes"] = list(prefixes)
    if everything:
        if not project:
            raise UsageError("--everything needs --project NAME")
        body["project"] = project
        body["everything"] = True
    elif project:
        raise UsageError("--project is only used with --everything")
    if not body:
        raise UsageError("nothing to purge: give --tag, --path, --prefix, or --project NAME --everything")
    for option, values in (("--path", paths), ("--prefix", prefixes)):
        for value in values:
            if not value.startswith("/") or value.count("/") < 2:
                raise UsageError(f"{option} {value!r}: expected /<project>/<path>")
    if idempotency_key:
        body["idempotency_key"] = idempotency_key
    data = ctx.admin().call("POST", "/v1/purge", body=body)
    _print_result(ctx, data)


def _purge_distribution(ctx, distribution, tags, paths, prefixes, project, everything, idempotency_key):
    """POST /v1/cdn/cache/purge: paths relative to the distribution, a prefix ending in / or *."""
    if project:
        raise UsageError("--project is not used with --distribution (the distribution is the project)")
    for option, values in (("--path", paths), ("--prefix", prefixes)):
        for value in values:
            if not value.startswith("/") and not value.startswith(("http://", "https://")):
                raise UsageError(f"{option} {value!r}: expected a /path or a URL of the distribution")
    body = {"distribution_id": distribution}
    listed = list(paths) + [p if p.endswith(("/", "*")) else p + "/" for p in prefixes]
    if listed:
        body["paths"] = listed
    if tags:
        body["tags"] = list(tags)
    if everything:
        body["purge_everything"] = True
    if len(body) == 1:
        raise UsageError("nothing to purge: give --tag, --path, --prefix or --everything")
    if idempotency_key:
        body["idempotency_key"] = idempotency_key
    data = ctx.admin().call("POST", "/v1/cdn/cache/purge", body=body)
    _print_result(ctx, data)


def _print_result(ctx, data):
    if ctx.args.json:
        ctx.print_json(data)
    else:
        print(f"purged {data.get('purged', 0)} variants (purge_id {data.get('purge_id', '?')})", file=ctx.out)
