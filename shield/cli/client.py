"""What every command shares: the configuration, the server's address and token, the admin API."""

import json
import os

import requests

from .. import settings as settings_mod

DEFAULT_PORT = "8000"
DEFAULT_TIMEOUT = 30.0


class UsageError(Exception):
    """Exit 2: the command line or the configuration is wrong."""


class Failure(Exception):
    """Exit 1: the server answered an error, could not be reached, or some work failed."""


class Context:
    """One run of a command: its resolved options (`args`) and where its output goes."""

    def __init__(self, args, stdout, stderr):
        self.args = args
        self.out = stdout
        self.err = stderr
        self._settings = None

    def settings(self):
        if self._settings is None:
            path = self.args.config
            if path and not os.path.exists(path):
                raise UsageError(f"--config {path}: no such file")
            try:
                self._settings = settings_mod.load(path)
            except settings_mod.ConfigError as exc:
                raise UsageError(f"configuration: {exc}") from None
        return self._settings

    def base_url(self, admin=False):
        if self.args.url:
            return _normalise_base(self.args.url)
        if os.environ.get("SHIELD_URL"):
            return _normalise_base(os.environ["SHIELD_URL"])
        if admin:
            try:
                bind = self.settings().admin_bind
            except UsageError:
                bind = ""
            if bind:
                host, _, port = bind.rpartition(":")
                if host in ("", "0.0.0.0", "[::]"):
                    host = "127.0.0.1"
                return f"http://{host}:{port}"
        return f"http://127.0.0.1:{os.environ.get('PORT') or DEFAULT_PORT}"

    def admin_token(self):
        if self.args.token:
            return self.args.token
        if os.environ.get("SHIELD_ADMIN_TOKEN"):
            return os.environ["SHIELD_ADMIN_TOKEN"]
        settings = self.settings()
        if not settings.admin_token:
            raise UsageError(
                f"no admin token: pass --token, set SHIELD_ADMIN_TOKEN, or set admin_token under [shield] "
                f"in the configuration ({settings.source})"
            )
        return settings.admin_token

    def admin(self):
        return AdminClient(self.base_url(admin=True), self.admin_token(), self.args.timeout)

    def print_json(self, data):
        print(json.dumps(data, indent=2, sort_keys=True), file=self.out)


def _normalise_base(url):
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    return url


def describe_request_error(exc, timeout):
    if isinstance(exc, requests.Timeout):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed (is shield running there?)"
    return type(exc).__name__ + ": " + str(exc).splitlines()[0][:200]


class AdminClient:
    """The /v1 admin API: one call, its JSON answer, or a Failure that says what went wrong."""

    def __init__(self, base, token, timeout):
        self.base = base
        self.token = token
        self.timeout = timeout

    def call(self, method, path, params=None, body=None, files=None):
        url = self.base + path
        try:
            with requests.Session() as session:
                resp = session.request(
                    method,
                    url,
                    params=params,
                    json=body,
                    files=files,
                    headers={"Authorization": f"Bearer {self.token}", "Accept": "application/json"},
                    timeout=self.timeout,
                )
        except requests.RequestException as exc:
            raise Failure(f"{method} {url}: {describe_request_error(exc, self.timeout)}") from None
        try:
            data = resp.json()
        except ValueError:
            data = None
        if resp.status_code >= 400:
            raise Failure(f"{method} {path}: {_error_text(resp.status_code, data, resp.text)}")
        if data is None:
            raise Failure(f"{method} {path}: answered {resp.status_code} with a body that is not JSON")
        return data


def _error_text(status, data, text):
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        line = f"{status} {error.get('code', 'error')}: {error.get('message', '')}".rstrip(": ")
    else:
        snippet = " ".join((text or "").split())[:200]
        line = f"{status}: {snippet}" if snippet else f"{status}"
    if status == 401:
        line += " (check --token, SHIELD_ADMIN_TOKEN or admin_token in the configuration)"
    return line
