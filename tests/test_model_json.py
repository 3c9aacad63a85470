"""What the store's JSON columns hold (`model.json_text`) and what `json_safe` returns:
NaN and infinities as strings, everything else read back exactly as given."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import numpy as np
import pytest

from canary.model import Verdict, json_safe, json_text

NAN, INF = math.nan, math.inf


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ({"a": NAN, "b": [INF, -INF], "c": None}, {"a": "NaN", "b": ["+Inf", "-Inf"], "c": None}),
        ({"deep": {"x": [1, {"y": NAN}]}}, {"deep": {"x": [1, {"y": "NaN"}]}}),
        ({"pair": (1, 2.5)}, {"pair": [1, 2.5]}),
        ({1: "x", 2.5: "y"}, {"1": "x", "2.5": "y"}),
        ({"big": 2**70, "small": -(2**64)}, {"big": 2**70, "small": -(2**64)}),
        ({"verdict": Verdict.PASS, Verdict.FAIL: 1}, {"verdict": "pass", "fail": 1}),
        ({"np": np.float64(0.1), "flag": True}, {"np": 0.1, "flag": True}),
        ({"text": 'é \u2028 "q" null', "e": 1e-05, "g": 1e16}, None),
        ([0.1 + 0.2, 5e-324, 1.7976931348623157e308, -0.0], None),
    ],
)
def test_json_text_reads_back_exactly_with_non_finite_numbers_as_strings(value, stored):
    expected = value if stored is None else stored
    text = json_text(value)
    read = json.loads(text)
    assert read == expected
    assert json.dumps(read) == json.dumps(expected)  # floats to the last bit, -0.0 too


def test_json_safe_replaces_non_finite_numbers_only_when_there_are_some():
    plain = {"a": [1.5, None, "x"]}
    assert json_safe(plain) is plain
    assert json_safe({"a": [NAN, 1.0]}) == {"a": ["NaN", 1.0]}


def test_json_text_refuses_what_json_cannot_hold():
    with pytest.raises(TypeError):
        json_text({"at": datetime(2026, 1, 1, tzinfo=UTC)})
