"""`python -m shield ...`: the operator command line (see shield/cli/)."""

from shield.cli.main import main

raise SystemExit(main())
