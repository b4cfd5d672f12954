"""What lists and rules cost a decision: 20 rules and the four list lookups, per payment.

    python -m service.benchmarks.rules_bench [--payments 20000] [--list-size 10000] [--json OUT]

Replays simulated payments with their feature vectors (the shipped model's features,
computed by the offline engine from the same definitions the service uses) and its
scores, and times the step the scorer adds after the model, per payment: the four list
lookups, the feature values as a list and the 20 rules, and the reasons' JSON when
something fired (``service/decisions.py`` does exactly this). Reports median and p99 in
microseconds with the share of payments on which a list or a rule acted, and the same
step without rules (lookups in lists of ``--list-size`` entries each) for comparison.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from datetime import date
from pathlib import Path
from typing import Any

from explain.decision import with_overrides
from features.data import frame_from_pandas
from features.definitions import DEFAULT_FEATURES
from features.offline import compute_features
from features.simulator import SimulationConfig, simulate
from loadtest.durations import summary_ms
from models.artifact_paths import default_artifact_dir
from models.fast import FastModel
from models.rules.lists import LIST_NAMES, ListEntryChange, ListState
from models.rules.policy import Policy
from models.rules.ruleset import RuleSet

TARGET_US = 50.0

# Twenty rules of the shapes fraud teams write: thresholds on amounts and windows, ratios,
# membership, a score band, conjunctions and disjunctions.
RULES = """\
big_risky_terminal: amount > 5000 and TERMINAL_ID_RISK_7DAY_WINDOW > 0.2 -> review
very_big: amount >= 20000 -> decline
night_large: TX_DURING_NIGHT > 0.5 and amount > 1000 -> review
burst_1day: CUSTOMER_ID_NB_TX_1DAY_WINDOW >= 12 -> review
amount_spike_30d: CUSTOMER_ID_AMOUNT_TO_MEAN_30DAY_WINDOW > 8 -> review
amount_z: CUSTOMER_ID_AMOUNT_ZSCORE_30DAY_WINDOW > 6 and amount > 300 -> review
terminal_risk_1d: TERMINAL_ID_RISK_1DAY_WINDOW > 0.5 -> decline
risk_30d: TERMINAL_ID_RISK_30DAY_WINDOW > 0.3 and TERMINAL_ID_NB_TX_30DAY_WINDOW > 20 -> review
rapid_repeat: CUSTOMER_ID_SECONDS_SINCE_PREVIOUS < 5 and amount > 200 -> review
terminal_burst: TERMINAL_ID_NB_TX_1HOUR_LIVE_WINDOW > 40 -> review
new_pair_large: CUSTOMER_TERMINAL_NB_TX_30DAY_WINDOW < 1 and amount > 2500 -> review
avg_jump_7d: amount > 4 * CUSTOMER_ID_AVG_AMOUNT_7DAY_WINDOW and amount > 500 -> review
weekend_night: TX_DURING_WEEKEND > 0.5 and TX_DURING_NIGHT > 0.5 and amount > 3000 -> review
score_band: score > 0.2 and score < 0.25 and amount > 800 -> review
watch_terminals: terminal_id in ("T-WATCH-1", "T-WATCH-2", "T-WATCH-3") -> review
watch_customers: customer_id in ("C-WATCH-1", "C-WATCH-2") -> review
foreign_large: currency != "" and amount > 1000 -> review
risk_2d_21d: TERMINAL_ID_RISK_2DAY_WINDOW > 0.4 or TERMINAL_ID_RISK_21DAY_WINDOW > 0.5 -> review
terminal_avg_jump: amount > 10 * TERMINAL_ID_AVG_AMOUNT_1DAY_LIVE_WINDOW and amount > 1000 -> review
quiet_customer_big: CUSTOMER_ID_NB_TX_30DAY_WINDOW < 2 and amount > 3000 -> review
"""


def _payments(count: int, model: FastModel) -> dict[str, Any]:
    config = SimulationConfig(
        customers=1500,
        terminals=3000,
        days=max(35, count // 3500 + 30),
        start=date(2025, 1, 1),
        seed=7,
    )
    frame = frame_from_pandas(simulate(config), source="simulated")
    frame = frame.take(slice(max(0, len(frame) - count), len(frame)))
    names = [d.name for d in DEFAULT_FEATURES]
    matrix = compute_features(frame)[:, [names.index(n) for n in model.feature_names]]
    return {
        "customers": [str(c) for c in frame.customer_id.tolist()],
        "terminals": [str(t) for t in frame.terminal_id.tolist()],
        "amounts": frame.amount.tolist(),
        "values": list(matrix),
        "scores": model.predict_proba(matrix).tolist(),
    }


def _listed(size: int, payments: dict[str, Any]) -> ListState:
    """``size`` entries a list, a few of them customers and terminals that do pay."""
    changes = []
    for name in LIST_NAMES:
        real = payments["customers"] if "customers" in name else payments["terminals"]
        values = [f"{name}-{i}" for i in range(size - 3)] + list(dict.fromkeys(real))[:3]
        changes += [(name, v) for v in values]
    return ListState().applied(
        ListEntryChange(i, name, value, "add", "bench", "bench", 0)
        for i, (name, value) in enumerate(changes, start=1)
    )


def _time(policy: Policy, payments: dict[str, Any], model: FastModel) -> tuple[list[float], int]:
    names = model.feature_names
    thresholds = model.thresholds
    durations = []
    acted = 0
    reasons_json = (
        b'[{"code":"TX_AMOUNT","value":1.0,"contribution":0.1,"direction":"raises","text":"x"}]'
    )
    clock = time.perf_counter
    rows = zip(
        payments["customers"],
        payments["terminals"],
        payments["amounts"],
        payments["scores"],
        payments["values"],
        strict=True,
    )
    for customer, terminal, amount, score, values in rows:
        action = thresholds.action(score)
        started = clock()
        # As build_decision: the policy, then the reasons' JSON when it acted.
        verdict = policy.decide(customer, terminal, amount, None, score, names, values, action)
        if verdict is not None:
            with_overrides(reasons_json, verdict.overrides)
        durations.append(clock() - started)
        acted += verdict is not None
    return durations, acted


def measure(count: int, list_size: int) -> dict[str, Any]:
    model = FastModel.load(default_artifact_dir())
    payments = _payments(count, model)
    lists = _listed(list_size, payments)
    rules = RuleSet.parse(RULES, "rules_bench")
    assert len(rules.rules) == 20
    with_rules = Policy(rules, lists)
    lists_only = Policy(None, lists)
    with_rules.check(model.feature_names)
    _time(with_rules, payments, model)  # warm: the compiled rules, caches
    gc.collect()
    gc.disable()  # a collection inside a timed call would be the collector's cost
    try:
        timed, acted = _time(with_rules, payments, model)
        baseline, _ = _time(lists_only, payments, model)
    finally:
        gc.enable()
    us = {k: v * 1000.0 for k, v in summary_ms(timed).items() if k != "n"}
    base_us = {k: v * 1000.0 for k, v in summary_ms(baseline).items() if k != "n"}
    return {
        "payments": len(timed),
        "rules": len(rules.rules),
        "list_entries_each": list_size,
        "acted_share": acted / len(timed),
        "rules_and_lists_us": {k.replace("_ms", "_us"): round(v, 2) for k, v in us.items()},
        "lists_only_us": {k.replace("_ms", "_us"): round(v, 2) for k, v in base_us.items()},
        "target_us": TARGET_US,
        "within_target": us["p99_ms"] <= TARGET_US,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.benchmarks.rules_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--payments", type=int, default=20_000, help="payments to time")
    parser.add_argument("--list-size", type=int, default=10_000, help="entries in each list")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    if args.payments < 100 or args.list_size < 3:
        parser.error("--payments must be at least 100 and --list-size at least 3")
    result = measure(args.payments, args.list_size)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
