"""Cache tags: which tags a variant carries (no I/O)."""

import re

MAX_TAGS = 64
_TAG = re.compile(r"^[\x21-\x7e]{1,128}$")


def origin_tags(surrogate_key=None, cache_tag=None):
    """Tags an origin sent: `Surrogate-Key` is space-separated, `Cache-Tag` comma-separated."""
    found = []
    for value in (surrogate_key or "").split():
        found.append(value.strip())
    for value in (cache_tag or "").split(","):
        found.append(value.strip())
    out = []
    for tag in found:
        if tag and _TAG.match(tag) and "," not in tag and tag not in out:
            out.append(tag)
    return tuple(out[:MAX_TAGS])


def variant_tags(project, fit, origin=(), extra=()):
    """Every tag of one variant: the project's, the smart fit's, the project's own and the origin's."""
    tags = [f"project-{project}"]
    if fit in ("face", "auto"):
        tags.append(f"fit-{fit}")
    for tag in (*extra, *origin):
        if tag not in tags:
            tags.append(tag)
    return tuple(tags)
