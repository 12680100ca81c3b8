"""Run comparison pieces: the ids argument, dict diffs, block pairing."""

from __future__ import annotations

import pytest

from energyops_ext.runs.compare import block_diff, dict_diff, parse_ids


def test_parse_ids() -> None:
    assert parse_ids("12, 15") == (12, 15)
    for raw in (None, "", "12", "0,1", "1,-2", "1,1", "1," * 40):
        with pytest.raises(ValueError):
            parse_ids(raw)


def test_dict_diff() -> None:
    diff = dict_diff({"a": 1, "b": 2, "c": 3}, {"b": 2, "c": 4, "d": 5})
    assert diff == {
        "equal": False,
        "removed": {"a": 1},
        "added": {"d": 5},
        "changed": {"c": {"a": 3, "b": 4}},
    }
    assert dict_diff(None, {})["equal"] is True


def test_block_diff_pairs_one_day_runs_by_block_and_others_by_date() -> None:
    today = {("2025-10-07", 1): 10.0, ("2025-10-07", 2): 5.0}
    yesterday = {("2025-10-06", 1): 7.0, ("2025-10-06", 2): 5.0}
    paired = block_diff(yesterday, today)
    assert paired is not None
    assert [(r["block"], r["diff"]) for r in paired["blocks"]] == [(1, 3.0), (2, 0.0)]
    assert paired["blocks_differing"] == 1 and paired["max_abs_diff"] == 3.0
    both_days = {**yesterday, **today}
    dated = block_diff(both_days, today)
    assert dated is not None and len(dated["blocks"]) == 4
    assert [r["diff"] for r in dated["blocks"] if r["date_a"] == "2025-10-06"] == [None, None]
    assert block_diff(None, today) is None and block_diff({}, today) is None
