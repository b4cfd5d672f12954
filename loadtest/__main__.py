"""``python -m loadtest``: the same as ``riskscore-loadtest``."""

from loadtest.cli import main

raise SystemExit(main())
