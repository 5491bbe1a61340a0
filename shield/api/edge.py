"""The edge image API (contract section 8): /v1/optimize and /v1/resize.

A translation only: optimize hands the body to optimize.Optimizer, resize
turns its query into the asset's own /c/ URL (sizes clamped instead of
refused) and answers it as the image front door would.
"""

import math
import re
import urllib.parse

from flask import Blueprint, request

from ..errors import BadRequest, InvalidParam, NotFound
from ..optimize import ASSET_PREFIX
from .auth import principal
from .common import project_or_404, services
from .exchange import answer_image, flask_response

edge = Blueprint("edge", __name__, url_prefix="/v1")
RESIZE_PARAMS = ("w", "h", "dpr", "fit", "q", "fmt")
_DIGITS = re.compile(r"[0-9]+")
_NUMBER = re.compile(r"[0-9]{1,12}(\.[0-9]{1,12})?")


def public_base():
    """Where absolute URLs point: the public_url setting, else this request's scheme and host."""
    return services().settings.public_url or request.host_url.rstrip("/")


@edge.post("/optimize")
def optimize():
    caller = principal()
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest('The body must be a JSON object such as {"source": "/img/hero.jpg"}.')
    project = project_or_404(caller.project_for(body.get("project"), "optimize"))
    services().guard.check_api(project, caller.rate_key, "optimize")
    quality = body.get("quality")
    if quality is not None and (type(quality) is not int or not 1 <= quality <= 100):
        raise InvalidParam("quality", "expected a whole number from 1 to 100")
    strip = body.get("strip", True)
    if not isinstance(strip, bool):
        raise InvalidParam("strip", "expected true or false")
    asset, created = services().optimizer.optimize(
        project, body.get("source"), quality, strip, request.headers.get("Accept", "")
    )
    answer = {
        "id": asset.id,
        "url": f"{public_base()}/c/{asset.id[len(ASSET_PREFIX) :]}.{asset.ext}",
        "bytes": asset.size,
        "format": asset.record["format"],
        "width": asset.record["width"],
        "height": asset.record["height"],
    }
    return answer, 201 if created else 200


def _whole(name, raw):
    """A whole number of any size (a clamp follows), or 400 for anything else."""
    if not _DIGITS.fullmatch(raw):
        raise InvalidParam(name, f"expected a whole number, got {raw[:40]!r}")
    return int(raw[:12]) if len(raw) <= 12 else 10**12


def clamp_resize(args, project, asset, max_pixels):
    """Resize's query as image parameters: dpr folded in, every size clamped, never refused for size."""
    out = {name: args[name] for name in RESIZE_PARAMS if name in args}
    dpr = 1.0
    if "dpr" in out:
        try:
            dpr = float(out.pop("dpr")) if _NUMBER.fullmatch(args["dpr"]) else math.nan
        except ValueError:
            dpr = math.nan
        if not math.isfinite(dpr):
            raise InvalidParam("dpr", "expected a number from 1 to 4")
        dpr = min(max(dpr, 1.0), 4.0)
    sizes = {}
    for side, limit in (("w", project.max_width), ("h", project.max_height)):
        if side in out:
            sizes[side] = min(max(1, round(_whole(side, out[side]) * dpr)), limit)
    if "q" in out:
        out["q"] = str(min(max(_whole("q", out["q"]), 1), 100))
    # The output's pixels: the box, or one side and the source's aspect ratio (never enlarged).
    src_w, src_h = asset.record["width"], asset.record["height"]
    w, h = sizes.get("w"), sizes.get("h")
    if w and h:
        area = w * h
    elif w or h:
        if out.get("fit") != "fill":
            w, h = (min(w, src_w), None) if w else (None, min(h, src_h))
        area = w * w * src_h / src_w if w else h * h * src_w / src_h
    else:
        area = 0
    if area > max_pixels:
        k = math.sqrt(max_pixels / area)
        sizes = {side: max(1, math.floor(value * k)) for side, value in sizes.items()}
    out.update((side, str(value)) for side, value in sizes.items())
    return out


@edge.get("/resize")
def resize():
    caller = principal()
    asset_id = request.args.get("id", "")
    asset = services().assets.get(asset_id) if asset_id.startswith(ASSET_PREFIX) else None
    if asset is None:
        raise NotFound("No asset with this id.")
    project = project_or_404(asset.project)
    caller.require("optimize", project.name)
    services().guard.check_api(project, caller.rate_key, "resize")
    query = urllib.parse.urlencode(
        clamp_resize(request.args, project, asset, services().settings.max_output_pixels)
    )
    name = f"{asset.id[len(ASSET_PREFIX) :]}.{asset.ext}"
    return flask_response(answer_image(services(), request.environ, request.path, "c", name, query))
