"""The feature list: the handbook's 15 exactly as published, ours documented and valid."""

from __future__ import annotations

from datetime import timedelta

import pytest

from features.definitions import (
    DEFAULT_FEATURES,
    HANDBOOK_FEATURES,
    Aggregation,
    Entity,
    FeatureDefinition,
)
from features.plan import compile_plan

DAY = timedelta(days=1)


def test_handbook_features_match_the_published_definitions() -> None:
    expected = {
        "TX_AMOUNT": (Entity.TRANSACTION, Aggregation.AMOUNT, None, timedelta(0)),
        "TX_DURING_WEEKEND": (Entity.TRANSACTION, Aggregation.IS_WEEKEND, None, timedelta(0)),
        "TX_DURING_NIGHT": (Entity.TRANSACTION, Aggregation.IS_NIGHT, None, timedelta(0)),
    }
    for days in (1, 7, 30):
        w = days * DAY
        expected[f"CUSTOMER_ID_NB_TX_{days}DAY_WINDOW"] = (
            Entity.CUSTOMER,
            Aggregation.COUNT,
            w,
            timedelta(0),
        )
        expected[f"CUSTOMER_ID_AVG_AMOUNT_{days}DAY_WINDOW"] = (
            Entity.CUSTOMER,
            Aggregation.MEAN_AMOUNT,
            w,
            timedelta(0),
        )
        expected[f"TERMINAL_ID_NB_TX_{days}DAY_WINDOW"] = (
            Entity.TERMINAL,
            Aggregation.COUNT,
            w,
            7 * DAY,
        )
        expected[f"TERMINAL_ID_RISK_{days}DAY_WINDOW"] = (
            Entity.TERMINAL,
            Aggregation.FRAUD_RATE,
            w,
            7 * DAY,
        )
    got = {d.name: (d.entity, d.aggregation, d.window, d.delay) for d in HANDBOOK_FEATURES}
    assert got == expected


def test_default_features_start_with_the_handbook_and_have_unique_names() -> None:
    assert DEFAULT_FEATURES[: len(HANDBOOK_FEATURES)] == HANDBOOK_FEATURES
    names = [d.name for d in DEFAULT_FEATURES]
    assert len(names) == len(set(names))
    assert len(DEFAULT_FEATURES) > len(HANDBOOK_FEATURES)


def test_every_feature_has_a_one_line_description() -> None:
    for d in DEFAULT_FEATURES:
        assert d.description.strip(), d.name
        assert "\n" not in d.description, d.name


def test_no_feature_reads_labels_without_a_delay() -> None:
    for d in DEFAULT_FEATURES:
        if d.uses_labels:
            assert d.delay > timedelta(0), d.name


@pytest.mark.parametrize(
    "kwargs",
    [
        # labels are unknown at transaction time
        dict(entity=Entity.TERMINAL, aggregation=Aggregation.FRAUD_RATE, window=DAY),
        # comparing with the current payment needs a window that ends now
        dict(entity=Entity.CUSTOMER, aggregation=Aggregation.AMOUNT_ZSCORE, window=DAY, delay=DAY),
        # a history feature needs a window
        dict(entity=Entity.CUSTOMER, aggregation=Aggregation.COUNT),
        # a transaction-level feature has none
        dict(entity=Entity.TRANSACTION, aggregation=Aggregation.AMOUNT, window=DAY),
        # the aggregation must fit the entity
        dict(entity=Entity.CUSTOMER, aggregation=Aggregation.IS_NIGHT, window=DAY),
    ],
)
def test_invalid_definitions_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        FeatureDefinition(name="X", description="x", **kwargs)


def test_plan_shares_one_window_between_features() -> None:
    plan = compile_plan(DEFAULT_FEATURES)
    specs = plan.specs[Entity.CUSTOMER]
    windows = [(s.window_ms, s.delay_ms) for s in specs]
    assert len(windows) == len(set(windows))
    count_7d = next(s for s in plan.slots if s.definition.name == "CUSTOMER_ID_NB_TX_7DAY_WINDOW")
    mean_7d = next(
        s for s in plan.slots if s.definition.name == "CUSTOMER_ID_AVG_AMOUNT_7DAY_WINDOW"
    )
    assert count_7d.spec == mean_7d.spec


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ValueError):
        compile_plan(HANDBOOK_FEATURES + HANDBOOK_FEATURES[:1])
