"""Conditions: parsing, judging (including the must-fail side) and the sentence."""

from __future__ import annotations

import math

import pytest

from harness.checks.condition import Condition
from harness.checks.result import CheckResult, Verdict


def test_parse_and_judge_lower_bound():
    c = Condition.parse("ci_low >= 0.10")
    assert (c.gate_on, c.direction, c.threshold) == ("ci_low", ">=", 0.10)
    assert c.judge(0.5, 0.11, 0.9) is Verdict.PASS
    assert c.judge(0.5, 0.09, 0.9) is Verdict.FAIL  # the mean is fine, the CI is not


def test_upper_bound_and_warn_severity():
    c = Condition.parse("ci_high <= 0.15", severity="warn")
    assert c.judge(0.1, 0.05, 0.14) is Verdict.PASS
    assert c.judge(0.1, 0.05, 0.16) is Verdict.WARN


def test_nan_is_an_error_not_a_pass():
    assert Condition.parse("value >= 0").judge(math.nan, math.nan, math.nan) is Verdict.ERROR


@pytest.mark.parametrize("text", ["ci_low > 0.1", "mean >= 0.1", "ci_low >= high", ""])
def test_bad_condition_names_the_valid_form(text):
    with pytest.raises(ValueError, match="ci_low >= 0.10"):
        Condition.parse(text)


def test_sentence_reads_value_ci_threshold_and_outcome():
    c = Condition.parse("ci_low >= 0.10")
    s = c.sentence("diffgradcam", 0.12, 0.08, 0.16, 40)
    assert "diffgradcam = 0.120" in s and "0.080 to 0.160" in s and "n=40" in s
    assert "at least 0.1" in s and "does not hold" in s


def test_result_record_writes_nan_as_null():
    r = CheckResult(suite="s", model="m", architecture="a", explainer="e", check="c", category="performance",
                    metric="auroc", value=0.9, ci_low=math.nan, ci_high=math.nan, threshold=0.8, direction=">=",
                    verdict=Verdict.PASS, n=10, seed=0)
    d = r.to_dict()
    assert d["ci_low"] is None and d["verdict"] == "pass" and d["value"] == 0.9


def test_registry_rejects_duplicates_but_not_a_reimport():
    from harness.registry import Registry

    reg = Registry("thing")

    def make():
        def f():
            return 1
        return f

    reg.register("a")(make())
    reg.register("a")(make())  # same definition site (a module re-imported): replaced, not an error
    with pytest.raises(ValueError, match="thing 'a' is already registered"):
        reg.register("a")(lambda: 2)
    with pytest.raises(KeyError, match="unknown thing 'b'; known things: a"):
        reg.get("b")
