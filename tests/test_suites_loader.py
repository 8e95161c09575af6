"""YAML suites: the shipped suite loads; every malformed suite names the file, the line and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.suites import SuiteError, load_suite

SHIPPED = Path(__file__).resolve().parents[1] / "suites"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return path


def test_shipped_suite_covers_every_check_category_but_complexity():
    from harness.checks import get_check

    suite = load_suite(SHIPPED / "pneumothorax.yaml")
    categories = {get_check(c.check).category for c in suite.checks}
    assert categories == {"performance", "localisation", "randomisation", "stability",
                          "checkpoint_consistency", "shortcut", "faithfulness"}


GOOD = """\
suite: t
checks:
  - id: a
    check: auroc
    require: ci_low >= 0.8
  - id: b
    check: diffgradcam
    explainers: [gradcam]
    require: ci_low >= 0.1
    overrides:
      vit_small_patch16_224: {require: ci_low >= 0.02}
      special: {skip: true}
      profile:cpu: {severity: warn}
"""


def test_overrides_by_architecture_then_model_name(tmp_path):
    suite = load_suite(_write(tmp_path, GOOD))
    b = suite.checks[1]
    assert str(b.for_model("resnet18", "resnet18")[0]) == "ci_low >= 0.1"
    assert str(b.for_model("vit_small", "vit_small_patch16_224")[0]) == "ci_low >= 0.02"
    assert b.for_model("special", "resnet18")[2] is True
    assert b.for_model("resnet18", "resnet18", "cpu")[0].severity == "warn"
    assert b.for_model("resnet18", "resnet18", "gpu")[0].severity == "fail"
    assert suite.checks[0].explainers == ("-",)  # performance checks need no explainer


@pytest.mark.parametrize(
    "line_no, replace, expect",
    [
        (4, ("check: auroc", "check: aurocc"), "unknown check 'aurocc'; valid checks:"),
        (5, ("require: ci_low >= 0.8", "require: ci_low > 0.8"), "cannot read condition"),
        (8, ("explainers: [gradcam]", "explainers: [gradcamm]"), "unknown explainer 'gradcamm'; valid explainers:"),
        (4, ("  - id: a\n", "  - id: a\n    colour: red\n"), "unknown check key 'colour'; valid keys:"),
        (5, ("check: auroc", "check: auroc\n    params: {nboot: 3}"), "has no parameter 'nboot'; valid: split"),
    ],
)
def test_malformed_suite_names_file_line_and_choices(tmp_path, line_no, replace, expect):
    path = _write(tmp_path, GOOD.replace(*replace))
    with pytest.raises(SuiteError) as err:
        load_suite(path)
    assert str(err.value).startswith(f"{path}:{line_no}:")
    assert expect in str(err.value)


def test_invalid_yaml_reports_its_line(tmp_path):
    path = _write(tmp_path, "suite: t\nchecks:\n  - id: a\n    check: [auroc\n")
    with pytest.raises(SuiteError, match=r"suite\.yaml:\d+: invalid YAML"):
        load_suite(path)


def test_duplicate_ids_are_rejected(tmp_path):
    path = _write(tmp_path, GOOD.replace("id: b", "id: a"))
    with pytest.raises(SuiteError, match="duplicate check id 'a' \\(first at line 3\\)"):
        load_suite(path)
