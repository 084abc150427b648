"""The depth spec and its label, one type, and the bounds of one run."""
from __future__ import annotations

import pytest

from harness.depth import LIMITS, Depth, DepthError


@pytest.mark.parametrize("text, depth", [("2,3,8", Depth(2, 3, 8)), ("2,3,8,halt", Depth(2, 3, 8, True)),
                                         (" 1, 1, 1 ", Depth(1, 1, 1)), ("16,1,64", Depth(16, 1, 64))])
def test_specs_parse_and_labels_round_trip(text, depth):
    d = Depth.parse(text)
    assert d == depth and Depth.from_label(d.label()) == d and Depth.parse(d.spec()) == d


@pytest.mark.parametrize("text, message", [
    ("1,1,100", "steps 100 > 64"),
    ("300,1,1", "T 300 > 16"),
    ("100,100,100", "T 100 > 16"),
    ("16,16,8", "T*(n+1)*steps = 2176 network evaluations > 2048"),
    ("0,1,1", "T 0 must be >= 1"),
    ("²,1,1", "expected 'T,n,steps'"),       # str.isdigit says yes, int() says no
    ("2,3", "expected 'T,n,steps'"),
    ("2,3,8,stop", "expected 'T,n,steps'"),
])
def test_bad_specs_name_the_option_and_the_bound(text, message):
    with pytest.raises(DepthError, match=r"^--depth ") as e:
        Depth.parse(text)
    assert message in str(e.value)


def test_the_default_stands_in_for_no_spec_and_a_plan_names_its_key():
    d = Depth(2, 3, 8)
    assert Depth.parse(None, d) is d and Depth.parse("default", d) is d
    with pytest.raises(DepthError, match=r"^plan.toml \[depths\]"):
        Depth.parse("1,1,999", option="plan.toml [depths]")


def test_a_depth_outside_the_limits_cannot_be_made_at_all():
    with pytest.raises(DepthError, match="n 17 > 16"):
        Depth(1, LIMITS["n"] + 1, 1)
    assert Depth(2, 3, 8).evaluations() == 2 * 4 * 8
