"""`python -m service.cli` runs the `riskscore` command (for environments without the script)."""

from service.cli import main

raise SystemExit(main())
