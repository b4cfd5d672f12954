"""The `riskscore-loadtest` console script: the load generator, or one line saying how to
install it.

`make run` installs riskscore with its runtime dependencies only, which already include
uvloop (the service's event loop, and the load generator's) and matplotlib; the load
generator's HDR histograms (``hdrh``) and C HTTP parser (``httptools``) come with the
``loadtest`` extra. Without them the installed command would die with a traceback; it
names the extra instead.
"""

from __future__ import annotations

import sys

PROG = "riskscore-loadtest"
# Modules of the `loadtest` extra (pyproject.toml) that the runtime dependencies lack.
EXTRA_MODULES = frozenset({"hdrh", "httptools"})
INSTALL_HINT = f"{PROG} needs the loadtest extra: pip install -e '.[loadtest]'"


def main(argv: list[str] | None = None) -> int:
    try:
        from loadtest.cli import main as run
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing not in EXTRA_MODULES:
            raise
        print(f"{INSTALL_HINT} (missing module {missing!r})", file=sys.stderr)
        return 2
    return run(argv)


if __name__ == "__main__":
    raise SystemExit(main())
