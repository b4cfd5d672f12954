"""`riskscore evaluate`: the fast model under the handbook's prequential protocol."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from features.data import DataError, TransactionFrame, load_transactions
from features.definitions import DEFAULT_FEATURES
from models.baselines import HANDBOOK_BASELINES
from models.config import FastModelConfig
from models.evaluation import (
    METRICS,
    PROTOCOLS,
    CoverageError,
    EvaluationProtocol,
    EvaluationResult,
    FoldResult,
    PreparedHistory,
    Training,
    evaluate_prepared,
    get_protocol,
    prepare,
)
from service.cli.arguments import add_history_argument
from service.cli.errors import UserError

if TYPE_CHECKING:  # torch is imported only when --cascade runs
    from models.cascade_evaluation import CascadeEvaluation, CascadeFold


def _starts(name: str) -> str:
    return ", ".join(start.isoformat() for start in PROTOCOLS[name].fold_starts)


DESCRIPTION = f"""\
Evaluate the fast path (LightGBM, default configuration) with the handbook's prequential
protocol, so its numbers compare with the handbook's published ones.

Each fold is named by its first training day S: train on days S..S+6, skip the delay
week S+7..S+13 (its labels are not known yet), assess on S+14..S+20. On assessment day
S+14+k, cards with a fraud on any day S..S+6+k are already known to be compromised and
are left out. Metrics per fold: ROC AUC, average precision (over transactions) and Card
Precision@100 (per day, the share of fraudulent cards among the 100 highest-scored
cards; mean over days). Early stopping holds out the last training days and then refits
on the whole training week: nothing outside the training week is used.

Protocols (fold starts S):
  handbook-validation  {_starts("handbook-validation")}
                       (assessment weeks 2018-07-04..2018-07-31) -- choose models here
  handbook-test        {_starts("handbook-test")}
                       (assessment weeks 2018-08-08..2018-09-04) -- needs data to 2018-09-04

The data must also hold the feature warm-up before the first training day (longest
window plus its label delay); a protocol whose days are missing fails before any work.

The table also shows the handbook's published baselines. Those are TEST-fold figures:
compare a handbook-test run with them; a validation run covers other weeks.

Example:
  riskscore evaluate --data transactions.csv.gz --protocol handbook-validation \\
      --json validation.json"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate the fast model with the handbook's prequential protocol",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_history_argument(parser)
    parser.add_argument(
        "--protocol",
        choices=sorted(PROTOCOLS),
        default="handbook-validation",
        help="which folds to run (default: %(default)s)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        metavar="OUT",
        help="also write the results as JSON (means, stds and per-fold values)",
    )
    parser.add_argument(
        "--all-history",
        action="store_true",
        help=(
            "train each fold on every labelled day up to S+6 instead of only S..S+6; "
            "this is not the handbook's protocol and is reported under another name"
        ),
    )
    parser.add_argument(
        "--cascade",
        action="store_true",
        help=(
            "also train, per fold, the sequence teacher and the distilled student and "
            "report fast, teacher, student and cascade side by side, with metrics inside "
            "the band, escalated share, student/teacher AP retention and latencies "
            "(needs torch: pip install -e '.[train]'; minutes per fold)"
        ),
    )
    parser.add_argument(
        "--sequence-epochs",
        type=int,
        default=None,
        metavar="N",
        help="with --cascade: most epochs for teacher and student (default: the shipped ones)",
    )
    parser.add_argument(
        "--sequence-threads",
        type=int,
        default=None,
        metavar="N",
        help="with --cascade: torch threads for training (default: 2; 1 leaves a core free)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    training = Training.ALL_HISTORY if args.all_history else Training.WEEK
    protocol = get_protocol(args.protocol, training)
    if args.json is not None and not args.json.parent.is_dir():
        # Fail now rather than after minutes of training.
        raise UserError(f"--json: directory {str(args.json.parent)!r} does not exist")
    try:
        history = load_transactions(args.data)
        with _bar(len(DEFAULT_FEATURES), "features", "feature") as features_bar:

            def advance(step: int) -> None:
                features_bar.update(step)

            prepared = prepare(history, protocol, DEFAULT_FEATURES, progress=advance)
    except (DataError, CoverageError) as exc:
        raise UserError(str(exc)) from exc

    if args.cascade:
        return _run_cascade(args, history, prepared, protocol)
    with _bar(len(protocol.fold_starts), "folds", "fold") as bar:

        def on_fold(result: FoldResult) -> None:
            bar.set_postfix_str(f"{result.fold.start} AP {result.ap:.3f}")
            bar.update(1)

        result = evaluate_prepared(prepared, protocol, FastModelConfig(), on_fold=on_fold)

    print(report(result))
    _write_json(args.json, result.to_json())
    return 0


def _run_cascade(
    args: argparse.Namespace,
    history: TransactionFrame,
    prepared: PreparedHistory,
    protocol: EvaluationProtocol,
) -> int:
    try:
        from models.cascade_evaluation import evaluate_cascade
        from models.train.sequence_trainer import SequenceTrainingConfig
    except ImportError as exc:
        raise UserError(
            f"--cascade trains the sequence models and needs torch ({exc}); "
            "install it with: pip install -e '.[train]'"
        ) from None
    config = SequenceTrainingConfig()
    if args.sequence_epochs is not None:
        if args.sequence_epochs < 1:
            raise UserError("--sequence-epochs must be at least 1")
        config = replace(
            config, teacher_epochs=args.sequence_epochs, student_epochs=args.sequence_epochs
        )
    if args.sequence_threads is not None:
        if args.sequence_threads < 1:
            raise UserError("--sequence-threads must be at least 1")
        config = replace(config, threads=args.sequence_threads)
    # Each fold's line as soon as it is known: a run of folds takes tens of minutes.
    print(CASCADE_HEADER, flush=True)
    evaluation = evaluate_cascade(
        history,
        prepared,
        protocol,
        FastModelConfig(),
        config,
        on_fold=lambda fold: print(cascade_line(fold), flush=True),
    )
    print()
    print(report(evaluation.result))
    print()
    print(cascade_report(evaluation))
    _write_json(args.json, evaluation.to_json())
    return 0


CASCADE_HEADER = (
    "cascade per fold: AP over all assessed payments, fast vs cascade (gain, gain per share "
    "escalated); the guard's verdict on its own day; share escalated as shipped\n"
    f"{'fold start':<12}{'fast AP':>9}{'cascade AP':>12}{'gain':>9}{'per share':>11}"
    f"{'in-band fast':>14}{'in-band casc.':>15}{'escalated':>11}  guard"
)


def cascade_line(fold: CascadeFold) -> str:
    """One fold of :data:`CASCADE_HEADER`'s table."""
    guard = fold.guard
    verdict = (
        f"{guard['verdict']} (lift {guard['average_precision_lift']:+.4f}, "
        f"lower bound {guard['lift_lower_bound']:+.4f})"
    )
    return (
        f"{fold.fold.start!s:<12}{fold.ap['fast']:>9.4f}{fold.ap['cascade']:>12.4f}"
        f"{fold.ap_gain:>+9.4f}{fold.ap_gain_per_share:>+11.3f}"
        f"{fold.in_band['fast']['ap']:>14.3f}{fold.in_band['cascade']['ap']:>15.3f}"
        f"{fold.escalated_share:>11.4f}  {verdict}"
    )


def cascade_report(evaluation: CascadeEvaluation) -> str:
    """Per fold: the cascade's table, then AP inside the fitted band per model, retention,
    latency."""
    lines = [
        CASCADE_HEADER,
        *(cascade_line(fold) for fold in evaluation.folds),
        "",
        "inside the fitted band (per fold, open or not): its share, frauds, AP of each model",
        f"{'fold start':<12}{'band':<18}{'share':>8}{'frauds':>8}"
        + "".join(f"{m + ' AP':>12}" for m in ("fast", "teacher", "student", "cascade"))
        + f"{'retention':>11}",
    ]
    for fold in evaluation.folds:
        aps = "".join(
            f"{fold.in_band[m]['ap']:>12.3f}" for m in ("fast", "teacher", "student", "cascade")
        )
        band = f"[{fold.band[0]:g}, {fold.band[1]:g})"
        lines.append(
            f"{fold.fold.start!s:<12}{band:<18}{fold.escalated_share:>8.3f}"
            f"{fold.in_band_frauds:>8}{aps}{fold.ap_retention:>11.3f}"
        )
    lines += ["", "latency, ms per call in ONNX Runtime, one thread (p50 / p99), last fold:"]
    latency = evaluation.folds[-1].latency_ms
    for name in ("teacher_single", "teacher_batch32", "student_single", "student_batch32"):
        lines.append(f"  {name:<18}{latency[name + '_p50']:>8.3f} / {latency[name + '_p99']:.3f}")
    return "\n".join(lines)


def _write_json(path: Path | None, data: dict[str, object]) -> None:
    if path is None:
        return
    try:
        path.write_text(json.dumps(data, indent=2) + "\n")
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc}") from exc


def _bar(total: int, desc: str, unit: str) -> tqdm:
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False)


def report(result: EvaluationResult) -> str:
    """Per-fold and mean ± std table per model, then the handbook's baselines beside them."""
    protocol = result.protocol
    if protocol.training is Training.ALL_HISTORY:
        lines = [
            f"protocol {protocol.label}: train on every day up to S+6, delay 7 days, assess 7 days",
            "  (a variant, NOT the handbook's protocol: the handbook trains on S..S+6 only)",
        ]
    else:
        lines = [f"protocol {protocol.label}: train 7 days, delay 7 days, assess 7 days"]
    for name, model in result.models.items():
        lines += ["", f"model {name}", _fold_header()]
        lines += [_fold_row(fold) for fold in model.folds]
        summary = model.summary()
        means = [summary[m].format() for m in METRICS]
        lines.append(_row(["mean ± std", "", "", "", "", ""], means))
    lines.append(
        "(CP@100 max: a perfect ranking's CP@100 -- a day rarely has 100 compromised cards)"
    )
    lines += ["", *_comparison(result)]
    return "\n".join(lines)


_FOLD_COLUMNS = ("fold start", "assessment", "assessed", "frauds", "removed", "trees")
_WIDTHS = (12, 24, 10, 8, 9, 7)
_METRIC_TITLES = ("AUC", "AP", "CP@100")


def _fold_header() -> str:
    return _row(list(_FOLD_COLUMNS), list(_METRIC_TITLES)) + "  CP@100 max"


def _fold_row(fold: FoldResult) -> str:
    cells = [
        str(fold.fold.start),
        f"{fold.fold.assessment_first}..{fold.fold.assessment_last}",
        f"{fold.assessed_rows:,}",
        f"{fold.assessed_frauds:,}",
        f"{fold.removed_rows:,}",
        str(fold.trees),
    ]
    values = [f"{fold.metric(m):.3f}" for m in METRICS]
    # A perfect ranking's CP@100: there are rarely 100 compromised cards a day to find.
    return f"{_row(cells, values)}  {fold.cp_at_100_ceiling:10.3f}"


def _row(cells: list[str], values: list[str]) -> str:
    text = "".join(f"{cell:<{w}}" for cell, w in zip(cells, _WIDTHS, strict=True))
    return text + "".join(f"{value:>14}" for value in values)


def _comparison(result: EvaluationResult) -> list[str]:
    label = result.protocol.label
    lines = [
        "side by side (mean ± std over 4 folds); the handbook's rows are its published "
        "TEST-fold figures",
        f"{'model':<30}{'folds':<36}" + "".join(f"{m:>14}" for m in _METRIC_TITLES),
    ]
    for name, model in result.models.items():
        summary = model.summary()
        cells = "".join(f"{summary[m].format():>14}" for m in METRICS)
        lines.append(f"{'riskscore ' + name:<30}{label + ' (this run)':<36}{cells}")
    for baseline in HANDBOOK_BASELINES:
        # The handbook publishes stds to 2 decimals; a third would be invented.
        cells = "".join(f"{baseline.metric(m).format(std_digits=2):>14}" for m in METRICS)
        lines.append(f"{'handbook ' + baseline.model:<30}{'handbook-test (published)':<36}{cells}")
    return lines
