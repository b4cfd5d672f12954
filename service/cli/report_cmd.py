"""`riskscore report`: compliance exports and period reports straight from the audit store."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from tqdm import tqdm

from explain.audit.store import AuditStore, AuditStoreError
from explain.records import DecisionRecord
from explain.reports.challenger_page import challenger_page
from explain.reports.challenger_source import read_comparison
from explain.reports.export import FORMATS, export_lines
from explain.reports.html import decision_page
from explain.reports.pdf import PdfUnavailable, to_pdf
from explain.reports.period_page import summary_page
from explain.reports.query import ChallengerPeriod, DecisionFilter, ListFilter, iter_pages
from explain.reports.summary import summarize
from features.card_numbers import REFUSAL, CardNumberRefused
from features.schema import validation_problems
from models.errors import ArtifactError
from models.train.label_policy import DEFAULT_LABEL_DELAY_DAYS
from models.versions import manifest_for
from service.cli.audit_cmd import audit_file_option, open_store
from service.cli.errors import UserError, load_settings

M = TypeVar("M", bound=BaseModel)

DESCRIPTION = """\
Compliance reports read from the audit store (the file `riskscore serve` writes), without
a running service. Exports and summaries stream the store page by page, so memory stays
bounded however long the period.

  export   one row per decision (score, action, stage, fallback, model version, top
           reasons, every SHAP value as JSON), as CSV or JSON Lines, newest first
  summary  a self-contained HTML page (or, with --pdf, a PDF to file): decisions by
           action and stage, per day (per hour for periods up to two days) decisions,
           decline/review/fallback rates, labelled fraud, precision of declines and
           p50/p99 latency, score histogram, top reasons, global feature importance,
           drift against the model's training window, and precision/recall of declines
           where labels have arrived. Its counts link to the service's decision list
           (decisions.html beside it when served at /reports/summary.html)
  challenger
           the champion against the shadow challenger on the same payments: average
           precision, precision and recall of declines on labelled decisions, decline
           rates, the agreement of actions, the largest score differences with both
           explanations (--version: which challenger, by default the one that scored
           most of the period)
  decision one decision's report (why it was taken: the SHAP waterfall, reasons in
           plain language, model, timings, labels), as HTML or, with --pdf, PDF

Times: a date (YYYY-MM-DD) covers that whole UTC day, so --to 2024-05-31 includes the
31st; a datetime (ISO 8601, UTC when it has no offset) is exact, --to exclusive.

Examples:
  riskscore report export --from 2024-05-01 --to 2024-05-31 --format csv --out may.csv
  riskscore report summary --from 2024-05-01 --to 2024-05-31 --out may.html
  riskscore report summary --from 2024-05-01 --to 2024-05-31 --pdf --out may.pdf
  riskscore report challenger --from 2024-05-01 --to 2024-05-31 --out challenger.html
  riskscore report decision tx-0001 --pdf --out tx-0001.pdf"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "report",
        help="compliance exports and period reports from the audit store",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="report_command", required=True, metavar="REPORT")
    export = commands.add_parser(
        "export",
        help="decisions as CSV or JSON Lines",
        description="Write one row per decision of the period (newest first) to --out.",
    )
    _common(export)
    export.add_argument("--format", choices=FORMATS, default="csv", help="default: %(default)s")
    export.add_argument("--action", choices=("approve", "review", "decline"))
    export.add_argument("--customer-id", metavar="ID")
    export.add_argument("--min-score", type=float, metavar="P", help="scores >= P only")
    export.add_argument("--stage", choices=("fast", "sequence"))
    export.add_argument("--fallback", choices=("true", "false"))
    export.add_argument("--reason", metavar="CODE", help="with this reason code among the top")
    export.set_defaults(run=run_export)
    summary = commands.add_parser(
        "summary",
        help="a period's HTML report",
        description="Write the period's self-contained HTML report to --out.",
    )
    _common(summary)
    summary.add_argument(
        "--model-dir",
        type=Path,
        metavar="DIR",
        help="artifact whose training window drift is measured against "
        "(default: RISKSCORE_MODEL_DIR, else the shipped model)",
    )
    summary.add_argument("--pdf", action="store_true", help="write a PDF instead of HTML")
    summary.set_defaults(run=run_summary)
    challenger = commands.add_parser(
        "challenger",
        help="the champion against the shadow challenger",
        description="Write the period's challenger report (HTML, or PDF with --pdf) to --out.",
    )
    _common(challenger)
    challenger.add_argument(
        "--version",
        metavar="VERSION",
        help="the challenger's model version (default: the one that scored most decisions)",
    )
    challenger.add_argument(
        "--label-delay-days",
        metavar="DAYS",
        help="an unlabelled payment not declined counts as legitimate once this many days "
        f"have passed (default {DEFAULT_LABEL_DELAY_DAYS}, as train --from-store)",
    )
    challenger.add_argument("--pdf", action="store_true", help="write a PDF instead of HTML")
    challenger.set_defaults(run=run_challenger)
    decision = commands.add_parser(
        "decision",
        help="one decision's report",
        description="Write one decision's report (HTML, or PDF with --pdf) to --out.",
    )
    decision.add_argument("transaction_id", metavar="TRANSACTION_ID")
    decision.add_argument("--out", type=Path, required=True, metavar="FILE", help="output file")
    decision.add_argument("--pdf", action="store_true", help="write a PDF instead of HTML")
    audit_file_option(decision)
    decision.add_argument(
        "--model-dir",
        type=Path,
        metavar="DIR",
        help="artifact whose checksums are shown (default: RISKSCORE_MODEL_DIR, else shipped)",
    )
    decision.set_defaults(run=run_decision)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="start", metavar="WHEN", help="period start (inclusive)")
    parser.add_argument("--to", dest="end", metavar="WHEN", help="period end (see above)")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE", help="output file")
    audit_file_option(parser)


def _selection(args: argparse.Namespace) -> DecisionFilter:
    fields: dict[str, Any] = {"from": args.start, "to": args.end}
    for name in ("action", "customer_id", "min_score", "stage", "fallback", "reason"):
        fields[name] = getattr(args, name, None)
    if fields["customer_id"] is not None:
        fields["customer_id"] = _screened(fields["customer_id"], "--customer-id")
    model = ListFilter if args.report_command == "export" else DecisionFilter
    return _validated(model, fields)


def _validated(model: type[M], fields: dict[str, Any]) -> M:
    try:
        return model.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        # Named as the options are: --from, --to, --action ... (the order rule: --from).
        problems = validation_problems(exc, whole="from")
        options = [(f"--{field.replace('_', '-')}", message) for field, message in problems]
        raise UserError("; ".join(f"{option}: {message}" for option, message in options)) from None


def _open_store(args: argparse.Namespace) -> AuditStore:
    if not args.out.parent.is_dir():
        raise UserError(f"--out: directory {str(args.out.parent)!r} does not exist")
    return open_store(load_settings(), args.audit_file)


def _progress() -> tqdm:
    return tqdm(desc="decisions", unit=" decisions", file=sys.stderr, leave=False)


def _counted(pages: Iterable[list[DecisionRecord]], bar: tqdm) -> Iterator[list[DecisionRecord]]:
    for page in pages:
        yield page
        bar.update(len(page))


def run_export(args: argparse.Namespace) -> int:
    selection = _selection(args)
    rows = 0
    with closing(_open_store(args)) as store, _progress() as bar:
        try:
            with args.out.open("w", encoding="utf-8", newline="") as out:
                pages = _counted(iter_pages(store, selection), bar)
                for lines in export_lines(pages, args.format):
                    out.writelines(lines)
                    rows += len(lines)
        except (AuditStoreError, OSError) as exc:
            raise UserError(str(exc)) from exc
    if args.format == "csv":
        rows -= 1  # the header
    print(f"{rows} decisions -> {args.out}")
    return 0


def run_summary(args: argparse.Namespace) -> int:
    selection = _selection(args)
    artifact = args.model_dir or load_settings().scoring.artifact_dir
    try:
        manifest = manifest_for(artifact)  # with a directory of versions: the champion's
    except ArtifactError as exc:
        raise UserError(f"cannot read the model manifest: {exc}") from exc
    with closing(_open_store(args)) as store, _progress() as bar:
        try:
            summary = summarize(store, selection, manifest.feature_distributions, bar.update)
            _write(args, summary_page(summary, selection, manifest))
        except (AuditStoreError, OSError) as exc:
            raise UserError(str(exc)) from exc
    print(f"{summary.total} decisions summarised -> {args.out}")
    return 0


def run_challenger(args: argparse.Namespace) -> int:
    period = _validated(
        ChallengerPeriod,
        {
            "from": args.start,
            "to": args.end,
            "version": args.version,
            "label_delay_days": args.label_delay_days,
        },
    )
    with closing(_open_store(args)) as store, _progress() as bar:
        try:
            reading = read_comparison(store, period, on_rows=bar.update)
            _write(args, challenger_page(reading.comparison, period, reading.versions))
        except (AuditStoreError, OSError) as exc:
            raise UserError(str(exc)) from exc
    result = reading.comparison
    print(
        f"challenger {result.version or 'none'}: {result.shadowed} of {result.decisions} "
        f"decisions compared -> {args.out}"
    )
    return 0


def _write(args: argparse.Namespace, page: str) -> None:
    if args.pdf:
        try:
            args.out.write_bytes(to_pdf(page))
        except PdfUnavailable as exc:
            raise UserError(str(exc)) from None
    else:
        args.out.write_text(page, encoding="utf-8")


def _screened(value: str, option: str) -> str:
    """An id given on the command line, under the card-number policy as the API applies
    it: refused, or its card number as the token the decisions are stored under."""
    try:
        return load_settings().card_numbers.card_number_policy().screen(value)
    except CardNumberRefused:
        raise UserError(f"{option}: {REFUSAL}") from None


def run_decision(args: argparse.Namespace) -> int:
    args.transaction_id = _screened(args.transaction_id, "TRANSACTION_ID")
    artifact = args.model_dir or load_settings().scoring.artifact_dir
    with closing(_open_store(args)) as store:
        try:
            record = store.get(args.transaction_id)
            if record is None:
                raise UserError(f"no decision recorded for transaction {args.transaction_id!r}")
            try:
                # With a directory of versions: the manifest of the version that decided.
                manifest = manifest_for(artifact, record.model_version)
            except ArtifactError:
                manifest = None  # the report says the checksum is in that artifact's manifest
            _write(args, decision_page(record, store.labels(args.transaction_id), manifest))
        except (AuditStoreError, OSError) as exc:
            raise UserError(str(exc)) from exc
    print(f"decision {args.transaction_id} -> {args.out}")
    return 0
