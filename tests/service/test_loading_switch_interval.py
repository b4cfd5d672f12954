"""The GIL's switch interval while versions load: short during any load, the process's
own again once the last overlapping load has ended."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from service.model_promotion import LOADING_SWITCH_INTERVAL_S, _short_gil_turns

OWN = 0.004


@pytest.fixture(autouse=True)
def own_interval() -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(OWN)
    yield
    sys.setswitchinterval(before)


def test_overlapping_loads_restore_the_interval_only_when_the_last_one_ends() -> None:
    first, second = _short_gil_turns(), _short_gil_turns()
    first.__enter__()
    second.__enter__()  # starts while the first is loading
    assert sys.getswitchinterval() == pytest.approx(LOADING_SWITCH_INTERVAL_S)
    first.__exit__(None, None, None)  # ends first: the second is still loading
    assert sys.getswitchinterval() == pytest.approx(LOADING_SWITCH_INTERVAL_S)
    second.__exit__(None, None, None)
    assert sys.getswitchinterval() == pytest.approx(OWN)


def test_a_failing_load_restores_it_too() -> None:
    with pytest.raises(ValueError), _short_gil_turns():
        raise ValueError("load failed")
    assert sys.getswitchinterval() == pytest.approx(OWN)
