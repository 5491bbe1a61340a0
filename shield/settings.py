"""Every configuration key, declared once: name, default, validator, description.

The TOML loader, the `SHIELD_*` environment overrides, start-up validation and
the README's configuration table all come from the declarations below.
"""

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEFAULT_CONFIG_PATH = "config/shield.toml"
# `c`, `asset` and `dashboard` too: /c/<id>.<ext>, /asset/upload/persist and /dashboard are shield's.
RESERVED_NAMES = frozenset(
    {
        "api",
        "admin",
        "asset",
        "c",
        "cdn",
        "dashboard",
        "health",
        "metrics",
        "registry",
        "static",
        "test",
        "v1",
    }
)
PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class ConfigError(Exception):
    """The configuration is wrong; shield refuses to start and says which key."""


# -- validators: each takes the raw value and returns the clean one or raises ValueError


def _int(lo=None, hi=None):
    def check(value):
        if isinstance(value, bool):
            raise ValueError("expected an integer")
        if isinstance(value, str):
            value = value.replace("_", "").strip()
            if not re.fullmatch(r"-?\d+", value):
                raise ValueError("expected an integer")
            value = int(value)
        if not isinstance(value, int):
            raise ValueError("expected an integer")
        if lo is not None and value < lo:
            raise ValueError(f"must be at least {lo}")
        if hi is not None and value > hi:
            raise ValueError(f"must be at most {hi}")
        return value

    check.kind = "int"
    return check


def _float(lo=None, hi=None):
    def check(value):
        if isinstance(value, bool):
            raise ValueError("expected a number")
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError("expected a number") from None
        if value != value or (lo is not None and value < lo):
            raise ValueError(f"must be at least {lo}")
        if hi is not None and value > hi:
            raise ValueError(f"must be at most {hi}")
        return value

    check.kind = "float"
    return check


def _bool(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


_bool.kind = "bool"


def _str(value):
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


_str.kind = "str"


def _str_list(value):
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError("expected a list of non-empty strings")
    return list(value)


_str_list.kind = "list"


def _networks(value):
    value = _str_list(value)
    for entry in value:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or network (CIDR)") from None
    return value


_networks.kind = "list"


def _admin_token(value):
    value = _str(value)
    if value and len(value) < 16:
        raise ValueError("must be at least 16 characters (use a long random secret)")
    return value


_admin_token.kind = "str"


def _signing_keys(value):
    """One key or a list: the first signs, every one verifies (key rotation)."""
    if value is None or value == "" or value == []:
        return []
    keys = [value] if isinstance(value, str) else value
    if not isinstance(keys, list) or not all(isinstance(k, str) and len(k) >= 16 for k in keys):
        raise ValueError("expected a secret of at least 16 characters, or a list of them")
    return list(keys)


_signing_keys.kind = "list"


def _origin(value):
    value = _str(value).strip()
    if not value:
        raise ValueError("must name a folder or an http(s):// URL")
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", value):
        if not value.startswith(("http://", "https://")):
            raise ValueError("only folders and http:// or https:// origins are supported")
        if not value.endswith("/"):
            value += "/"
    return value


_origin.kind = "str"


def _matching(pattern, message):
    """A string setting that is empty or matches `pattern` whole (surrounding spaces dropped)."""

    def check(value):
        value = _str(value).strip()
        if value and not re.fullmatch(pattern, value):
            raise ValueError(message)
        return value

    check.kind = "str"
    return check


_address = _matching(r"[^\s:]*:\d{1,5}|\[[0-9a-fA-F:]+\]:\d{1,5}", "expected host:port, e.g. 127.0.0.1:8001")


def _log_level(value):
    value = _str(value).lower()
    if value not in ("debug", "info", "warning", "error"):
        raise ValueError("expected debug, info, warning or error")
    return value


_log_level.kind = "str"


def _url_base(value):
    value = _str(value).strip().rstrip("/")
    if value and not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", value):
        raise ValueError("expected an http(s):// URL such as https://img.example.com")
    return value


_url_base.kind = "str"


_redis_url = _matching(r"rediss?://[^\s/?#]+(/[0-9]{1,2})?", "expected redis://host:port/db")
_node_id = _matching(r"[A-Za-z0-9._-]{1,64}", "expected 1-64 characters of A-Z a-z 0-9 . _ -")

API_RATE_LIMITS = {"optimize": 300, "resize": 1200, "purge": 30}


def _api_rate_limits(value):
    if not isinstance(value, dict):
        raise ValueError("expected a table such as {optimize = 300, resize = 1200, purge = 30}")
    out = dict(API_RATE_LIMITS)
    for name, limit in value.items():
        if name not in API_RATE_LIMITS:
            raise ValueError(f"{name!r} is not one of {', '.join(API_RATE_LIMITS)}")
        out[name] = _int(0)(limit)
    return out


_api_rate_limits.kind = "table"
PRESET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def _presets(value):
    """name -> query string of image parameters, each checked as a URL's would be."""
    from .params import check_preset

    if not isinstance(value, dict):
        raise ValueError('expected a table such as {thumb = "w=200&h=200&fit=cover"}')
    out = {}
    for name, query in value.items():
        if not PRESET_NAME.match(name) or not isinstance(query, str):
            raise ValueError(f"preset {name!r}: expected a name of letters, digits, '-', '_' and a string")
        try:
            check_preset(query)
        except ValueError as exc:
            raise ValueError(f"preset {name!r}: {exc}") from None
        out[name] = query
    return out


_presets.kind = "table"


def _source_domains(value):
    """Hosts a project may fetch from besides its origin: 'https://cdn.example.com' or a bare host."""
    out = []
    for entry in _str_list(value):
        entry = entry.strip().lower().rstrip("/")
        if not re.fullmatch(r"(https?://)?[a-z0-9.-]+(:\d{1,5})?", entry):
            raise ValueError(f"{entry!r}: expected a host such as https://cdn.example.com")
        out.append(entry)
    return out


_source_domains.kind = "list"


IMAGE_METHODS = ("GET", "HEAD", "OPTIONS")
_DOMAIN = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+")


def _domain(value):
    """A host name whose requests this project serves (case and port ignored); '' for none."""
    value = _str(value).strip().lower().rstrip(".")
    if ":" in value and not value.startswith("["):
        value = value.rsplit(":", 1)[0]
    if value and not _DOMAIN.fullmatch(value):
        raise ValueError("expected a host name such as img.shop.example (no scheme, no path)")
    return value


_domain.kind = "str"


def _cors_origins(value):
    """'*', or origins as a browser sends them: https://shop.example, http://localhost:3000."""
    value = _str_list(value)
    for entry in value:
        if entry != "*" and not re.fullmatch(r"https?://[a-z0-9.-]+(:[0-9]{1,5})?", entry):
            raise ValueError(f"{entry!r}: expected '*' or an origin such as https://shop.example")
    return value


_cors_origins.kind = "list"


def _methods(value):
    value = [m.upper() for m in _str_list(value)]
    wrong = [m for m in value if m not in IMAGE_METHODS]
    if wrong or not value:
        raise ValueError(f"expected a non-empty list of {', '.join(IMAGE_METHODS)}")
    return [m for m in IMAGE_METHODS if m in value]


_methods.kind = "list"

OUTPUT_FORMATS = ("jxl", "avif", "webp", "jpeg", "png")


def _format_order(value):
    value = [f.lower() for f in _str_list(value)]
    wrong = [f for f in value if f not in OUTPUT_FORMATS]
    if wrong or not value or len(set(value)) != len(value):
        raise ValueError(f"expected a non-empty list of distinct formats of {', '.join(OUTPUT_FORMATS)}")
    return value


_format_order.kind = "list"
QUALITY_FORMATS = ("jpeg", "webp", "avif", "jxl")


def _format_quality(value):
    """format -> the encoder's own quality, instead of the one the quality table gives for q."""
    if not isinstance(value, dict):
        raise ValueError("expected a table such as {avif = 60, webp = 82}")
    out = {}
    for name, setting in value.items():
        if name not in QUALITY_FORMATS:
            raise ValueError(f"{name!r} is not one of {', '.join(QUALITY_FORMATS)}")
        out[name] = _int(1, 100)(setting)
    return out


_format_quality.kind = "table"


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    validate: Callable
    doc: str


SHIELD_SETTINGS = [
    Setting("cache_dir", "var/cache", _str, "Folder of the variant and original cache; survives restarts."),
    Setting(
        "state_dir",
        "var/state",
        _str,
        "Folder of what must outlive the cache: projects made through the API, stats, purge records.",
    ),
    Setting(
        "asset_dir",
        "",
        _str,
        "Folder of the asset store (optimize results, uploads); empty: <state_dir>/assets. Share it between nodes.",
    ),
    Setting(
        "redis_url",
        "",
        _redis_url,
        "Cluster mode: redis://host:port/db shared by every node (purges, projects, keys, rate limits, stats). Empty: one node, no Redis.",
    ),
    Setting(
        "node_id",
        "",
        _node_id,
        "This node's name in cluster answers; empty: the host name and a hash of cache_dir.",
    ),
    Setting(
        "cluster_purge_wait",
        2.0,
        _float(0, 30),
        "Seconds a purge waits for every live node to apply it before answering scheduled instead of done.",
    ),
    Setting(
        "public_url",
        "",
        _url_base,
        "Base of every absolute URL shield answers with (https://img.example.com). Empty: the request's scheme and host.",
    ),
    Setting(
        "cache_max_bytes",
        2_000_000_000,
        _int(10_000_000),
        "Upper bound of the cache; least recently used entries go first.",
    ),
    Setting(
        "admin_token",
        "",
        _admin_token,
        "Bearer token of the /v1 admin API (16+ characters). Unset: the admin API answers 401.",
    ),
    Setting(
        "admin_bind",
        "",
        _address,
        "Serve /v1 only on this extra host:port (the public port then answers 404 for /v1). Empty: /v1 on the public port.",
    ),
    Setting("admin_enabled", True, _bool, "false turns the /v1 admin API off entirely."),
    Setting("metrics_token", "", _str, "When set, /metrics needs Authorization: Bearer <metrics_token>."),
    Setting(
        "max_source_bytes", 26_214_400, _int(1024), "Originals larger than this answer 413 source_too_large."
    ),
    Setting(
        "max_source_pixels",
        50_000_000,
        _int(1),
        "Originals with more pixels (read from the header, before decoding) answer 413.",
    ),
    Setting(
        "max_output_pixels",
        25_000_000,
        _int(1),
        "Largest output (width x height) a URL may ask for; larger answers 400.",
    ),
    Setting(
        "avif_max_pixels",
        6_000_000,
        _int(0),
        "AVIF outputs larger than this (width x height) are encoded as WebP: libaom needs ~24 bytes a pixel. 0: no limit.",
    ),
    Setting(
        "origin_timeout",
        10.0,
        _float(0.05, 300),
        "Seconds an origin fetch may take in all, headers and body.",
    ),
    Setting(
        "origin_retry_interval",
        5.0,
        _float(0, 3600),
        "After an origin failure, seconds during which stale copies are served without asking the origin again.",
    ),
    Setting(
        "transform_threads", 0, _int(0, 64), "OS threads per worker doing image work. 0: one per CPU core."
    ),
    Setting(
        "transform_timeout",
        20.0,
        _float(0.1, 600),
        "Seconds one transform may take; beyond, its work stops and the request gets 503 overloaded.",
    ),
    Setting(
        "transform_queue",
        64,
        _int(1, 100_000),
        "Misses that may wait for a transform thread per worker; beyond, 503 with Retry-After.",
    ),
    Setting(
        "hot_cache_bytes",
        8 * 1024 * 1024,
        _int(0, 2**34),
        "Bytes of each worker's in-memory hot set of recent hits (bodies up to 128 KiB each). 0: off.",
    ),
    Setting(
        "decode_cache_bytes",
        32 * 1024 * 1024,
        _int(0, 2**34),
        "Bytes of each worker's recent decoded originals (stills up to a quarter of it each), reused"
        " by their next variants. 0: off.",
    ),
    Setting("trusted_proxies", [], _networks, "Addresses of proxies whose X-Forwarded-For is believed."),
    Setting("log_level", "info", _log_level, "debug, info, warning or error."),
    Setting(
        "served_by_header",
        False,
        _bool,
        "Add X-Served-By: <host>-<worker pid> to every answer (debugging a fleet).",
    ),
]

PROJECT_SETTINGS = [
    Setting("origin", None, _origin, "A local folder, or an http(s):// URL prefix, where originals live."),
    Setting("enabled", True, _bool, "false: the project answers 404 project_not_found."),
    Setting(
        "signing_key",
        [],
        _signing_keys,
        "Secret (or list: the first signs, all verify); when set every URL needs sig.",
    ),
    Setting("private", False, _bool, "Every request needs ?token=; answers are never cached."),
    Setting(
        "allowed_referers",
        [],
        _str_list,
        "Hosts (and their subdomains) whose pages may embed the images. Empty: any.",
    ),
    Setting("require_referer", False, _bool, "With allowed_referers: refuse requests without a Referer too."),
    Setting(
        "quality",
        80,
        _int(1, 100),
        "Default q: the quality of a JPEG at q; every format is encoded to match it.",
    ),
    Setting(
        "format_quality",
        {},
        _format_quality,
        "Encoder settings per format for the project's quality, instead of the quality table's: {avif = 60}. Other q values use the table.",
    ),
    Setting("max_width", 8192, _int(1, 16384), "w is clamped to this."),
    Setting("max_height", 8192, _int(1, 16384), "h is clamped to this."),
    Setting(
        "cache_ttl",
        86400,
        _int(0),
        "Seconds an original is fresh when the origin sends no Cache-Control max-age.",
    ),
    Setting(
        "stale_if_error",
        86400,
        _int(0),
        "Seconds past freshness a stored copy may be served while the origin fails.",
    ),
    Setting("negative_ttl", 60, _int(0), "Seconds an origin 404/410 is remembered."),
    Setting(
        "browser_ttl",
        86400,
        _int(0),
        "max-age of image answers (with stale-while-revalidate=60): how long a browser may keep one unasked.",
    ),
    Setting(
        "immutable",
        False,
        _bool,
        "The origin never changes a file in place: image answers say max-age=31536000, immutable.",
    ),
    Setting(
        "format_order",
        ["avif", "webp", "jpeg"],
        _format_order,
        "Formats fmt=auto prefers, first accepted wins (of jxl, avif, webp, jpeg, png); JPEG, or PNG with transparency, is the last resort.",
    ),
    Setting(
        "keep_metadata",
        False,
        _bool,
        "Passed-through JPEGs keep their EXIF and XMP (GPS included); by default they are cut out, pixels untouched.",
    ),
    Setting("rate_limit", 600, _int(0), "Requests per minute per client IP; 0 turns it off."),
    Setting(
        "rate_limit_miss", 120, _int(0), "Cache misses (transforms) per minute per client IP; 0 turns it off."
    ),
    Setting("project_rate_limit", 0, _int(0), "Requests per minute for the whole project; 0 turns it off."),
    Setting(
        "allow_private_origin",
        False,
        _bool,
        "Allow an HTTP origin on a private, loopback or link-local address.",
    ),
    Setting("tags", [], _str_list, "Extra cache tags every variant of this project carries."),
    Setting(
        "domain",
        "",
        _domain,
        "A Host (img.shop.example) whose requests are this project's, without the /<project> prefix.",
    ),
    Setting(
        "https_only",
        False,
        _bool,
        "Redirect plain-HTTP image requests to https (301); refuse plain-HTTP API calls (403).",
    ),
    Setting(
        "cors_origins",
        ["*"],
        _cors_origins,
        "Origins whose pages may read images and upload ('*': any); a listed Origin is echoed, others get no CORS headers.",
    ),
    Setting("upload_quota_bytes", 0, _int(0), "Bytes of uploaded assets the project may keep; 0: no quota."),
    Setting(
        "temp_upload_ttl",
        86400,
        _int(1),
        "Seconds a temporary upload waits to be persisted before it is deleted.",
    ),
    Setting(
        "allowed_methods",
        list(IMAGE_METHODS),
        _methods,
        "Methods the image URLs answer (of GET, HEAD, OPTIONS); others get 405 with Allow.",
    ),
    Setting(
        "api_rate_limits",
        dict(API_RATE_LIMITS),
        _api_rate_limits,
        "Edge API calls a minute per key: {optimize = 300, resize = 1200, purge = 30}; 0 turns one off.",
    ),
    Setting(
        "presets",
        {},
        _presets,
        'Named sets of image parameters: {thumb = "w=200&h=200&fit=cover&q=70"}; ?preset=thumb applies one.',
    ),
    Setting("presets_only", False, _bool, "Refuse every transform that is not a preset (400 invalid_param)."),
    Setting(
        "source_domains",
        [],
        _source_domains,
        "Hosts (and subdomains) whose images optimize and path-style URLs may fetch, besides the origin: https://cdn.example.com.",
    ),
]

_SHIELD_BY_NAME = {s.name: s for s in SHIELD_SETTINGS}
_PROJECT_BY_NAME = {s.name: s for s in PROJECT_SETTINGS}


def _frozen(value):
    return tuple(value) if isinstance(value, list) else value


def _hashable(value):
    return tuple(sorted(value.items())) if isinstance(value, dict) else value


class Project:
    """One `[projects.<name>]` table, validated; its attributes are the PROJECT_SETTINGS."""

    # _http: its response-header profile (headers.profile_of), made on first use.
    __slots__ = ("name", "_http", *(s.name for s in PROJECT_SETTINGS))

    def __init__(self, name, **values):
        self.name = name
        for s in PROJECT_SETTINGS:
            default = dict(s.default) if isinstance(s.default, dict) else s.default
            object.__setattr__(self, s.name, _frozen(values.get(s.name, default)))

    def __setattr__(self, key, value):
        if hasattr(self, key):
            raise AttributeError("a Project is immutable; build a new one")
        object.__setattr__(self, key, value)

    def __eq__(self, other):
        return isinstance(other, Project) and self.settings() == other.settings()

    def __hash__(self):
        return hash((self.name, *(_hashable(getattr(self, s.name)) for s in PROJECT_SETTINGS)))

    def __repr__(self):
        return f"Project({self.name!r}, origin={self.origin!r})"

    @property
    def is_http(self):
        return self.origin.startswith(("http://", "https://"))

    def settings(self):
        """Every setting, as plain values (the signing secret included)."""
        out = {"name": self.name}
        for s in PROJECT_SETTINGS:
            value = getattr(self, s.name)
            out[s.name] = (
                list(value) if isinstance(value, tuple) else dict(value) if isinstance(value, dict) else value
            )
        return out

    def to_dict(self):
        """The project as the admin API shows it: a signing secret is never echoed back."""
        out = self.settings()
        out["signing_key"] = ["***"] * len(self.signing_key)
        return out


class Settings:
    """The `[shield]` table, validated, plus the projects; attributes are SHIELD_SETTINGS."""

    def __init__(self, source="built-in defaults"):
        for s in SHIELD_SETTINGS:
            setattr(self, s.name, list(s.default) if isinstance(s.default, list) else s.default)
        self.projects = {}
        self.source = source

    @property
    def assets_path(self):
        return self.asset_dir or os.path.join(self.state_dir, "assets")

    @property
    def threads(self):
        return self.transform_threads or os.cpu_count() or 1


def validate_project_name(name):
    if not isinstance(name, str) or not PROJECT_NAME.match(name):
        raise ValueError(
            "a project name is 1-63 characters of a-z, 0-9, '-' and '_', starting with a letter or digit"
        )
    if name in RESERVED_NAMES:
        raise ValueError(f"'{name}' is reserved ({', '.join(sorted(RESERVED_NAMES))})")
    return name


def build_project(name, table, where="projects"):
    """Validate one `[projects.<name>]` table (or an API body) into a Project."""
    try:
        validate_project_name(name)
    except ValueError as exc:
        raise ConfigError(f"{where}.{name}: {exc}") from None
    if not isinstance(table, dict):
        raise ConfigError(f"{where}.{name}: expected a table of settings")
    values = {}
    for key, raw in table.items():
        if key == "name":
            continue
        setting = _PROJECT_BY_NAME.get(key)
        if setting is None:
            raise ConfigError(f"{where}.{name}.{key}: unknown key (known: {', '.join(_PROJECT_BY_NAME)})")
        try:
            value = setting.validate(raw)
        except ValueError as exc:
            raise ConfigError(f"{where}.{name}.{key}: {exc}") from None
        values[key] = value
    if "origin" not in values:
        raise ConfigError(f"{where}.{name}.origin: required (a folder or an http(s):// URL)")
    if values.get("private") and not values.get("signing_key"):
        raise ConfigError(
            f"{where}.{name}.private: a private project needs a signing_key to check tokens with"
        )
    return Project(name=name, **values)


def _env_overrides(environ):
    out = {}
    for setting in SHIELD_SETTINGS:
        raw = environ.get(f"SHIELD_{setting.name.upper()}")
        if raw is not None:
            out[setting.name] = raw
    return out


def load(path=None, environ=None, overrides=None):
    """Read the TOML file, apply SHIELD_* overrides, validate everything.

    `overrides` is a dict shaped like the TOML document (tests and embedding use it).
    With no file at all, the `demo` project serves `samples/`.
    """
    environ = os.environ if environ is None else environ
    explicit = path or environ.get("SHIELD_CONFIG")
    path = explicit or DEFAULT_CONFIG_PATH
    document, source = {}, "built-in defaults"
    if os.path.exists(path):
        try:
            with open(path, "rb") as fh:
                document = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        source = path
    elif explicit:
        raise ConfigError(f"{path}: configuration file not found (SHIELD_CONFIG)")
    if overrides:
        document = {**document, **overrides}
        source = f"{source} + overrides" if source != "built-in defaults" else "overrides"

    unknown_tables = set(document) - {"shield", "projects"}
    if unknown_tables:
        raise ConfigError(
            f"{sorted(unknown_tables)[0]}: unknown table (expected [shield] and [projects.<name>])"
        )

    shield_table = dict(document.get("shield", {}))
    shield_table.update(_env_overrides(environ))
    settings = Settings(source=source)
    for key, raw in shield_table.items():
        setting = _SHIELD_BY_NAME.get(key)
        if setting is None:
            raise ConfigError(f"shield.{key}: unknown key (known: {', '.join(_SHIELD_BY_NAME)})")
        try:
            setattr(settings, key, setting.validate(raw))
        except ValueError as exc:
            raise ConfigError(f"shield.{key}: {exc}") from None

    projects = document.get("projects")
    if projects is None:
        projects = {"demo": {"origin": "samples/"}}
    if not isinstance(projects, dict):
        raise ConfigError("projects: expected tables [projects.<name>]")
    settings.projects = {name: build_project(name, table) for name, table in projects.items()}
    domains = {}
    for project in settings.projects.values():
        if project.domain and domains.setdefault(project.domain, project.name) != project.name:
            raise ConfigError(
                f"projects.{project.name}.domain: {project.domain} is already projects.{domains[project.domain]}'s"
            )
    return settings


def settings_table_markdown():
    """The README's configuration tables, from the declarations."""
    lines = ["| `[shield]` key | default | meaning |", "|---|---|---|"]
    for s in SHIELD_SETTINGS:
        lines.append(f"| `{s.name}` | `{s.default!r}` | {s.doc} |")
    lines += ["", "| `[projects.<name>]` key | default | meaning |", "|---|---|---|"]
    for s in PROJECT_SETTINGS:
        default = "required" if s.default is None else f"`{s.default!r}`"
        lines.append(f"| `{s.name}` | {default} | {s.doc} |")
    return "\n".join(lines)
