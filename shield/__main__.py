"""`python -m shield ...`: the operator command line (see shield/cli.py)."""

from shield.cli import main

raise SystemExit(main())
