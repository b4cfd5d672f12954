"""`riskscore state rebuild`: the online feature state refilled from the audit store."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tqdm import tqdm

from features.checkpoint import write_checkpoint
from features.online import OnlineFeatureEngine
from features.sequence import SequenceStore
from features.state import FeatureState, FeatureStateUnavailable
from service.checkpointing import CHECKPOINT_FILE
from service.cli.audit_cmd import audit_file_option, open_store
from service.cli.errors import UserError, load_settings
from service.settings import Settings

DESCRIPTION = """\
Refill the online feature state from the audit store: every stored payment any window
can still see (the longest window plus its delay, 37 days back from the latest one),
then their latest labels.

  memory (RISKSCORE_FEATURE_STATE_URL unset): writes the checkpoint that the next start
         of riskscore serve or consume loads (feature-state.checkpoint in
         RISKSCORE_DATA_DIR, or --out), so that start replays nothing before it. Run it
         while the service is stopped: a running one overwrites the file at shutdown.
  redis  (RISKSCORE_FEATURE_STATE_URL=redis://...): replays into Redis, for an empty or
         lost Redis; the customers' second-stage sequences too (unless
         RISKSCORE_SEQUENCE=off). Payments Redis still holds are refused by id and
         change nothing.

Examples:
  riskscore state rebuild
  RISKSCORE_FEATURE_STATE_URL=redis://redis:6379/0 riskscore state rebuild"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "state",
        help="rebuild the online feature state from the audit store",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="state_command", required=True, metavar="ACTION")
    rebuild = commands.add_parser(
        "rebuild",
        help="refill the feature state (memory: a checkpoint; redis: Redis itself)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rebuild.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="memory: the checkpoint to write (default: feature-state.checkpoint in "
        "RISKSCORE_DATA_DIR)",
    )
    audit_file_option(rebuild)
    rebuild.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: the composition root loads models, not needed for --help.
    from service.app import build_feature_state
    from service.warm_start import rebuild

    settings = load_settings()
    store = open_store(settings, args.audit_file)
    try:
        engine = build_feature_state(settings)
    except FeatureStateUnavailable as exc:
        store.close()
        raise UserError(f"cannot reach the feature state: {exc}") from None
    began = time.perf_counter()
    try:
        sequences = _sequences(settings, engine) if engine.persistent else None
        with tqdm(desc="payments", unit=" payments", file=sys.stderr, leave=False) as bar:
            replayed = rebuild(store, engine, sequences, bar.update, refill=True)
        if isinstance(engine, OnlineFeatureEngine):
            out = args.out or settings.data_dir / CHECKPOINT_FILE
            info = write_checkpoint(engine, out)
            where = f"checkpoint {out} ({info.size_bytes / 1e6:.1f} MB)"
        else:
            where = "Redis"
    except FeatureStateUnavailable as exc:
        raise UserError(f"the feature state failed: {exc}") from None
    finally:
        engine.close()
        store.close()
    print(f"{replayed} payments applied to the {where} in {time.perf_counter() - began:.1f} s")
    return 0


def _sequences(settings: Settings, engine: FeatureState) -> SequenceStore | None:
    """The customers' sequences beside a Redis state, shaped as the served model's."""
    if settings.sequence == "off":
        return None
    from models.sequence import SequenceModel
    from service.app import build_sequences

    return build_sequences(engine, SequenceModel.load(settings.second_stage.artifact_dir).spec)
