"""`riskscore rules check`: a rule file checked as `riskscore serve` would load it, before
a restart puts it in force."""

from __future__ import annotations

import argparse
from pathlib import Path

from models.errors import ArtifactError
from models.fast import FastModel
from models.rules.ruleset import RuleSet
from models.rules.syntax import RuleSyntaxError
from service.cli.errors import UserError, load_settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "rules",
        help="check a rule file against the model before serving it",
        description="Rules acting after the model (RISKSCORE_RULES_FILE; README: Operating "
        "models, rules and lists).",
    )
    commands = parser.add_subparsers(dest="rules_command", required=True, metavar="ACTION")
    check = commands.add_parser(
        "check",
        help="parse a rule file and check its names against the model",
        description="Parse FILE (default: RISKSCORE_RULES_FILE) and check every name against "
        "the model of RISKSCORE_MODEL_DIR, as serve does at start; print each rule and the "
        "rule set's version, or the first error with its line and column (exit status 2).",
    )
    check.add_argument("file", type=Path, nargs="?", metavar="FILE", help="the rule file")
    check.set_defaults(run=run_check)


def run_check(args: argparse.Namespace) -> int:
    settings = load_settings()
    path = args.file or settings.rules.rules_file
    if path is None:
        raise UserError("no rule file: give FILE or set RISKSCORE_RULES_FILE")
    try:
        model = FastModel.load(settings.scoring.artifact_dir)
    except ArtifactError as exc:
        raise UserError(f"cannot load the model: {exc}") from exc
    try:
        rules = RuleSet.load(path)
        rules.compiled(model.feature_names)
    except RuleSyntaxError as exc:
        raise UserError(str(exc)) from exc
    for rule in rules.rules:
        print(f"{rule.name}: {rule.text} -> {rule.action}")
    print(f"{len(rules.rules)} rules, version {rules.version}, model {model.version}")
    return 0
