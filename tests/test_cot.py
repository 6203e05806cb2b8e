"""The CoT schema: one validation function for every entry point."""

from __future__ import annotations

import json

import pytest

from engine.cot import BLOCKS, MAX_BLOCK_CHARS, Cot, load_cot, validate_cot
from engine.errors import UserInputError

GOOD = {"semantic": "a wooden knock", "temporal": "at 1.0 s", "aesthetic": "dry", "spatial": "left"}


def test_valid_cot_round_trips_in_block_order():
    cot = validate_cot(dict(GOOD, negative="speech, music"))
    assert cot.blocks() == [GOOD[b] for b in BLOCKS]
    assert cot.negative == "speech, music"
    assert validate_cot(cot.to_dict()) == cot
    assert cot.monolithic() == "a wooden knock at 1.0 s dry left"


def test_empty_blocks_are_allowed_and_whitespace_is_folded():
    cot = validate_cot(dict(GOOD, aesthetic="", spatial="  far \n left  "))
    assert cot.aesthetic == "" and cot.spatial == "far left"
    assert "negative" not in cot.to_dict()


@pytest.mark.parametrize(
    "obj,needle",
    [
        ([], "JSON object"),
        ({"semantic": "x"}, "missing"),
        (dict(GOOD, semantic=3), "must be a string"),
        (dict(GOOD, mood="calm"), "unknown field"),
    ],
)
def test_invalid_cots_raise_user_errors(obj, needle):
    with pytest.raises(UserInputError, match=needle):
        validate_cot(obj)


def test_over_long_block_is_truncated_with_a_warning():
    with pytest.warns(UserWarning, match="truncated"):
        cot = validate_cot(dict(GOOD, semantic="knock " * 500))
    assert len(cot.semantic) <= MAX_BLOCK_CHARS


def test_load_cot_reports_unreadable_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UserInputError, match="not valid JSON"):
        load_cot(bad)
    with pytest.raises(UserInputError, match="not found"):
        load_cot(tmp_path / "missing.json")
    good = tmp_path / "good.json"
    good.write_text(json.dumps(GOOD))
    assert load_cot(good) == Cot(**GOOD)
