"""Weights, write records and the in-memory router: the same safety rules as Istio."""

from __future__ import annotations

import pytest

from canary.errors import DriftError, InvalidWeights
from canary.traffic import Weights, WriteRecord
from canary.traffic.memory import MemoryRouter


@pytest.mark.parametrize(
    ("canary", "stable", "message"),
    [
        (10, 80, "must sum to 100"),
        (-5, 105, "within 0..100"),
        (10.0, 90, "must be an integer"),
        (True, 99, "must be an integer"),
    ],
)
def test_invalid_weights(canary: object, stable: object, message: str) -> None:
    with pytest.raises(InvalidWeights, match=message):
        Weights(canary, stable)  # type: ignore[arg-type]


def test_write_record_round_trips_and_bad_annotations_are_ignored() -> None:
    record = WriteRecord(Weights(20, 80), analysis="a-1", step=1, by="daemon")
    assert WriteRecord.from_json(record.to_json()) == record
    assert WriteRecord.from_json("not json") is None
    assert WriteRecord.from_json('{"canary": 30, "stable": 30}') is None  # not 100


async def test_memory_router_moves_rolls_back_and_detects_drift() -> None:
    router = MemoryRouter("checkout")
    assert (await router.get()).weights == Weights(0, 100)
    result = await router.set_weights(10, analysis="a", step=0)
    assert (result.before, result.after, result.changed) == (Weights(0, 100), Weights(10, 90), True)
    again = await router.set_weights(10, analysis="a", step=0)
    assert not again.changed and len(router.history) == 1  # a step is never applied twice

    router.external_set(50)  # someone else
    state = await router.get()
    assert state.drift
    with pytest.raises(DriftError, match="we last wrote canary=10 stable=90"):
        await router.set_weights(20, analysis="a", step=1)
    with pytest.raises(DriftError):
        await router.rollback(analysis="a", step=1)
    assert (await router.get()).weights == Weights(50, 50)

    rolled = await router.rollback(analysis="a", step=1, force=True)
    assert rolled.after == Weights(0, 100)
    assert not (await router.get()).drift


async def test_a_new_analysis_takes_over_from_a_previous_ones_final_weights() -> None:
    router = MemoryRouter("checkout")
    await router.set_weights(100, analysis="a-1", step=3)  # a-1 promoted
    router.external_set(0)  # the release process resets the route to stable
    with pytest.raises(DriftError):  # the same analysis, or an operator, sees drift
        await router.set_weights(50, analysis="a-1", step=4)
    with pytest.raises(DriftError):
        await router.set_weights(50)
    result = await router.set_weights(10, analysis="a-2", step=0)  # a new analysis starts
    assert (result.before, result.after) == (Weights(0, 100), Weights(10, 90))
    router.external_set(40)  # and from now on its own record binds it
    with pytest.raises(DriftError, match="analysis a-2 step 0"):
        await router.set_weights(20, analysis="a-2", step=1)
