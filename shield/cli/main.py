"""The root of the command line: the command groups, and one-line errors with exit codes."""

import sys

import click

from . import assets, keys, projects, purge, sign, stats, warm
from .client import Context, Failure, UsageError
from .options import CONTEXT_SETTINGS, PROG, Group, add_global_options, remember_global_options


@click.group(
    cls=Group,
    help="Operate a running shield: purge the cache, read stats, manage projects, keys and assets, "
    "upload images, sign URLs and warm the cache.",
    epilog="Run 'python -m shield <command> --help' for a command's options. Reference: docs/cli.md",
    context_settings=CONTEXT_SETTINGS,
)
def root(**given):
    remember_global_options(click.get_current_context().obj, given)


add_global_options(root)
for _command in (
    purge.purge,
    stats.stats,
    projects.projects,
    keys.keys,
    assets.assets,
    assets.upload,
    sign.sign,
    warm.warm,
):
    root.add_command(_command)


def _run(argv, on_command):
    """Parse `argv` and hand the chosen command and its resolved options to on_command."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        raise click.UsageError(
            "a command is required: purge, stats, projects, keys, assets, upload, sign or warm"
        )
    with root.make_context(PROG, args, obj={"on_command": on_command}) as ctx:
        root.invoke(ctx)


def parse_args(argv):
    """The options a command line resolves to, without running it."""
    parsed = []
    _run(argv, lambda run, args: parsed.append(args))
    return parsed[0]


def main(argv=None, stdout=None, stderr=None):
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        _run(argv, lambda run, args: run(Context(args, stdout, stderr)))
    except click.exceptions.Exit as exc:  # --help
        raise SystemExit(exc.exit_code) from None
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else PROG
        print(f"shield: error: {exc.format_message()} (see {where} --help)", file=stderr)
        return 2
    except UsageError as exc:
        print(f"shield: error: {exc}", file=stderr)
        return 2
    except Failure as exc:
        print(f"shield: error: {exc}", file=stderr)
        return 1
    except (KeyboardInterrupt, click.Abort):
        print("shield: interrupted", file=stderr)
        return 130
    except BrokenPipeError:
        return 1
    return 0
