"""Every case of sdk/cases.json, one test each, against the live 3-node cluster."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from case_runner import match, resolve, run_case, strip_keys

CASES_FILE = Path(__file__).resolve().parent.parent.parent / "cases.json"
CASES = json.loads(CASES_FILE.read_text())["cases"]


def _id(i: int, case: dict) -> str:
    return f"{i:02d}-" + re.sub(r"[^a-z0-9]+", "-", case["name"].lower()).strip("-")


@pytest.mark.cluster
@pytest.mark.parametrize("number,case", list(enumerate(CASES, start=1)), ids=[_id(i, c) for i, c in enumerate(CASES, start=1)])
def test_case(cases_env, number, case):
    run_case(case, number, cases_env.run, cases_env.clients)


# The runner's own rules, checked without a server, so a lenient matcher cannot hide a failure.


def test_matcher_rules():
    assert match({"a": 1, "b": 2}, {"a": 1}) is None
    assert match({"a": 1}, {"a": 1, "b": None}) is not None  # absent is not null
    assert match({"b": None}, {"b": None}) is None
    assert match(None, "<any>") is not None
    assert match(0, "<any>") is None
    assert match([1, 2], [1]) is not None
    assert match(True, 1) is not None and match(1, True) is not None
    assert match(1, 1.0) is None
    assert match("1", 1) is not None
    assert match("12", {"$gt": "9"}) is None  # decimal, not text, comparison
    assert match("9", {"$gt": "9"}) is not None
    assert match(None, {"$gt": "1"}) is not None


def test_refs_and_prefix_stripping():
    saved = {"b": [{"version": "7"}], "w": {"version": "3"}}
    assert resolve({"x": "$w.version", "y": ["$b.0.version"], "z": {"$gt": "$w"}}, saved) == {
        "x": "3",
        "y": ["7"],
        "z": {"$gt": {"version": "3"}},
    }
    assert strip_keys([{"key": "r-1:a", "changes": [{"key": "r-1:b"}]}], "r-1:") == [{"key": "a", "changes": [{"key": "b"}]}]
