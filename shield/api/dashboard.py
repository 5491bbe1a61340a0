"""The operator dashboard (contract section 13): one page and its script, served from the repository.

The page holds no data of its own: it asks for the admin token (kept in the tab's
sessionStorage) and calls the documented APIs. It is never stored by a shared
cache, may not be framed, and runs scripts from shield itself only.
"""

import os

from flask import Blueprint, Response

from ..errors import NotFound

FILES = os.path.join(os.path.dirname(__file__), "dashboard_files")
TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}

dashboard = Blueprint("dashboard", __name__)


def _file(name):
    with open(os.path.join(FILES, name), "rb") as fh:
        return Response(fh.read(), headers={"Content-Type": TYPES[name], **HEADERS})


@dashboard.get("/dashboard")
def page():
    return _file("index.html")


@dashboard.get("/dashboard/<name>")
def asset(name):
    if name not in TYPES or name == "index.html":
        raise NotFound("No such dashboard file.")
    return _file(name)
