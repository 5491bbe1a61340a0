"""click plumbing shared by every command: value types, the global options, help layout.

The global options (--url, --token, --config, --json, --timeout) are accepted
before the command and after it; the one given last, nearest the command, wins.
"""

import functools
import json
from datetime import datetime
from types import SimpleNamespace

import click

from .client import DEFAULT_TIMEOUT

PROG = "python -m shield"
GLOBAL_OPTIONS = ("url", "token", "config", "json", "timeout")


class _Formatter(click.HelpFormatter):
    def write_usage(self, prog, args="", prefix=None):
        super().write_usage(prog, args, "usage: " if prefix is None else prefix)


class _Context(click.Context):
    formatter_class = _Formatter


class Command(click.Command):
    context_class = _Context


class Group(click.Group):
    context_class = _Context
    command_class = Command

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("no_args_is_help", False)
        super().__init__(*args, **kwargs)


Group.group_class = Group
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


# -- value types


class WholeNumber(click.ParamType):
    name = "N"

    def __init__(self, minimum):
        self.minimum = minimum

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            number = value
        else:
            try:
                number = int(value)
            except ValueError:
                self.fail(f"expected a whole number, got {value!r}", param, ctx)
        if number < self.minimum:
            bound = "at least 1" if self.minimum == 1 else f"{self.minimum} or more"
            self.fail(f"must be {bound}, got {value!r}", param, ctx)
        return number


class Seconds(click.ParamType):
    name = "SECONDS"

    def convert(self, value, param, ctx):
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"expected a number of seconds, got {value!r}", param, ctx)
        if not seconds > 0:
            self.fail(f"must be more than 0, got {value!r}", param, ctx)
        return seconds


class IsoTime(click.ParamType):
    name = "ISO"

    def convert(self, value, param, ctx):
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"expected an ISO 8601 time such as 2026-11-23T12:00:00Z, got {value!r}", param, ctx)
        return value


def parse_assignment(text):
    """'key=value' -> (key, value); the value is JSON when it parses as JSON, else the string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"expected key=value, got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


class Assignment(click.ParamType):
    name = "KEY=VALUE"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            return parse_assignment(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


POSITIVE = WholeNumber(1)
NON_NEGATIVE = WholeNumber(0)


# -- the global options


def add_global_options(cmd, with_token=True):
    """Append the global options to a group or command; each defaults to "not given"."""
    options = [
        click.Option(
            ["--url"],
            metavar="URL",
            help="base URL of the running shield (default: $SHIELD_URL, else http://127.0.0.1:$PORT, "
            "PORT defaulting to 8000; admin commands use admin_bind when it is configured)",
        ),
        click.Option(
            ["--token"],
            metavar="TOKEN",
            help="admin token (default: $SHIELD_ADMIN_TOKEN, else admin_token from the configuration)",
        ),
        click.Option(
            ["--config"],
            metavar="PATH",
            help="configuration file (default: $SHIELD_CONFIG, else config/shield.toml)",
        ),
        click.Option(["--json"], is_flag=True, help="print the raw JSON answer instead of text"),
        click.Option(
            ["--timeout"],
            type=Seconds(),
            help=f"seconds to wait for each HTTP answer (default {DEFAULT_TIMEOUT:g})",
        ),
    ]
    cmd.params.extend(o for o in options if with_token or o.name != "token")
    return cmd


def remember_global_options(obj, given):
    """Record a level's global options over those of the levels before it."""
    seen = obj.setdefault("options", {})
    for name in GLOBAL_OPTIONS:
        value = given.pop(name, None)
        if value:
            seen[name] = value


def command(name, help_text, epilog=None, with_token=True):
    """A leaf command: its callback gets (ctx, **its own options).

    obj["on_command"] gets the command, ready to run with a Context, and the resolved
    options, so the same command line can be run (main) or only parsed (parse_args).
    """

    def decorate(f):
        @functools.wraps(f)
        def callback(**given):
            obj = click.get_current_context().obj
            remember_global_options(obj, given)
            options = {"json": False, "timeout": DEFAULT_TIMEOUT, "url": None, "token": None, "config": None}
            options.update(obj.get("options", {}))
            obj["on_command"](lambda ctx: f(ctx, **given), SimpleNamespace(**options, **given))

        cmd = click.command(
            name,
            cls=Command,
            help=help_text,
            short_help=help_text.split(". ")[0].rstrip("."),
            epilog=epilog,
            context_settings=CONTEXT_SETTINGS,
        )(callback)
        return add_global_options(cmd, with_token)

    return decorate


def group(name, help_text, epilog=None):
    """A command group that takes the global options too (`projects --json list`)."""

    def callback(**given):
        remember_global_options(click.get_current_context().obj, given)

    made = Group(
        name,
        callback=callback,
        help=help_text,
        short_help=help_text.rstrip("."),
        epilog=epilog,
        context_settings=CONTEXT_SETTINGS,
    )
    return add_global_options(made)
