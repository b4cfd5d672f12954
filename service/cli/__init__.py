"""`riskscore` command line: one module per subcommand, each with `register()` and `run()`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from service.cli.errors import UserError

# Order is the order shown in --help: the natural first-run sequence. Modules are imported
# when needed: a command's own imports (LightGBM, pandas, the report renderer, Kafka...)
# cost seconds, and one command should not pay for all the others'.
COMMANDS: dict[str, str] = {
    "serve": "service.cli.serve_cmd",
    "consume": "service.cli.consume_cmd",
    "produce": "service.cli.produce_cmd",
    "tail": "service.cli.tail_cmd",
    "demo": "service.cli.demo_cmd",
    "simulate": "service.cli.simulate_cmd",
    "features": "service.cli.features_cmd",
    "train": "service.cli.train_cmd",
    "evaluate": "service.cli.evaluate_cmd",
    "bench": "service.cli.bench_cmd",
    "models": "service.cli.models_cmd",
    "report": "service.cli.report_cmd",
    "audit": "service.cli.audit_cmd",
    "lists": "service.cli.lists_cmd",
    "rules": "service.cli.rules_cmd",
    "state": "service.cli.state_cmd",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``only``, that command's part whole and the others as
    names (enough to parse a run of ``only``, without importing the others' modules)."""
    parser = argparse.ArgumentParser(
        prog="riskscore",
        description=(
            "Real-time payment risk scoring: a LightGBM fast path with exact SHAP reasons. "
            "Run a subcommand with --help for its options."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        if only is None or name == only:
            importlib.import_module(module).register(sub)
        else:
            sub.add_parser(name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else list(argv)
    # A command named first: only its module is imported. Anything else (no command,
    # --help, a typo) builds the whole parser, which lists every command.
    parser = build_parser(given[0] if given and given[0] in COMMANDS else None)
    args = parser.parse_args(given)
    try:
        return int(args.run(args) or 0)
    except UserError as exc:
        # Expected failures (bad file, uncovered dates) get one clear line, not a traceback.
        print(f"riskscore {args.command}: error: {exc}", file=sys.stderr)
        return 2


__all__ = ["UserError", "build_parser", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
