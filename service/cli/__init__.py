"""`riskscore` command line: one module per subcommand, each with `register()` and `run()`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from service.cli import (
    audit_cmd,
    bench_cmd,
    consume_cmd,
    demo_cmd,
    evaluate_cmd,
    features_cmd,
    lists_cmd,
    produce_cmd,
    report_cmd,
    rules_cmd,
    serve_cmd,
    simulate_cmd,
    state_cmd,
    tail_cmd,
    train_cmd,
)
from service.cli.errors import UserError

# Order is the order shown in --help: the natural first-run sequence.
COMMANDS: tuple[ModuleType, ...] = (
    serve_cmd,
    consume_cmd,
    produce_cmd,
    tail_cmd,
    demo_cmd,
    simulate_cmd,
    features_cmd,
    train_cmd,
    evaluate_cmd,
    bench_cmd,
    report_cmd,
    audit_cmd,
    lists_cmd,
    rules_cmd,
    state_cmd,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="riskscore",
        description=(
            "Real-time payment risk scoring: a LightGBM fast path with exact SHAP reasons. "
            "Run a subcommand with --help for its options."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except UserError as exc:
        # Expected failures (bad file, uncovered dates) get one clear line, not a traceback.
        print(f"riskscore {args.command}: error: {exc}", file=sys.stderr)
        return 2


__all__ = ["UserError", "build_parser", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
