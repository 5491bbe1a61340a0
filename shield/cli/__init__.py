"""The operator command line, `python -m shield <command> ...` (docs/cli.md).

purge, stats and projects talk to the /v1 admin API of a running shield; sign
works offline from the configuration; warm fetches a list of URLs through the
running server. Exit codes: 0 success, 1 the server answered an error (or
could not be reached, or a warmed URL failed), 2 a usage or configuration error.
"""
